package storage

import (
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// Failover controls in the state machine: the region's fence and a planned
// switchover in progress (meta/region_control), the write refusals they
// cause, and resolving the versions a returning old primary kept under
// COFFER_DIVERGED_ labels. The refusals are decided here, in Apply, so they
// are ordered with the writes in the log: a write after SetSwitchover is
// refused on every node, and the feed drained afterwards holds everything
// that was accepted.

// keyRegionControl is the meta key of the storagev1.RegionControl record.
var keyRegionControl = []byte("region_control")

func (t *txn) regionControl() *storagev1.RegionControl {
	c := &storagev1.RegionControl{}
	if b := t.tx.Bucket(bucketMeta).Get(keyRegionControl); b != nil {
		if err := proto.Unmarshal(b, c); err != nil {
			t.fail(fmt.Errorf("decode region control: %w", err))
		}
	}
	return c
}

func (t *txn) putRegionControl(c *storagev1.RegionControl) {
	meta := t.tx.Bucket(bucketMeta)
	if proto.Equal(c, &storagev1.RegionControl{}) {
		t.fail(meta.Delete(keyRegionControl))
		return
	}
	t.put(meta, keyRegionControl, c)
}

// setRegionFence records or lifts the fence.
func (t *txn) setRegionFence(now time.Time, op *raftv1.SetRegionFence) *Result {
	c := t.regionControl()
	if op.GetFenced() {
		c.Fenced, c.FenceReason, c.FencedDate, c.FencedBy = true, op.GetReason(), timestamppb.New(now), op.GetPrincipal()
	} else {
		c.Fenced, c.FenceReason, c.FencedDate, c.FencedBy = false, "", nil, ""
	}
	t.putRegionControl(c)
	return &Result{}
}

// setSwitchover starts a switchover to a paired region, or ends it. A
// second switchover to another region while one is in progress is refused.
func (t *txn) setSwitchover(now time.Time, op *raftv1.SetSwitchover) *Result {
	c := t.regionControl()
	to := op.GetToRegion()
	if to == "" {
		c.SwitchoverTo, c.SwitchoverDate, c.SwitchoverBy = "", nil, ""
		t.putRegionControl(c)
		return &Result{}
	}
	switch {
	case !ValidRegion(to):
		return &Result{Err: newError(ErrInvalidParameter, "Invalid region: %s.", short(to))}
	case t.tx.Bucket(bucketRegionPeers).Get([]byte(to)) == nil:
		return &Result{Err: newError(ErrInvalidParameter, "Region %s is not paired with this region.", to)}
	case c.GetSwitchoverTo() == to:
		return &Result{} // already in progress: a retried begin
	case c.GetSwitchoverTo() != "":
		return &Result{Err: newError(ErrInvalidParameter, "A switchover to %s is already in progress; complete or abort it first.", c.GetSwitchoverTo())}
	}
	c.SwitchoverTo, c.SwitchoverDate, c.SwitchoverBy = to, timestamppb.New(now), op.GetPrincipal()
	t.putRegionControl(c)
	return &Result{}
}

// refusal is the failover refusal, if any, of command op (table entry c):
// a write to a primary secret (or a new secret, or a promotion) while the
// region is fenced, or a write to a secret being handed over.
func (t *txn) refusal(op proto.Message, c command) *Error {
	switch o := op.(type) {
	case *raftv1.CreateSecret:
		return t.refuseWrite(nil, o.GetName())
	case *raftv1.SetReplicas:
		s, err := t.secretByARN(o.GetArn())
		if err != nil {
			return nil
		}
		if e := t.refuseWrite(s, s.GetName()); e != nil {
			return e
		}
		// A replica added in the target during a switchover could miss the
		// drain and never be handed over.
		if to := t.regionControl().GetSwitchoverTo(); to != "" && slices.ContainsFunc(o.GetAdd(), func(r *storagev1.ReplicaRegionConfig) bool { return r.GetRegion() == to }) {
			return newError(ErrSwitchingOver, "Region %s is taking over this region's secrets by a planned switchover; add it as a replica region once the switchover completes.", to)
		}
		return nil
	case *raftv1.PromoteReplica:
		if t.regionControl().GetFenced() {
			return newError(ErrRegionFenced, "This region is fenced and takes over no secret; unfence it first.")
		}
		return nil
	}
	if c.feed != roleSecretChange {
		return nil
	}
	if s, err := t.secretByARN(c.arn(op)); err == nil {
		return t.refuseWrite(s, s.GetName())
	}
	return nil
}

// refuseWrite is the refusal, if any, of a command that writes the primary
// secret s (nil for a command creating a secret) while the region is fenced
// or hands s over to another region.
func (t *txn) refuseWrite(s *storagev1.Secret, name string) *Error {
	if s != nil && s.GetReplica() {
		return nil // the command's own replica rule answers
	}
	c := t.regionControl()
	if c.GetFenced() {
		why := ""
		if c.GetFenceReason() != "" {
			why = " (" + c.GetFenceReason() + ")"
		}
		return newError(ErrRegionFenced, "This region is fenced%s and refuses writes to its primary secrets; retry later, or in the region that took over.", why)
	}
	if to := c.GetSwitchoverTo(); to != "" && s != nil && slices.Contains(replicaRegions(s), to) {
		return newError(ErrSwitchingOver, "Secret %s is being handed over to region %s by a planned switchover; retry, and call region %s once it completes.", name, to, to)
	}
	return nil
}

// RegionControl is the region's fence and switchover state (zero when
// neither is set).
func (s *Store) RegionControl() (*storagev1.RegionControl, error) {
	c := &storagev1.RegionControl{}
	err := s.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta).Get(keyRegionControl); b != nil {
			return proto.Unmarshal(b, c)
		}
		return nil
	})
	return c, err
}

// FeedPendingSecrets names the secrets of dest's unacknowledged feed
// entries, sorted, at most limit.
func (s *Store) FeedPendingSecrets(dest string, limit int) ([]string, error) {
	seen := map[string]bool{}
	err := s.view(func(tx *bolt.Tx) error {
		acked := u64(tx.Bucket(bucketFeedAcks).Get([]byte(dest)))
		c := tx.Bucket(bucketFeed).Cursor()
		for k, v := c.Seek(u64b(acked + 1)); k != nil && len(seen) < limit; k, v = c.Next() {
			e := decodeFeedEntry(k, v)
			if slices.Contains(e.GetDestinations(), dest) {
				seen[e.GetName()] = true
			}
		}
		return nil
	})
	return slices.Sorted(mapKeys(seen)), err
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// IsDivergedLabel reports whether a staging label is one a failback gave.
func IsDivergedLabel(l string) bool { return isDivergedLabel(l) }

// resolveDiverged adopts or discards a diverged version of a primary
// secret. Adopting moves AWSCURRENT to it (AWSPREVIOUS to the version that
// had it) and takes its diverged labels off; discarding deletes it and its
// value.
func (t *txn) resolveDiverged(now time.Time, op *raftv1.ResolveDiverged) *Result {
	s, err := t.liveSecretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	v := findVersion(s, op.GetVersionId())
	if v == nil {
		return &Result{Err: newError(ErrVersionNotFound, "Secrets Manager can't find the specified secret version: %s", op.GetVersionId())}
	}
	if !slices.ContainsFunc(v.GetStages(), isDivergedLabel) {
		return &Result{Err: newError(ErrInvalidParameter, "Version %s of %s is not a diverged version (it has no %s label).", op.GetVersionId(), s.GetName(), DivergedLabelPrefix)}
	}
	if op.GetAdopt() {
		if !HasValue(v) {
			return &Result{Err: newError(ErrInvalidParameter, "Version %s has no value to adopt.", op.GetVersionId())}
		}
		v.Stages = slices.DeleteFunc(v.Stages, isDivergedLabel)
		if holder := stageHolder(s, StageCurrent); holder != v {
			noteCurrentMoved(now, s)
		}
		attachStage(s, StageCurrent, v)
	} else {
		s.Versions = slices.DeleteFunc(s.Versions, func(x *storagev1.Version) bool { return x == v })
		t.deleteValue(s.GetArn(), v.GetVersionId())
	}
	s.LastChangedDate = timestamppb.New(now)
	t.putSecret(s)
	return &Result{ARN: s.GetArn(), Name: s.GetName(), VersionID: v.GetVersionId()}
}
