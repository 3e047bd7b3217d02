package storage

import (
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// Paired regions: the records PairRegion keeps (certificates, pairing key,
// addresses) and what pairing and unpairing do to the primaries that list a
// region as a replica region.

// pairRegion records a paired region. A region paired anew (not a
// re-pairing that replaces the record) gets a full copy of every primary
// secret that still lists it as a replica region: what it holds from before
// an unpairing is stale, and the feed kept nothing for it meanwhile.
func (t *txn) pairRegion(now time.Time, op *raftv1.PairRegion) *Result {
	p := op.GetPeer()
	if !ValidRegion(p.GetRegion()) {
		return &Result{Err: newError(ErrInvalidParameter, "Invalid region: %s.", short(p.GetRegion()))}
	}
	peers := t.tx.Bucket(bucketRegionPeers)
	known := peers.Get([]byte(p.GetRegion())) != nil
	t.put(peers, []byte(p.GetRegion()), p)
	if known {
		return &Result{}
	}
	for _, s := range t.primariesReplicatingTo(p.GetRegion()) {
		t.setReplicaMessage(s, p.GetRegion(), "")
	}
	// The region may hold a position from an earlier pairing, of any
	// generation: its feed starts as a resync.
	t.startResync(now, p.GetRegion())
	return &Result{}
}

// setPairingOptions changes a paired region's options (accept_overwrite).
func (t *txn) setPairingOptions(op *raftv1.SetPairingOptions) *Result {
	peers := t.tx.Bucket(bucketRegionPeers)
	v := peers.Get([]byte(op.GetRegion()))
	if v == nil {
		return &Result{Err: newError(ErrInvalidParameter, "Region %s is not paired with this region.", short(op.GetRegion()))}
	}
	p := &storagev1.RegionPeer{}
	t.fail(proto.Unmarshal(v, p))
	if t.err != nil {
		return &Result{}
	}
	p.AcceptOverwrite = op.GetAcceptOverwrite()
	t.put(peers, []byte(op.GetRegion()), p)
	return &Result{}
}

// acceptsOverwrite reports whether this region lets source's shipped
// records replace its primary secrets.
func (t *txn) acceptsOverwrite(source string) bool {
	v := t.tx.Bucket(bucketRegionPeers).Get([]byte(source))
	if v == nil {
		return false
	}
	p := &storagev1.RegionPeer{}
	if err := proto.Unmarshal(v, p); err != nil {
		panic(fmt.Sprintf("storage: corrupt region peer %q: %v", source, err))
	}
	return p.GetAcceptOverwrite()
}

// unpairRegion forgets a paired region: its record (so its certificates are
// no longer accepted and no shipper runs for it), its acknowledged position
// (so the feed entries kept for it are trimmed) and the position applied
// from it (a region paired again under that name starts a new feed). The
// primaries that replicate to it report Failed until it is paired again or
// removed from their replication; replicas here whose primary it was stay,
// readable, and can be promoted.
func (t *txn) unpairRegion(op *raftv1.UnpairRegion) *Result {
	region := op.GetRegion()
	peers := t.tx.Bucket(bucketRegionPeers)
	if peers.Get([]byte(region)) == nil {
		return &Result{Err: newError(ErrInvalidParameter, "Region %s is not paired with this region.", short(region))}
	}
	t.fail(peers.Delete([]byte(region)))
	t.fail(t.tx.Bucket(bucketFeedAcks).Delete([]byte(region)))
	t.fail(t.tx.Bucket(bucketSources).Delete([]byte(region)))
	t.fail(t.tx.Bucket(bucketSourceGenerations).Delete([]byte(region)))
	t.fail(t.tx.Bucket(bucketFeedResyncs).Delete([]byte(region)))
	for _, s := range t.primariesReplicatingTo(region) {
		t.setReplicaMessage(s, region, fmt.Sprintf("Region %s is no longer paired with %s; pair it again or remove it from the secret's replication.", region, s.GetPrimaryRegion()))
	}
	t.trimFeed()
	return &Result{}
}

// primariesReplicatingTo lists the primary secrets with a replica in region.
func (t *txn) primariesReplicatingTo(region string) []*storagev1.Secret {
	var out []*storagev1.Secret
	t.fail(t.tx.Bucket(bucketSecrets).ForEach(func(k, v []byte) error {
		s := &storagev1.Secret{}
		if err := proto.Unmarshal(v, s); err != nil {
			return fmt.Errorf("decode secret %q: %w", k, err)
		}
		if !s.GetReplica() && slices.ContainsFunc(s.GetReplicas(), func(r *storagev1.ReplicaRegionConfig) bool { return r.GetRegion() == region }) {
			out = append(out, s)
		}
		return nil
	}))
	return out
}

// setReplicaMessage sets the status message of s's replica in region and
// stores s when it changed.
func (t *txn) setReplicaMessage(s *storagev1.Secret, region, msg string) {
	for _, r := range s.GetReplicas() {
		if r.GetRegion() == region && r.GetStatusMessage() != msg {
			r.StatusMessage = msg
			t.putSecret(s)
		}
	}
}

// RegionPeers lists the paired regions, by name.
func (s *Store) RegionPeers() ([]*storagev1.RegionPeer, error) {
	var out []*storagev1.RegionPeer
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRegionPeers).ForEach(func(k, v []byte) error {
			p := &storagev1.RegionPeer{}
			if err := proto.Unmarshal(v, p); err != nil {
				return fmt.Errorf("decode region peer %q: %w", k, err)
			}
			out = append(out, p)
			return nil
		})
	})
	return out, err
}
