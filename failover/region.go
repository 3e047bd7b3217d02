package failover

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Region is one region as a procedure reaches it: its name and a client
// connection to any of its nodes.
type Region struct {
	Name string
	Conn grpc.ClientConnInterface
	// Dial, when set, opens a connection to another node of the region
	// (with the same credentials): a follower refusing a leader-only
	// operation names the leader's API address, and the call is made there.
	Dial func(addr string) (grpc.ClientConnInterface, error)
}

func (r Region) regions() cofferv1.RegionServiceClient {
	return cofferv1.NewRegionServiceClient(r.Conn)
}

func (r Region) secrets() cofferv1.SecretsManagerServiceClient {
	return cofferv1.NewSecretsManagerServiceClient(r.Conn)
}

// leaderAddrKey is the ErrorInfo metadata key of server.MetaLeaderAPIAddress.
const leaderAddrKey = "leader_api_address"

// onLeader calls fn against r and, when a follower refuses naming the
// leader, once more against the leader.
func onLeader[T any](r Region, fn func(cofferv1.RegionServiceClient) (T, error)) (T, error) {
	resp, err := fn(r.regions())
	if err == nil || r.Dial == nil || status.Code(err) != codes.FailedPrecondition {
		return resp, err
	}
	addr := errorMetadata(err)[leaderAddrKey]
	if addr == "" {
		return resp, err
	}
	conn, derr := r.Dial(addr)
	if derr != nil {
		return resp, fmt.Errorf("%w (and dialing the leader %s: %v)", err, addr, derr)
	}
	if c, ok := conn.(interface{ Close() error }); ok {
		defer c.Close()
	}
	return fn(cofferv1.NewRegionServiceClient(conn))
}

func errorMetadata(err error) map[string]string {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetMetadata()
		}
	}
	return nil
}

// retryable reports whether a call may succeed when made again: the
// region is busy, has no leader for a moment, or a wait ran out.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// callTimeout bounds one RPC; the switchover waits run server-side up to a
// minute, so a call is given a little more.
const callTimeout = 70 * time.Second

// retry calls fn until it succeeds, fails for good, or ctx ends.
func retry[T any](ctx context.Context, fn func(ctx context.Context) (T, error)) (T, error) {
	backoff := 50 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := fn(cctx)
		cancel()
		if err == nil || !retryable(err) || ctx.Err() != nil {
			if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
			}
			return resp, err
		}
		select {
		case <-ctx.Done():
			return resp, fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// reasonOf is the AWS error type in an ErrorInfo detail, or "".
func reasonOf(detail any) string {
	if info, ok := detail.(*errdetails.ErrorInfo); ok {
		return info.GetReason()
	}
	return ""
}
