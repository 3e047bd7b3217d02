package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cofferhq/coffer/health"
	"github.com/cofferhq/coffer/internal/diskspace"
	"github.com/cofferhq/coffer/metrics"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/server/rotation"
	"github.com/cofferhq/coffer/storage"
)

// MaxReadyAppliedLag is how far this node's applied index may trail the
// commit index it knows before /readyz calls it not ready: a follower
// catching up after a partition or a restore serves stale reads.
const MaxReadyAppliedLag = 1000

// countsTTL bounds how often the secret counts (a walk of every secret) are
// recomputed for scrapes and /v1/sys/health.
const countsTTL = 5 * time.Second

// ops is a node's metrics, health endpoints and their listener.
type ops struct {
	metrics *metrics.Metrics
	health  *health.Server
	srv     *http.Server
	lis     net.Listener

	countsMu sync.Mutex
	counts   metrics.SecretCounts
	keyring  int
	countsAt time.Time
}

// Metrics is the node's metric families (the registry its metrics listener
// serves).
func (n *Node) Metrics() *metrics.Metrics { return n.ops.metrics }

// MetricsAddr is the metrics listener's address, or "" when it is off.
func (n *Node) MetricsAddr() string {
	if n.ops.lis == nil {
		return ""
	}
	return n.ops.lis.Addr().String()
}

// Health is the node's health endpoints, which the metrics and AWS
// listeners serve.
func (n *Node) Health() http.Handler { return n.ops.health }

// auditObserved times audit writes into the metrics.
type auditObserved interface{ AuditWritten(time.Duration) }

// initOps makes the node's metrics and health endpoints; it runs before the
// parts it observes start.
func (n *Node) initOps() {
	n.ops.metrics = metrics.New()
	n.ops.health = &health.Server{Checks: n.readyChecks(), Status: n.sysStatus}
}

// startOps registers the scrape-time collector and starts the metrics
// listener, once every part exists.
func (n *Node) startOps() error {
	n.ops.metrics.Registry().MustRegister(metrics.NewNodeCollector(n.nodeState),
		metrics.NewSealCollector(func() metrics.SealState { return metrics.SealState{Type: n.opts.SealType} }))
	if n.opts.MetricsAddr == "" {
		return nil
	}
	if err := CheckListener("metrics", n.opts.MetricsAddr, n.opts.MetricsTLS != nil, n.opts.InsecurePlaintext); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", n.opts.MetricsAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", n.opts.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", n.ops.metrics.Handler())
	mux.Handle(health.LivezPath, n.ops.health)
	mux.Handle(health.ReadyzPath, n.ops.health)
	mux.Handle(health.SysHealthPath, n.ops.health)
	n.ops.srv = &http.Server{Handler: mux, TLSConfig: n.opts.MetricsTLS, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	n.ops.lis = lis
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		var err error
		if n.opts.MetricsTLS != nil {
			err = n.ops.srv.ServeTLS(lis, "", "")
		} else {
			err = n.ops.srv.Serve(lis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("metrics server stopped", "err", err)
		}
	}()
	return nil
}

// stopOps stops the metrics listener; it answers until the node's other
// parts stop, so a scraper sees the node go not-ready first.
func (n *Node) stopOps() {
	if n.ops.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = n.ops.srv.Shutdown(ctx)
}

// withHealth serves the health endpoints on an API listener beside h.
func (n *Node) withHealth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if health.Handles(r) {
			n.ops.health.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// readyChecks are /readyz's checks. Reasons are fixed strings: the
// endpoint needs no authentication.
func (n *Node) readyChecks() []health.Check {
	return []health.Check{
		{Name: "started", Run: func() string {
			if n.readiness.check() != nil {
				return "the node is starting"
			}
			if !n.serving.Load() {
				return "the node is starting or stopping"
			}
			return ""
		}},
		{Name: "leader", Run: func() string {
			if n.raft.Leader() == "" {
				return "no leader known"
			}
			return ""
		}},
		{Name: "applied", Run: func() string {
			v := n.raft.View()
			if v.CommitIndex > v.AppliedIndex && v.CommitIndex-v.AppliedIndex > MaxReadyAppliedLag {
				return "applied index trails the commit index"
			}
			return ""
		}},
		{Name: "audit", Run: func() string {
			if n.audit != nil && n.audit.Healthy() != nil {
				return "the audit log cannot be written"
			}
			return ""
		}},
		{Name: "not_fenced", Run: func() string {
			if n.raft.Diverged() != nil {
				return "a consistency check fenced this node"
			}
			return ""
		}},
	}
}

func (n *Node) passesReadyChecks() bool {
	for _, c := range n.ops.health.Checks {
		if c.Run() != "" {
			return false
		}
	}
	return true
}

// sysStatus is /v1/sys/health's view of the node.
func (n *Node) sysStatus() health.Status {
	st := health.Status{Region: n.opts.Service.Region, NodeID: n.opts.Raft.NodeID}
	switch {
	case n.raft.Leader() == "" && n.serving.Load() && n.raft.Diverged() == nil:
		st.Role = health.LeaderlessFollower
	case !n.passesReadyChecks():
		st.Role = health.Unavailable
	case n.secretCounts().allReplicas():
		st.Role = health.ReplicaRegion
	case n.raft.IsLeader():
		st.Role = health.Leader
	default:
		st.Role = health.Follower
	}
	return st
}

type secretCounts struct{ metrics.SecretCounts }

// allReplicas: the region holds secrets and every one is a replica.
func (c secretCounts) allReplicas() bool {
	return c.Replicas > 0 && c.Active == 0 && c.ScheduledForDeletion == 0
}

// secretCounts counts the region's secrets, at most every countsTTL.
func (n *Node) secretCounts() secretCounts {
	n.ops.countsMu.Lock()
	defer n.ops.countsMu.Unlock()
	now := time.Now()
	if !n.ops.countsAt.IsZero() && now.Sub(n.ops.countsAt) < countsTTL {
		return secretCounts{n.ops.counts}
	}
	var c metrics.SecretCounts
	svcNow := n.svc.Now()
	_ = n.store.Secrets(func(s *storagev1.Secret) bool {
		switch {
		case s.GetReplica():
			c.Replicas++
		case s.GetDeletedDate() != nil:
			c.ScheduledForDeletion++
		default:
			c.Active++
		}
		if s.GetRotationEnabled() && !s.GetReplica() && s.GetDeletedDate() == nil {
			c.RotationEnabled++
			if p := s.GetRotationProgress(); p != nil {
				c.RotationInProgress++
				if p.GetLastError() != "" {
					c.RotationOverdue++
				}
			} else if next := rotation.NextRotationDate(s, svcNow); next != nil && !next.AsTime().After(svcNow) && !storage.RotationInProgress(s) {
				c.RotationOverdue++
			}
		}
		return true
	})
	if kr, err := n.store.Keyring(); err == nil && kr != nil {
		n.ops.keyring = len(kr.GetKeys())
	}
	n.ops.counts, n.ops.countsAt = c, now
	return secretCounts{c}
}

// nodeState is what a scrape reads.
func (n *Node) nodeState() metrics.NodeState {
	v := n.raft.View()
	s := metrics.NodeState{
		Raft: metrics.RaftState{HasLeader: v.HasLeader, IsLeader: v.IsLeader, Term: v.Term, CommitIndex: v.CommitIndex,
			AppliedIndex: v.AppliedIndex, LastLogIndex: v.LastLogIndex, LastContact: v.LastContact, Voters: v.Voters},
		Ready:    n.passesReadyChecks(),
		Diverged: n.raft.Diverged() != nil,
	}
	s.StateDBSizeBytes, s.StateDBInUseBytes, _ = n.store.DBSize()
	if u, err := diskspace.Of(n.opts.DataDir); err == nil {
		s.DataVolumeFreeBytes, s.DataVolumeSizeBytes = u.Free, u.Total
	}
	s.Secrets = n.secretCounts().SecretCounts
	n.ops.countsMu.Lock()
	s.KeyringVersion = n.ops.keyring
	n.ops.countsMu.Unlock()
	if peers, err := n.store.RegionPeers(); err == nil {
		for _, p := range peers {
			dest := p.GetRegion()
			d := metrics.Destination{Region: dest}
			if fs, err := n.store.FeedStatus(dest); err == nil {
				d.Pending, d.Oldest = fs.Pending, fs.Oldest
			}
			if n.region != nil {
				d.LastContact = n.region.LastContact(dest)
				d.Reachable = n.region.Reachable(dest)
			}
			s.Replication = append(s.Replication, d)
		}
	}
	s.Certificates = map[string]time.Time{}
	if t := n.opts.Raft.TLS; t != nil {
		addExpiry(s.Certificates, "cluster", &t.Cert)
	}
	addConfigExpiry(s.Certificates, "grpc", n.opts.GRPCTLS)
	addConfigExpiry(s.Certificates, "aws", n.opts.AWSTLS)
	addConfigExpiry(s.Certificates, "metrics", n.opts.MetricsTLS)
	return s
}

func addConfigExpiry(out map[string]time.Time, use string, c *tls.Config) {
	if c == nil {
		return
	}
	for i := range c.Certificates {
		addExpiry(out, use, &c.Certificates[i])
	}
	if c.GetCertificate != nil {
		if cert, err := c.GetCertificate(&tls.ClientHelloInfo{}); err == nil && cert != nil {
			addExpiry(out, use, cert)
		}
	}
}

// addExpiry records the earliest expiry per use.
func addExpiry(out map[string]time.Time, use string, c *tls.Certificate) {
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	if leaf == nil {
		return
	}
	if at, ok := out[use]; !ok || leaf.NotAfter.Before(at) {
		out[use] = leaf.NotAfter
	}
}

var _ auditObserved = (*metrics.Metrics)(nil)
