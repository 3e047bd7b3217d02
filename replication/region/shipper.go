package region

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
	"github.com/cofferhq/coffer/replication"
)

const (
	superviseInterval = 200 * time.Millisecond
	shipTimeout       = 10 * time.Second
	maxBackoff        = 2 * time.Second
)

// supervise runs one shipper per paired region while this node leads, and
// gossips its leadership in the WAN pool.
func (m *Manager) supervise(ctx context.Context) {
	defer m.wg.Done()
	t := time.NewTicker(superviseInterval)
	defer t.Stop()
	wasLeader := false
	for {
		leader := m.leader.IsLeader()
		if m.wan != nil && leader != wasLeader {
			meta := replication.MemberMeta{Region: m.cfg.Region, ClusterAddr: m.cfg.AdvertiseAddr, APIAddr: m.cfg.APIAddr, Leader: leader}
			if err := m.wan.UpdateMeta(meta, time.Second); err != nil {
				m.log.Debug("gossip leadership", "err", err)
			}
		}
		if leader != wasLeader {
			m.mu.Lock()
			if leader {
				m.leading = time.Now()
			} else {
				m.leading = time.Time{}
			}
			m.mu.Unlock()
		}
		wasLeader = leader
		if leader {
			peers, err := m.peers.RegionPeers()
			if err != nil {
				m.log.Error("list paired regions", "err", err)
			}
			for _, p := range peers {
				dest := p.GetRegion()
				m.mu.Lock()
				running := m.workers[dest]
				m.workers[dest] = true
				m.mu.Unlock()
				if !running {
					m.wg.Add(1)
					go m.ship(ctx, dest)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ship streams dest's feed while this node leads: from the position dest
// acknowledged (in the state, so a new leader resumes there), a batch at a
// time, each acknowledged in this region's log. Re-shipping after a lost
// answer is harmless: dest skips what it applied.
func (m *Manager) ship(ctx context.Context, dest string) {
	defer m.wg.Done()
	defer func() {
		m.mu.Lock()
		delete(m.workers, dest)
		m.mu.Unlock()
	}()
	log := m.log.With("dest_region", dest)
	pos := m.feed.FeedAck(dest)
	backoff := 50 * time.Millisecond
	failing := false
	lastContact := time.Time{}
	for ctx.Err() == nil && m.leader.IsLeader() {
		if _, err := m.peer(dest); errors.Is(err, ErrUnpaired) {
			log.Info("region unpaired; shipping to it stops")
			return
		}
		req, times, err := m.feed.ExportBatch(dest, pos, m.cfg.BatchSize)
		if err != nil {
			log.Error("read the change feed", "err", err)
			m.sleep(ctx, backoff)
			continue
		}
		if len(req.GetChanges()) == 0 && req.GetThroughSeq() == pos && time.Since(lastContact) < m.cfg.Heartbeat {
			m.waitForChange(ctx)
			continue
		}
		resp, err := m.send(ctx, dest, req)
		if obs := m.shipObserver(); obs != nil && ctx.Err() == nil {
			obs.ObserveShipment(dest, err)
		}
		if err != nil {
			if !failing {
				log.Warn("shipping to region failed; retrying", "through", req.GetThroughSeq(), "err", err)
			}
			failing = true
			m.sleep(ctx, backoff)
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		if failing {
			log.Info("shipping to region resumed", "from", pos)
		}
		failing, backoff, lastContact = false, 50*time.Millisecond, time.Now()
		m.touch(dest)
		switch {
		case resp.GetGenerationMismatch():
			// dest holds another generation of this feed (a restore here or
			// there): its position means nothing here. Start it again from
			// full copies.
			log.Warn("region holds another generation of the feed; resetting it with full copies", "generation", req.GetGeneration())
			if err := m.feed.ResetFeed(ctx, dest, req.GetGeneration()); err != nil {
				log.Warn("reset the feed", "err", err)
				m.sleep(ctx, backoff)
			}
			pos = m.feed.FeedAck(dest)
			continue
		case resp.GetGap():
			// dest applied less than this shipper thought: resend from its
			// position if the feed still holds what follows it, else reset.
			if at := resp.GetAppliedThrough(); at >= m.feed.FeedAck(dest) {
				log.Warn("region refused a gap; shipping from its position", "after", req.GetAfter(), "applied_through", at)
				pos = at
				continue
			}
			log.Warn("region needs changes the feed no longer holds; resetting it with full copies", "applied_through", resp.GetAppliedThrough())
			if err := m.feed.ResetFeed(ctx, dest, req.GetGeneration()); err != nil {
				log.Warn("reset the feed", "err", err)
				m.sleep(ctx, backoff)
			}
			pos = m.feed.FeedAck(dest)
			continue
		}
		// Never acknowledge more than was shipped: a destination ahead of
		// this feed holds positions this feed has not reached.
		if resp.GetAppliedThrough() > req.GetThroughSeq() {
			resp.AppliedThrough = req.GetThroughSeq()
		}
		if resp.GetAppliedThrough() > pos || req.GetResync() || len(resp.GetRejected()) > 0 || len(resp.GetAccepted()) > 0 || len(resp.GetAccessed()) > 0 {
			if err := m.feed.AckBatch(ctx, dest, req.GetGeneration(), resp); err != nil {
				log.Warn("record acknowledgement", "err", err)
				continue
			}
		}
		// One sample per change, merged or not: a secret changed ten times
		// in a batch counts ten lags, the oldest included, so p99 is honest.
		now := time.Now()
		for _, at := range times {
			m.observe(LagSample{Dest: dest, Lag: now.Sub(at)})
		}
		pos = max(resp.GetAppliedThrough(), pos)
	}
}

func (m *Manager) observe(s LagSample) {
	m.mu.Lock()
	fn, obs := m.onLag, m.ships
	m.mu.Unlock()
	if obs != nil {
		obs.ObserveChangeLag(s.Dest, s.Lag)
	}
	if fn != nil {
		fn(s)
	}
}

// waitForChange returns when this node applies another entry (the feed may
// have grown) or after a short while.
func (m *Manager) waitForChange(ctx context.Context) {
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_ = m.leader.WaitApplied(wctx, m.leader.AppliedIndex()+1)
}

func (m *Manager) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// maxShipMessage is the largest shipment the region port sends or accepts:
// the sender cuts batches at a few MiB (server.ShipBatchBytes), but one
// change can be a full copy of a secret at the limits (100 versions of
// 64 KiB, sealed), and gRPC's default 4 MiB would then stall shipping.
const maxShipMessage = 64 << 20

// send ships one batch to dest, trying its known addresses (the pairing
// record's and the WAN pool's), the last one that worked first.
func (m *Manager) send(ctx context.Context, dest string, req *replicationv1.ShipRequest) (*replicationv1.ShipResponse, error) {
	var resp *replicationv1.ShipResponse
	err := m.call(ctx, dest, func(ctx context.Context, cc *grpc.ClientConn) error {
		var err error
		resp, err = replicationv1.NewRegionReplicationServiceClient(cc).Ship(ctx, req)
		return err
	})
	return resp, err
}

// ordered puts the address that last worked first and drops duplicates.
func (m *Manager) ordered(dest string, addrs []string) []string {
	m.mu.Lock()
	last := m.conns[dest+"|last"]
	m.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	if last != nil {
		out = append(out, last.Target())
		seen[last.Target()] = true
	}
	for _, a := range addrs {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

func (m *Manager) conn(dest, addr string, pool *x509.CertPool) (*grpc.ClientConn, error) {
	key := dest + "|" + addr
	m.mu.Lock()
	defer m.mu.Unlock()
	if cc, ok := m.conns[key]; ok {
		return cc, nil
	}
	tlsCfg := m.cfg.TLS.RegionClientConfig(pool)
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithContextDialer(m.cfg.Dial),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(maxShipMessage), grpc.MaxCallRecvMsgSize(maxShipMessage)),
	)
	if err != nil {
		return nil, fmt.Errorf("region %s at %s: %w", dest, addr, err)
	}
	m.conns[key] = cc
	return cc, nil
}
