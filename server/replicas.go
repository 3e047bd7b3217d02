package server

import (
	"context"
	"fmt"
	"slices"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage/kms"
)

// Replica statuses, as AWS reports them.
const (
	ReplicaInSync     = "InSync"
	ReplicaInProgress = "InProgress"
	ReplicaFailed     = "Failed"
)

func replicaReadOnly(primary string) *APIError {
	return apiErr(TypeInvalidParameter, "Operation not permitted on a replica secret. Call must be made in primary secret's region: %s.", primary)
}

// validateReplicaRegions checks AddReplicaRegions: well-formed, distinct,
// not this region, and paired with it (an unpaired region can never
// receive secrets).
func (s *Service) validateReplicaRegions(add []*cofferv1.ReplicaRegion) *APIError {
	seen := map[string]bool{}
	for _, r := range add {
		switch {
		case !idPattern.MatchString(r.GetRegion()):
			return apiErr(TypeInvalidParameter, "Invalid replica region: %q.", r.GetRegion())
		case r.GetRegion() == s.cfg.Region:
			return apiErr(TypeInvalidParameter, "Invalid replica region %s: it is the secret's primary region.", r.GetRegion())
		case seen[r.GetRegion()]:
			return apiErr(TypeInvalidParameter, "Region %s is listed more than once.", r.GetRegion())
		}
		if e := validateKmsKeyRef(r.GetKmsKeyId()); e != nil {
			return e
		}
		seen[r.GetRegion()] = true
		if !s.paired(r.GetRegion()) {
			return apiErr(TypeInvalidParameter, "Region %s is not paired with %s; pair them first (coffer region pair).", r.GetRegion(), s.cfg.Region)
		}
	}
	return nil
}

func (s *Service) paired(region string) bool {
	peers, err := s.state.RegionPeers()
	if err != nil {
		return false
	}
	return slices.ContainsFunc(peers, func(p *storagev1.RegionPeer) bool { return p.GetRegion() == region })
}

func replicaConfigs(add []*cofferv1.ReplicaRegion, force bool) []*storagev1.ReplicaRegionConfig {
	out := make([]*storagev1.ReplicaRegionConfig, len(add))
	for i, r := range add {
		out[i] = &storagev1.ReplicaRegionConfig{Region: r.GetRegion(), KmsKeyId: r.GetKmsKeyId(), ForceOverwrite: force}
	}
	return out
}

// replicationStatus renders a primary's replicas: Failed when the
// destination refused the secret, InSync once it acknowledged the secret's
// last change, InProgress until then. A replica reports none.
func (s *Service) replicationStatus(sec *storagev1.Secret) []*cofferv1.ReplicationStatus {
	if sec.GetReplica() {
		return nil
	}
	out := make([]*cofferv1.ReplicationStatus, 0, len(sec.GetReplicas()))
	for _, r := range sec.GetReplicas() {
		st := &cofferv1.ReplicationStatus{Region: r.GetRegion(), KmsKeyId: r.GetKmsKeyId(), Status: ReplicaInProgress, LastAccessedDate: r.GetLastAccessedDate()}
		if st.KmsKeyId == "" {
			st.KmsKeyId = kms.DefaultKeyAlias
		}
		switch {
		case r.GetStatusMessage() != "":
			st.Status, st.StatusMessage = ReplicaFailed, r.GetStatusMessage()
		case s.state.FeedAck(r.GetRegion()) >= sec.GetLastFeedSeq():
			st.Status = ReplicaInSync
		}
		out = append(out, st)
	}
	return out
}

// ReplicateSecretToRegions implements the AWS operation.
func (s *Service) ReplicateSecretToRegions(ctx context.Context, req *cofferv1.ReplicateSecretToRegionsRequest) (*cofferv1.ReplicateSecretToRegionsResponse, error) {
	if e := validateSecretID(req.GetSecretId()); e != nil {
		return nil, e
	}
	if len(req.GetAddReplicaRegions()) == 0 {
		return nil, validationErr("addReplicaRegions", "Member must have length greater than or equal to 1")
	}
	if e := s.validateReplicaRegions(req.GetAddReplicaRegions()); e != nil {
		return nil, e
	}
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	if err := s.setReplicas(ctx, sec.GetArn(), replicaConfigs(req.GetAddReplicaRegions(), req.GetForceOverwriteReplicaSecret()), nil); err != nil {
		return nil, err
	}
	after, err := s.state.Secret(sec.GetArn())
	if err != nil {
		return nil, err
	}
	return &cofferv1.ReplicateSecretToRegionsResponse{Arn: after.GetArn(), ReplicationStatus: s.replicationStatus(after)}, nil
}

// It returns once this node has applied the change, so the caller's next
// local read (the ReplicationStatus it answers with) sees it even when the
// command was forwarded to the leader.
func (s *Service) setReplicas(ctx context.Context, arn string, add []*storagev1.ReplicaRegionConfig, remove []string) error {
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_SetReplicas{SetReplicas: &raftv1.SetReplicas{
		Arn: arn, Add: add, Remove: remove, Region: s.cfg.Region,
	}}})
	if err != nil {
		return err
	}
	if err := s.rep.WaitApplied(ctx, res.Index); err != nil {
		return fmt.Errorf("wait for the replica change to apply here: %w", err)
	}
	return nil
}

// RemoveRegionsFromReplication implements the AWS operation: the replicas
// in those regions are deleted.
func (s *Service) RemoveRegionsFromReplication(ctx context.Context, req *cofferv1.RemoveRegionsFromReplicationRequest) (*cofferv1.RemoveRegionsFromReplicationResponse, error) {
	if e := validateSecretID(req.GetSecretId()); e != nil {
		return nil, e
	}
	if len(req.GetRemoveReplicaRegions()) == 0 {
		return nil, validationErr("removeReplicaRegions", "Member must have length greater than or equal to 1")
	}
	for _, r := range req.GetRemoveReplicaRegions() {
		if !idPattern.MatchString(r) {
			return nil, apiErr(TypeInvalidParameter, "Invalid replica region: %q.", r)
		}
	}
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	if err := s.setReplicas(ctx, sec.GetArn(), nil, req.GetRemoveReplicaRegions()); err != nil {
		return nil, err
	}
	after, err := s.state.Secret(sec.GetArn())
	if err != nil {
		return nil, err
	}
	return &cofferv1.RemoveRegionsFromReplicationResponse{Arn: after.GetArn(), ReplicationStatus: s.replicationStatus(after)}, nil
}

// StopReplicationToReplica implements the AWS operation: called in the
// replica's region, it promotes the replica to a standalone primary with a
// higher epoch, so its old primary's later changes are refused here.
func (s *Service) StopReplicationToReplica(ctx context.Context, req *cofferv1.StopReplicationToReplicaRequest) (*cofferv1.StopReplicationToReplicaResponse, error) {
	if e := validateSecretID(req.GetSecretId()); e != nil {
		return nil, e
	}
	sec, err := s.lookupForWrite(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	if !sec.GetReplica() {
		return nil, apiErr(TypeInvalidRequest, "StopReplicationToReplica must be called in the region of a replica secret; %s is a primary secret.", sec.GetName())
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_PromoteReplica{PromoteReplica: &raftv1.PromoteReplica{
		Arn: sec.GetArn(), Region: s.cfg.Region,
	}}})
	if err != nil {
		return nil, err
	}
	s.log.Info("replica promoted to a standalone primary", "arn", res.ARN, "old_primary_region", sec.GetPrimaryRegion())
	return &cofferv1.StopReplicationToReplicaResponse{Arn: res.ARN}, nil
}

// PromoteCandidates lists the replicas in this region whose primary region
// is unreachable (reachable reports a region's reachability).
func (s *Service) PromoteCandidates(reachable func(region string) bool) ([]*storagev1.Secret, error) {
	var out []*storagev1.Secret
	err := s.state.Secrets(func(sec *storagev1.Secret) bool {
		if sec.GetReplica() && !reachable(sec.GetPrimaryRegion()) {
			out = append(out, sec)
		}
		return true
	})
	return out, err
}

// PromoteRegionReplicas promotes each candidate: it becomes this region's
// primary with a higher epoch and replicates to its old primary region and
// the other regions the old primary replicated to, so the old primary
// converges to it when it returns. Only regions paired with this one are
// kept: a replica region the old primary was paired with but this region is
// not could never be shipped to (an unpaired region never receives secrets).
func (s *Service) PromoteRegionReplicas(ctx context.Context, candidates []*storagev1.Secret) ([]string, error) {
	var done []string
	for _, sec := range candidates {
		var replicas []*storagev1.ReplicaRegionConfig
		if s.paired(sec.GetPrimaryRegion()) {
			replicas = append(replicas, &storagev1.ReplicaRegionConfig{Region: sec.GetPrimaryRegion()})
		}
		for _, r := range sec.GetReplicas() {
			if r.GetRegion() != s.cfg.Region && r.GetRegion() != sec.GetPrimaryRegion() && s.paired(r.GetRegion()) {
				replicas = append(replicas, &storagev1.ReplicaRegionConfig{Region: r.GetRegion(), KmsKeyId: r.GetKmsKeyId()})
			}
		}
		res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_PromoteReplica{PromoteReplica: &raftv1.PromoteReplica{
			Arn: sec.GetArn(), Region: s.cfg.Region, Replicas: replicas,
		}}})
		if err != nil {
			return done, err
		}
		s.log.Info("replica promoted (region-wide)", "arn", res.ARN, "old_primary_region", sec.GetPrimaryRegion())
		done = append(done, res.ARN)
	}
	return done, nil
}
