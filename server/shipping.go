package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/storage/kms"
)

// The service's side of cross-region shipping: it reads the change feed
// and re-wraps data keys for a destination, and on the destination
// re-wraps them under its own keys and proposes the batch. replication/
// moves the batches between regions; it never sees a data key.

// ErrNotPaired: the other region is not paired with this one.
var ErrNotPaired = errors.New("region is not paired")

// pairwiseCache keeps the derived pairwise keys in locked memory, by region
// and peer public key (a re-pairing with a new key derives a new one). An
// entry is never dropped, so the key bytes pairwiseKey hands out stay valid.
type pairwiseCache struct {
	mu   sync.Mutex
	keys map[string]*kms.LockedKey
}

func (s *Service) peer(region string) (*storagev1.RegionPeer, error) {
	peers, err := s.state.RegionPeers()
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(peers, func(p *storagev1.RegionPeer) bool { return p.GetRegion() == region })
	if i < 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotPaired, region)
	}
	return peers[i], nil
}

// pairwiseKey is the replication key shared with region.
func (s *Service) pairwiseKey(region string) ([]byte, error) {
	p, err := s.peer(region)
	if err != nil {
		return nil, err
	}
	id := region + "\x00" + string(p.GetPublicKey())
	s.pairwise.mu.Lock()
	defer s.pairwise.mu.Unlock()
	if k, ok := s.pairwise.keys[id]; ok {
		return k.Bytes(), nil
	}
	var derived []byte
	if err := s.root.Use(func(root []byte) (err error) {
		derived, err = kms.PairwiseKey(root, p.GetPublicKey(), s.cfg.Region, region)
		return err
	}); err != nil {
		return nil, err
	}
	k, err := kms.NewLockedKey(derived, s.cfg.MemoryLock)
	clear(derived)
	if err != nil {
		return nil, err
	}
	if s.pairwise.keys == nil {
		s.pairwise.keys = map[string]*kms.LockedKey{}
	}
	s.pairwise.keys[id] = k
	return k.Bytes(), nil
}

// PairingPublicKey is this region's X25519 pairing public key.
func (s *Service) PairingPublicKey() ([]byte, error) {
	var pub []byte
	err := s.root.Use(func(root []byte) error {
		k, err := kms.PairingKey(root)
		if err == nil {
			pub = k.PublicKey().Bytes()
		}
		return err
	})
	return pub, err
}

// Region is the service's region.
func (s *Service) Region() string { return s.cfg.Region }

// ExportBatch reads up to limit feed entries for dest after position after
// and prepares them for shipping: each value's data key re-wrapped under the
// pairwise key; ciphertexts unchanged. times are the command times of every
// change in the batch, before the changes of one secret are merged (the
// shipper's lag figures count each change, not only a secret's last).
func (s *Service) ExportBatch(dest string, after uint64, limit int) (req *replicationv1.ShipRequest, times []time.Time, err error) {
	b, err := s.state.FeedAfter(dest, after, limit)
	if err != nil {
		return nil, nil, err
	}
	withinBudget(b, ShipBatchBytes)
	req = &replicationv1.ShipRequest{SourceRegion: s.cfg.Region, DestinationRegion: dest, ThroughSeq: b.Through,
		Generation: s.state.FeedGeneration(), After: after}
	if base, ok := s.state.FeedResync(dest); ok && base == after {
		req.Resync = true
		if err := s.state.Secrets(func(sec *storagev1.Secret) bool {
			if !sec.GetReplica() && slices.ContainsFunc(sec.GetReplicas(), func(r *storagev1.ReplicaRegionConfig) bool { return r.GetRegion() == dest }) {
				req.ResyncNames = append(req.ResyncNames, sec.GetName())
			}
			return true
		}); err != nil {
			return nil, nil, err
		}
	}
	if len(b.Entries) == 0 {
		return req, nil, nil
	}
	key, err := s.pairwiseKey(dest)
	if err != nil {
		return nil, nil, err
	}
	kr, err := s.keys()
	if err != nil {
		return nil, nil, err
	}
	times = make([]time.Time, len(b.Entries))
	for i, e := range b.Entries {
		times[i] = e.GetTime().AsTime()
	}
	for _, e := range coalesce(b.Entries) {
		for _, fv := range e.GetValues() {
			out, err := kr.ExportValue(fv.GetValue(), storage.ValueARN(e.GetSecret()), fv.GetVersionId(), key, s.cfg.Region, dest)
			if err != nil {
				return nil, nil, fmt.Errorf("export %s version %s: %w", e.GetArn(), fv.GetVersionId(), err)
			}
			fv.Value = out
		}
		req.Changes = append(req.Changes, e)
	}
	return req, times, nil
}

// ImportBatch applies a batch shipped by a paired region through this
// region's log: each data key is re-wrapped from the pairwise key to the
// replica's KMS key here (a value that does not open under the pairwise
// key refuses the whole batch). A batch that breaks storage.ValidateShipment
// is refused whole before anything is proposed (an error wrapping
// storage.ErrInvalidShipment). It answers with the position applied and
// the secrets refused.
func (s *Service) ImportBatch(ctx context.Context, req *replicationv1.ShipRequest) (*replicationv1.ShipResponse, error) {
	src := req.GetSourceRegion()
	if req.GetDestinationRegion() != s.cfg.Region {
		return nil, fmt.Errorf("batch for region %s shipped to %s", req.GetDestinationRegion(), s.cfg.Region)
	}
	key, err := s.pairwiseKey(src)
	if err != nil {
		return nil, err
	}
	if err := storage.ValidateShipment(s.cfg.Region, src, req.GetThroughSeq(), req.GetChanges()); err != nil {
		return nil, fmt.Errorf("import from %s: %w", src, err)
	}
	if resp := s.refuseBatch(req); resp != nil {
		return resp, nil
	}
	pos, gen := s.state.ReplicaPosition(src), s.state.ReplicaGeneration(src)
	if len(req.GetChanges()) == 0 && req.GetThroughSeq() <= pos && (!req.GetResync() || (req.GetGeneration() == gen && req.GetAfter() <= pos)) {
		// A heartbeat: nothing to apply; report replica reads.
		return &replicationv1.ShipResponse{AppliedThrough: pos, Accessed: s.replicaAccesses(src)}, nil
	}
	kr, err := s.keys()
	if err != nil {
		return nil, err
	}
	op := &raftv1.ApplyReplicaChanges{SourceRegion: src, ThroughSeq: req.GetThroughSeq(), Region: s.cfg.Region,
		After: req.GetAfter(), Generation: req.GetGeneration(), Resync: req.GetResync(), ResyncNames: req.GetResyncNames()}
	refused := map[string]string{}
	for _, e := range req.GetChanges() {
		e = proto.CloneOf(e)
		if e.GetSecret() != nil && len(e.GetValues()) > 0 {
			keyID, kerr := kr.ResolveKey(replicaKeyRef(e.GetSecret(), s.cfg.Region))
			if kerr != nil {
				refused[e.GetName()] = fmt.Sprintf("Secrets Manager can't find the specified KMS key in %s: %s", s.cfg.Region, replicaKeyRef(e.GetSecret(), s.cfg.Region))
				continue
			}
			for _, fv := range e.GetValues() {
				in, err := kr.ImportValue(fv.GetValue(), storage.ValueARN(e.GetSecret()), fv.GetVersionId(), key, src, s.cfg.Region, keyID)
				if err != nil {
					return nil, fmt.Errorf("import %s version %s from %s: %w", e.GetArn(), fv.GetVersionId(), src, err)
				}
				fv.Value = in
			}
		}
		op.Changes = append(op.Changes, e)
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_ApplyReplicaChanges{ApplyReplicaChanges: op}})
	if err != nil {
		return nil, err
	}
	if err := s.rep.WaitApplied(ctx, res.Index); err != nil {
		return nil, err
	}
	if resp := s.refuseBatch(req); resp != nil {
		return resp, nil // Apply refused it too (a batch of another leader got in first)
	}
	resp := &replicationv1.ShipResponse{AppliedThrough: s.state.ReplicaPosition(src), Accessed: s.replicaAccesses(src)}
	for _, e := range req.GetChanges() {
		msg, ok := refused[e.GetName()]
		if !ok {
			msg = s.state.ReplicaRejection(src, e.GetName())
		}
		if msg != "" {
			resp.Rejected = append(resp.Rejected, &replicationv1.Rejection{Name: e.GetName(), Message: msg})
		} else if !slices.Contains(resp.Accepted, e.GetName()) {
			resp.Accepted = append(resp.Accepted, e.GetName())
		}
	}
	return resp, nil
}

// refuseBatch answers a batch this region cannot apply where it stands
// with the source (nil when it can): one of another generation of the
// source's feed (the source restored a snapshot, or this region did), unless
// it starts a resync, or one that continues from a position after the one
// applied (a gap). Apply judges the same way; this spares a proposal.
func (s *Service) refuseBatch(req *replicationv1.ShipRequest) *replicationv1.ShipResponse {
	src := req.GetSourceRegion()
	pos, gen := s.state.ReplicaPosition(src), s.state.ReplicaGeneration(src)
	switch {
	case req.GetResync():
		return nil
	case req.GetGeneration() != gen:
		s.log.Warn("a paired region ships another generation of its feed than the one applied here; it must resync",
			"source_region", src, "generation", req.GetGeneration(), "applied_generation", gen)
		return &replicationv1.ShipResponse{AppliedThrough: pos, GenerationMismatch: true}
	case req.GetAfter() > pos:
		s.log.Warn("refused a batch that leaves a gap in a paired region's feed", "source_region", src,
			"after", req.GetAfter(), "applied_through", pos)
		return &replicationv1.ShipResponse{AppliedThrough: pos, Gap: true}
	}
	return nil
}

// coalesce merges the entries of a batch that change the same secret (same
// ARN) into the last of them, carrying the values of every version the
// merged record still has: the destination ends in the same state with one
// apply per secret instead of one per change, which is what makes catching
// up after a partition fast. Entries are cloned; the order of the last
// change of each secret is kept.
func coalesce(entries []*storagev1.ChangeFeedEntry) []*storagev1.ChangeFeedEntry {
	last := map[string]int{}
	for i, e := range entries {
		last[e.GetArn()] = i
	}
	values := map[string][]*storagev1.FeedValue{}
	var out []*storagev1.ChangeFeedEntry
	for i, e := range entries {
		values[e.GetArn()] = append(values[e.GetArn()], e.GetValues()...)
		if last[e.GetArn()] != i {
			continue
		}
		m := proto.CloneOf(e)
		m.Values = nil
		seen := map[string]bool{}
		for _, fv := range slices.Backward(values[e.GetArn()]) {
			if seen[fv.GetVersionId()] || !hasVersion(m.GetSecret(), fv.GetVersionId()) {
				continue
			}
			seen[fv.GetVersionId()] = true
			m.Values = append(m.Values, proto.CloneOf(fv))
		}
		out = append(out, m)
	}
	return out
}

func hasVersion(s *storagev1.Secret, id string) bool {
	return slices.ContainsFunc(s.GetVersions(), func(v *storagev1.Version) bool { return v.GetVersionId() == id })
}

func newerAccess(sec *storagev1.Secret, dest string, day time.Time) bool {
	for _, r := range sec.GetReplicas() {
		if r.GetRegion() == dest {
			return r.GetLastAccessedDate() == nil || r.GetLastAccessedDate().AsTime().Before(day)
		}
	}
	return false
}

func replicaKeyRef(sec *storagev1.Secret, region string) string {
	for _, r := range sec.GetReplicas() {
		if r.GetRegion() == region {
			return r.GetKmsKeyId()
		}
	}
	return ""
}

// defaultAccessReportInterval is Config.AccessReportInterval's default.
const defaultAccessReportInterval = 30 * time.Second

// replicaAccesses lists the replicas of src's secrets read on a day this
// node has not reported yet: each one once per day, and the scan runs at
// most every Config.AccessReportInterval per source, so heartbeats stay cheap.
func (s *Service) replicaAccesses(src string) []*replicationv1.ReplicaAccess {
	s.accessReports.mu.Lock()
	defer s.accessReports.mu.Unlock()
	if s.accessReports.reported == nil {
		s.accessReports.reported, s.accessReports.scanned = map[string]time.Time{}, map[string]time.Time{}
	}
	now := s.now()
	every := s.cfg.AccessReportInterval
	if every <= 0 {
		every = defaultAccessReportInterval
	}
	if now.Sub(s.accessReports.scanned[src]) < every {
		return nil
	}
	s.accessReports.scanned[src] = now
	var out []*replicationv1.ReplicaAccess
	_ = s.state.Secrets(func(sec *storagev1.Secret) bool {
		if !sec.GetReplica() || sec.GetPrimaryRegion() != src || sec.GetLastAccessedDate() == nil {
			return true
		}
		key := src + "\x00" + sec.GetArn()
		day := sec.GetLastAccessedDate().AsTime()
		if !s.accessReports.reported[key].Before(day) {
			return true
		}
		s.accessReports.reported[key] = day
		out = append(out, &replicationv1.ReplicaAccess{Name: sec.GetName(), Day: sec.GetLastAccessedDate()})
		return true
	})
	return out
}

// accessReports remembers what replica reads a node reported, per source.
type accessReports struct {
	mu       sync.Mutex
	reported map[string]time.Time // source \0 replica ARN → day reported
	scanned  map[string]time.Time // source → last scan
}

// AckBatch records a destination's answer in this region's log: its
// position (which trims the feed), the secrets it refused or accepted, and
// the days its replicas were read (only those newer than recorded, so a
// heartbeat with no news writes nothing).
//
// generation is the feed generation of the batch answered: an answer to a
// batch shipped before a restore moves no position.
func (s *Service) AckBatch(ctx context.Context, dest, generation string, resp *replicationv1.ShipResponse) error {
	op := &raftv1.AckFeed{Destination: dest, Seq: resp.GetAppliedThrough(), Accepted: resp.GetAccepted(), Generation: generation}
	for _, r := range resp.GetRejected() {
		op.Rejected = append(op.Rejected, &raftv1.ReplicaRejection{Name: r.GetName(), Message: r.GetMessage()})
	}
	for _, a := range resp.GetAccessed() {
		if sec, err := s.state.Secret(a.GetName()); err == nil && newerAccess(sec, dest, a.GetDay().AsTime()) {
			op.Accessed = append(op.Accessed, &raftv1.ReplicaAccessDay{Name: a.GetName(), Day: a.GetDay()})
		}
	}
	_, resyncing := s.state.FeedResync(dest)
	if (op.GetSeq() <= s.state.FeedAck(dest) || generation != s.state.FeedGeneration()) && !resyncing && len(op.GetRejected()) == 0 && len(op.GetAccepted()) == 0 && len(op.GetAccessed()) == 0 {
		return nil
	}
	_, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_AckFeed{AckFeed: op}})
	return err
}

// FeedAck is the position dest acknowledged.
func (s *Service) FeedAck(dest string) uint64 { return s.state.FeedAck(dest) }

// ResetFeed restarts dest's feed with full copies (generation is the one
// the shipper saw refused): dest holds another generation of this feed, or
// needs entries already trimmed.
func (s *Service) ResetFeed(ctx context.Context, dest, generation string) error {
	s.log.Warn("resetting a paired region's feed: every secret replicating to it is shipped in full", "dest_region", dest)
	_, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_ResetFeed{ResetFeed: &raftv1.ResetFeed{Destination: dest, Generation: generation}}})
	return err
}

// UnpairRegion forgets a paired region in this region's log.
func (s *Service) UnpairRegion(ctx context.Context, region string) error {
	_, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_UnpairRegion{UnpairRegion: &raftv1.UnpairRegion{Region: region}}})
	return err
}

// SetPairingOptions changes a paired region's options in this region's log.
func (s *Service) SetPairingOptions(ctx context.Context, region string, acceptOverwrite bool) error {
	_, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_SetPairingOptions{SetPairingOptions: &raftv1.SetPairingOptions{Region: region, AcceptOverwrite: acceptOverwrite}}})
	return err
}

// PairRegion records a paired region in this region's log.
func (s *Service) PairRegion(ctx context.Context, peer *storagev1.RegionPeer) error {
	_, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_PairRegion{PairRegion: &raftv1.PairRegion{Peer: peer}}})
	return err
}
