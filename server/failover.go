package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage"
)

// Failover operations of the region API: the fence, planned switchover and
// diverged versions. Each is a coffer:<Op> action the gate authorizes and
// audits like every RPC; none reads a secret value. See docs/OPERATIONS.md
// (drills) and server/DESIGN.md.

// maxSwitchoverWait bounds one BeginSwitchover or CompleteSwitchover wait;
// the caller calls again to keep waiting (the switchover stays recorded).
const maxSwitchoverWait = 60 * time.Second

// switchoverPoll is how often a switchover wait looks at the state again.
const switchoverPoll = 20 * time.Millisecond

// maxPendingNames bounds the secrets a status names per paired region.
const maxPendingNames = 1000

func (a *RegionAPI) callerARN(ctx context.Context) string {
	p := PrincipalFrom(ctx)
	if p == "" {
		return ""
	}
	return fmt.Sprintf("arn:%s:iam::%s:user/%s", a.svc.cfg.Partition, a.svc.cfg.AccountID, p)
}

// here refuses a request naming another region than the one answering.
func (a *RegionAPI) here(region, what string) error {
	if region != a.svc.Region() {
		return apiErr(TypeInvalidParameter, "%s runs in the region concerned: this is %s, not %q.", what, a.svc.Region(), region)
	}
	return nil
}

// proposeHere proposes cmd and waits until this node applied it, so the
// status read next reflects it.
func (a *RegionAPI) proposeHere(ctx context.Context, cmd *raftv1.Command) error {
	res, err := a.svc.propose(ctx, cmd)
	if err != nil {
		return err
	}
	if err := a.svc.rep.WaitApplied(ctx, res.Index); err != nil {
		return fmt.Errorf("wait for the change to apply here: %w", err)
	}
	return nil
}

// failoverStatus reads this region's failover state from the local state.
func (a *RegionAPI) failoverStatus() (*cofferv1.FailoverStatus, error) {
	c, err := a.svc.state.RegionControl()
	if err != nil {
		return nil, err
	}
	st := &cofferv1.FailoverStatus{
		Region: a.svc.Region(), Fenced: c.GetFenced(), FenceReason: c.GetFenceReason(), FencedDate: c.GetFencedDate(),
		FencedBy: c.GetFencedBy(), SwitchoverTo: c.GetSwitchoverTo(), SwitchoverDate: c.GetSwitchoverDate(),
		Replicas: map[string]uint64{}, AppliedSeq: map[string]uint64{},
	}
	err = a.svc.state.Secrets(func(sec *storagev1.Secret) bool {
		if sec.GetReplica() {
			st.Replicas[sec.GetPrimaryRegion()]++
		} else {
			st.PrimarySecrets++
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	peers, err := a.svc.state.RegionPeers()
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		fs, err := a.svc.state.FeedStatus(p.GetRegion())
		if err != nil {
			return nil, err
		}
		ps := &cofferv1.PendingShipment{Region: p.GetRegion(), PendingChanges: fs.Pending}
		if fs.Pending > 0 {
			ps.OldestPending = timestamppb.New(fs.Oldest)
			if ps.Secrets, err = a.svc.state.FeedPendingSecrets(p.GetRegion(), maxPendingNames); err != nil {
				return nil, err
			}
		}
		st.Pending = append(st.Pending, ps)
		st.AppliedSeq[p.GetRegion()] = a.svc.state.ReplicaPosition(p.GetRegion())
	}
	return st, nil
}

// FenceRegion implements the RegionService operation.
func (a *RegionAPI) FenceRegion(ctx context.Context, req *cofferv1.FenceRegionRequest) (*cofferv1.FenceRegionResponse, error) {
	if err := a.here(req.GetRegion(), "Fencing"); err != nil {
		return nil, err
	}
	if len(req.GetReason()) > 256 {
		return nil, validationErr("reason", "Member must have length less than or equal to 256")
	}
	if err := a.proposeHere(ctx, &raftv1.Command{Op: &raftv1.Command_SetRegionFence{SetRegionFence: &raftv1.SetRegionFence{
		Fenced: true, Reason: req.GetReason(), Principal: a.callerARN(ctx),
	}}}); err != nil {
		return nil, err
	}
	st, err := a.failoverStatus()
	if err != nil {
		return nil, err
	}
	a.svc.log.Warn("region fenced: writes to its primary secrets are refused", "reason", req.GetReason(), "by", st.GetFencedBy())
	return &cofferv1.FenceRegionResponse{Status: st}, nil
}

// UnfenceRegion implements the RegionService operation.
func (a *RegionAPI) UnfenceRegion(ctx context.Context, req *cofferv1.UnfenceRegionRequest) (*cofferv1.UnfenceRegionResponse, error) {
	if err := a.here(req.GetRegion(), "Unfencing"); err != nil {
		return nil, err
	}
	if err := a.proposeHere(ctx, &raftv1.Command{Op: &raftv1.Command_SetRegionFence{SetRegionFence: &raftv1.SetRegionFence{
		Principal: a.callerARN(ctx),
	}}}); err != nil {
		return nil, err
	}
	st, err := a.failoverStatus()
	if err != nil {
		return nil, err
	}
	a.svc.log.Info("region unfenced")
	return &cofferv1.UnfenceRegionResponse{Status: st}, nil
}

// GetFailoverStatus implements the RegionService operation.
func (a *RegionAPI) GetFailoverStatus(ctx context.Context, _ *cofferv1.GetFailoverStatusRequest) (*cofferv1.GetFailoverStatusResponse, error) {
	if err := a.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	st, err := a.failoverStatus()
	if err != nil {
		return nil, err
	}
	return &cofferv1.GetFailoverStatusResponse{Status: st}, nil
}

// handedOver splits the primary secrets here that replicate to region:
// those whose replica there is fine (to hand over) and those it refused.
func (a *RegionAPI) handedOver(region string) (move, failed []string, err error) {
	err = a.svc.state.Secrets(func(sec *storagev1.Secret) bool {
		if sec.GetReplica() {
			return true
		}
		for _, r := range sec.GetReplicas() {
			if r.GetRegion() != region {
				continue
			}
			if r.GetStatusMessage() != "" {
				failed = append(failed, sec.GetName())
			} else {
				move = append(move, sec.GetName())
			}
		}
		return true
	})
	return move, failed, err
}

// switchoverWait is ctx bounded by maxSwitchoverWait.
func switchoverWait(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, maxSwitchoverWait)
}

// BeginSwitchover implements the RegionService operation: it records the
// switchover (from then on, in log order, the secrets replicating to the
// target refuse writes) and waits until the target acknowledged every
// change for it.
func (a *RegionAPI) BeginSwitchover(ctx context.Context, req *cofferv1.BeginSwitchoverRequest) (*cofferv1.BeginSwitchoverResponse, error) {
	if err := a.here(req.GetRegion(), "A switchover"); err != nil {
		return nil, err
	}
	to := req.GetToRegion()
	switch {
	case !idPattern.MatchString(to):
		return nil, apiErr(TypeInvalidParameter, "Invalid region: %q.", to)
	case to == a.svc.Region():
		return nil, apiErr(TypeInvalidParameter, "A region can't switch over to itself.")
	}
	if err := a.proposeHere(ctx, &raftv1.Command{Op: &raftv1.Command_SetSwitchover{SetSwitchover: &raftv1.SetSwitchover{
		ToRegion: to, Principal: a.callerARN(ctx),
	}}}); err != nil {
		return nil, err
	}
	a.svc.log.Info("switchover started: writes to secrets replicating to the target are refused", "to_region", to)
	wctx, cancel := switchoverWait(ctx)
	defer cancel()
	for {
		fs, err := a.svc.state.FeedStatus(to)
		if err != nil {
			return nil, err
		}
		if fs.Pending == 0 {
			break
		}
		select {
		case <-wctx.Done():
			return nil, apiErr(TypeServiceUnavailable,
				"Region %s has not acknowledged %d change(s) yet (oldest from %s); the switchover stays in progress: call again to keep waiting, or abort it (CompleteSwitchover with abort).",
				to, fs.Pending, fs.Oldest.UTC().Format(time.RFC3339Nano))
		case <-time.After(switchoverPoll):
		}
	}
	move, failed, err := a.handedOver(to)
	if err != nil {
		return nil, err
	}
	through := a.svc.state.FeedAck(to)
	a.svc.log.Info("switchover drained: the target acknowledged every change", "to_region", to, "through", through, "secrets", len(move), "failed", len(failed))
	return &cofferv1.BeginSwitchoverResponse{ThroughSeq: through, Secrets: move, Failed: failed}, nil
}

// CompleteSwitchover implements the RegionService operation.
func (a *RegionAPI) CompleteSwitchover(ctx context.Context, req *cofferv1.CompleteSwitchoverRequest) (*cofferv1.CompleteSwitchoverResponse, error) {
	if err := a.here(req.GetRegion(), "A switchover"); err != nil {
		return nil, err
	}
	if err := a.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	c, err := a.svc.state.RegionControl()
	if err != nil {
		return nil, err
	}
	to := req.GetToRegion()
	if c.GetSwitchoverTo() != to || to == "" {
		return nil, apiErr(TypeResourceNotFound, "No switchover to %q is in progress in %s.", to, a.svc.Region())
	}
	resp := &cofferv1.CompleteSwitchoverResponse{}
	if !req.GetAbort() {
		wctx, cancel := switchoverWait(ctx)
		defer cancel()
		for {
			move, _, err := a.handedOver(to)
			if err != nil {
				return nil, err
			}
			if len(move) == 0 {
				break
			}
			select {
			case <-wctx.Done():
				return nil, apiErr(TypeServiceUnavailable,
					"%d secret(s) are still primary in %s (first: %s): %s has not taken them over yet. Promote them there (PromoteRegion with from_region %s and planned), then call again.",
					len(move), a.svc.Region(), move[0], to, a.svc.Region())
			case <-time.After(switchoverPoll):
			}
		}
	}
	if err := a.proposeHere(ctx, &raftv1.Command{Op: &raftv1.Command_SetSwitchover{SetSwitchover: &raftv1.SetSwitchover{
		Principal: a.callerARN(ctx),
	}}}); err != nil {
		return nil, err
	}
	move, _, err := a.handedOver(to)
	if err != nil {
		return nil, err
	}
	resp.StillPrimary = move
	err = a.svc.state.Secrets(func(sec *storagev1.Secret) bool {
		if sec.GetReplica() && sec.GetPrimaryRegion() == to {
			resp.HandedOver++
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	a.svc.log.Info("switchover ended", "to_region", to, "aborted", req.GetAbort(), "replicas_of_target", resp.GetHandedOver(), "still_primary", len(move))
	return resp, nil
}

// ListDivergedVersions implements the RegionService operation.
func (a *RegionAPI) ListDivergedVersions(ctx context.Context, req *cofferv1.ListDivergedVersionsRequest) (*cofferv1.ListDivergedVersionsResponse, error) {
	if len(req.GetNamePrefix()) > storage.MaxNameLength {
		return nil, validationErr("namePrefix", fmt.Sprintf("Member must have length less than or equal to %d", storage.MaxNameLength))
	}
	if err := a.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	resp := &cofferv1.ListDivergedVersionsResponse{}
	err := a.svc.state.Secrets(func(sec *storagev1.Secret) bool {
		if !strings.HasPrefix(sec.GetName(), req.GetNamePrefix()) {
			return true
		}
		ds := &cofferv1.DivergedSecret{Name: sec.GetName(), Arn: sec.GetArn(), PrimaryRegion: sec.GetPrimaryRegion(), Replica: sec.GetReplica()}
		for _, v := range sec.GetVersions() {
			if slices.Contains(v.GetStages(), storage.StageCurrent) {
				ds.CurrentVersionId = v.GetVersionId()
			}
			var labels []string
			for _, l := range v.GetStages() {
				if storage.IsDivergedLabel(l) {
					labels = append(labels, l)
				}
			}
			if len(labels) > 0 {
				ds.Versions = append(ds.Versions, &cofferv1.DivergedVersion{VersionId: v.GetVersionId(), Labels: labels, CreatedDate: v.GetCreatedDate()})
			}
		}
		if len(ds.Versions) > 0 {
			slices.SortStableFunc(ds.Versions, func(x, y *cofferv1.DivergedVersion) int {
				return -x.GetCreatedDate().AsTime().Compare(y.GetCreatedDate().AsTime())
			})
			resp.Secrets = append(resp.Secrets, ds)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(resp.Secrets, func(x, y *cofferv1.DivergedSecret) int { return strings.Compare(x.GetName(), y.GetName()) })
	return resp, nil
}

// ResolveDivergedVersion implements the RegionService operation. It runs
// where the secret is primary: a replica's diverged versions are not in
// its primary, which can neither adopt nor discard them.
func (a *RegionAPI) ResolveDivergedVersion(ctx context.Context, req *cofferv1.ResolveDivergedVersionRequest) (*cofferv1.ResolveDivergedVersionResponse, error) {
	if e := validateSecretID(req.GetSecretId()); e != nil {
		return nil, e
	}
	if req.GetVersionId() == "" {
		return nil, validationErr("versionId", "Member must have length greater than or equal to 1")
	}
	if e := validateToken("versionId", req.GetVersionId()); e != nil {
		return nil, e
	}
	sec, err := a.svc.lookupForWrite(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	if sec.GetReplica() {
		return nil, apiErr(TypeInvalidRequest,
			"Secret %s is a replica of %s here; its diverged versions are resolved where it is primary. Fail back to %s first (coffer region failback), "+
				"or copy the value by hand: read it here with --version-id %s and put it in %s.",
			sec.GetName(), sec.GetPrimaryRegion(), a.svc.Region(), req.GetVersionId(), sec.GetPrimaryRegion())
	}
	res, err := a.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_ResolveDiverged{ResolveDiverged: &raftv1.ResolveDiverged{
		Arn: sec.GetArn(), VersionId: req.GetVersionId(), Adopt: req.GetAdopt(),
	}}})
	if err != nil {
		return nil, err
	}
	a.svc.log.Info("diverged version resolved", "arn", res.ARN, "version_id", req.GetVersionId(), "adopted", req.GetAdopt())
	return &cofferv1.ResolveDivergedVersionResponse{Arn: res.ARN, VersionId: req.GetVersionId()}, nil
}
