package storage

import (
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// Cross-region replication in the state machine. A primary secret with
// replica regions appends every change to an ordered change feed (feed.go);
// the region leader ships the feed, and each destination applies what it
// receives through its own log (shipment.go); only paired regions
// (regions.go) are fed. This file holds a primary's replica set and the
// promotion of a replica. See DESIGN.md.

// ValueARN is the ARN bound into the associated data of sec's values: the
// ARN the secret had where it was created, which every copy keeps.
func ValueARN(sec *storagev1.Secret) string {
	if sec.GetValueArn() != "" {
		return sec.GetValueArn()
	}
	return sec.GetArn()
}

func errReplicaReadOnly(primary string) *Error {
	return newError(ErrReplicaReadOnly,
		"Operation not permitted on a replica secret. Call must be made in primary secret's region: %s.", primary)
}

func replicaRegions(s *storagev1.Secret) []string {
	out := make([]string, 0, len(s.GetReplicas()))
	for _, r := range s.GetReplicas() {
		out = append(out, r.GetRegion())
	}
	return out
}

// setReplicas adds and removes replica regions of a primary secret. Each
// new region gets a full copy as its first feed entry; each removed one a
// deletion.
func (t *txn) setReplicas(now time.Time, op *raftv1.SetReplicas) *Result {
	s, err := t.liveSecretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	var added []string
	for _, a := range op.GetAdd() {
		if a.GetRegion() == op.GetRegion() {
			return &Result{Err: newError(ErrInvalidParameter, "Invalid replica region %s: it is the secret's primary region.", a.GetRegion())}
		}
		if slices.ContainsFunc(s.GetReplicas(), func(r *storagev1.ReplicaRegionConfig) bool { return r.GetRegion() == a.GetRegion() }) {
			continue // already a replica: AWS answers with the current status
		}
		s.Replicas = append(s.Replicas, proto.CloneOf(a))
		added = append(added, a.GetRegion())
	}
	var removed []string
	for _, region := range op.GetRemove() {
		i := slices.IndexFunc(s.GetReplicas(), func(r *storagev1.ReplicaRegionConfig) bool { return r.GetRegion() == region })
		if i < 0 {
			return &Result{Err: newError(ErrInvalidParameter, "The secret has no replica in region %s.", region)}
		}
		s.Replicas = slices.Delete(s.Replicas, i, i+1)
		removed = append(removed, region)
	}
	if len(added) == 0 && len(removed) == 0 {
		return &Result{ARN: s.GetArn(), Name: s.GetName()}
	}
	s.LastChangedDate = timestamppb.New(now)
	t.putSecret(s)
	if len(removed) > 0 {
		t.appendFeed(now, s.GetName(), s.GetArn(), removed, nil, nil)
	}
	if len(added) > 0 {
		t.appendFeed(now, s.GetName(), s.GetArn(), added, s, t.allValues(s))
	}
	return &Result{ARN: s.GetArn(), Name: s.GetName()}
}

// promoteReplica makes a replica this region's primary: a higher epoch, the
// given replica regions, and a full copy fed to each of them.
func (t *txn) promoteReplica(now time.Time, op *raftv1.PromoteReplica) *Result {
	s, err := t.secretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	if !s.GetReplica() {
		return &Result{Err: newError(ErrInvalidParameter, "The secret %s is not a replica.", s.GetName())}
	}
	s.Replica = false
	s.PrimaryRegion = op.GetRegion()
	s.Epoch++
	s.Replicas = nil
	for _, r := range op.GetReplicas() {
		if r.GetRegion() != op.GetRegion() {
			s.Replicas = append(s.Replicas, proto.CloneOf(r))
		}
	}
	s.LastChangedDate = timestamppb.New(now)
	t.putSecret(s)
	t.appendFeed(now, s.GetName(), s.GetArn(), replicaRegions(s), s, t.allValues(s))
	return &Result{ARN: s.GetArn(), Name: s.GetName()}
}
