package server

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
)

// Read consistency travels in request metadata, so the AWS-shaped messages
// stay as AWS defines them.
const (
	// ConsistencyHeader is "linearizable" (the default) or "stale".
	ConsistencyHeader = "x-coffer-consistency"
	// MinIndexHeader asks the node to wait until it has applied this index
	// before reading: read-your-writes on any node, even with stale reads.
	MinIndexHeader = "x-coffer-min-index"
	// IndexHeader, on every response, is the log index the answer reflects:
	// the write's index, or the index a read was served at.
	IndexHeader = "x-coffer-index"
)

// Consistency is how a read is served.
type Consistency struct {
	// Stale serves from local state without a read-index round.
	Stale bool
	// MinIndex, when non-zero, is waited for before reading.
	MinIndex uint64
}

// ParseConsistency reads the two headers' values.
func ParseConsistency(mode, minIndex string) (Consistency, *APIError) {
	var c Consistency
	switch strings.ToLower(mode) {
	case "", "linearizable", "strong":
	case "stale":
		c.Stale = true
	default:
		return c, apiErr(TypeInvalidParameter, "%s must be linearizable or stale, not %q.", ConsistencyHeader, mode)
	}
	if minIndex != "" {
		v, err := strconv.ParseUint(minIndex, 10, 64)
		if err != nil {
			return c, apiErr(TypeInvalidParameter, "%s must be a log index, not %q.", MinIndexHeader, minIndex)
		}
		c.MinIndex = v
	}
	return c, nil
}

type callKey struct{}

// call is what a request carries through the service and back out.
type call struct {
	consistency Consistency
	index       uint64
	// point is the index of the read point already taken for this request
	// (by the Gate, before deciding it), when pointTaken.
	point      uint64
	pointTaken bool
}

// WithConsistency returns ctx carrying a read consistency and room for the
// index the answer reflects (read back with AnsweredIndex).
func WithConsistency(ctx context.Context, c Consistency) context.Context {
	return context.WithValue(ctx, callKey{}, &call{consistency: c})
}

// AnsweredIndex is the log index the request's answer reflects, or 0.
func AnsweredIndex(ctx context.Context) uint64 {
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		return c.index
	}
	return 0
}

func noteIndex(ctx context.Context, idx uint64) {
	if c, ok := ctx.Value(callKey{}).(*call); ok && idx > c.index {
		c.index = idx
	}
}

// ReadPoint is the read point of the transport edge: the Gate takes it
// for a linearizable request before deciding it, so that the decision and
// the Service's reads see the same state; the Service's own readPoint then
// reuses it instead of taking a second one. It never waits for a
// x-coffer-min-index: that wait comes after the request is authorized.
func (s *Service) ReadPoint(ctx context.Context) error { return s.takeReadPoint(ctx) }

// readPoint makes the reads that follow as consistent as the caller asked:
// linearizable by default (a read-index round, shared with concurrent
// readers, then waiting until this node applied it), and no older than a
// x-coffer-min-index the caller names.
func (s *Service) readPoint(ctx context.Context) error {
	if err := s.takeReadPoint(ctx); err != nil {
		return err
	}
	return s.awaitMinIndex(ctx)
}

// maxReadWait is the server's bound on any wait of one read.
func (s *Service) maxReadWait() time.Duration {
	if s.cfg.MaxReadWait > 0 {
		return s.cfg.MaxReadWait
	}
	return DefaultMaxReadWait
}

// boundedWait is ctx ending at the caller's deadline or the server's
// maximum wait, whichever comes first.
func (s *Service) boundedWait(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.maxReadWait())
}

// takeReadPoint takes the read point of a linearizable request, or notes
// the applied index a stale one is served at. A read point already taken
// for the request is reused, unless the request has since written (the
// answer must then reflect its own write).
func (s *Service) takeReadPoint(ctx context.Context) error {
	var c Consistency
	cl, ok := ctx.Value(callKey{}).(*call)
	if ok {
		c = cl.consistency
		if cl.pointTaken && cl.index <= cl.point {
			return nil
		}
	}
	if c.Stale {
		noteIndex(ctx, s.rep.AppliedIndex())
		return nil
	}
	wctx, cancel := s.boundedWait(ctx)
	defer cancel()
	idx, err := s.rep.ReadBarrier(wctx)
	if err != nil {
		return err
	}
	noteIndex(ctx, idx)
	if ok {
		cl.point, cl.pointTaken = idx, true
	}
	return nil
}

// awaitMinIndex makes sure this node has applied the index the caller
// named in x-coffer-min-index. An index the region has not committed is
// refused rather than waited for (it names no write anyone has seen), and
// the wait for one it has is bounded by the caller's deadline and the
// server's maximum.
func (s *Service) awaitMinIndex(ctx context.Context) error {
	cl, ok := ctx.Value(callKey{}).(*call)
	if !ok || cl.consistency.MinIndex == 0 {
		return nil
	}
	want := cl.consistency.MinIndex
	if !cl.consistency.Stale {
		// The read point is the leader's commit index at a moment after the
		// request arrived, already applied here: every index a client can
		// have seen in an answer is at or below it.
		if want > cl.point {
			return errBeyondCommit(want, cl.point)
		}
		return nil
	}
	if applied := s.rep.AppliedIndex(); want <= applied {
		noteIndex(ctx, applied)
		return nil
	}
	wctx, cancel := s.boundedWait(ctx)
	defer cancel()
	commit, err := s.rep.ReadIndex(wctx)
	if err != nil {
		return apiErr(TypeServiceUnavailable, "This node could not learn the region's commit index to wait for index %d; retry, or read from another node.", want)
	}
	if want > commit {
		return errBeyondCommit(want, commit)
	}
	if err := s.rep.WaitApplied(wctx, want); err != nil {
		return apiErr(TypeServiceUnavailable, "This node has not yet applied index %d; retry, or read from another node.", want)
	}
	noteIndex(ctx, s.rep.AppliedIndex())
	return nil
}

func errBeyondCommit(want, commit uint64) *APIError {
	return apiErr(TypeInvalidParameter, "%s %d is beyond the region's commit index %d: no write has that index yet.", MinIndexHeader, want, commit)
}

// lookupForWrite resolves a SecretId before a write. The local state may
// lag the leader; when it does not know the secret, a read barrier makes
// sure "not found" is true before saying so. Apply checks the ARN again
// against the committed state either way.
func (s *Service) lookupForWrite(ctx context.Context, id string) (*storagev1.Secret, error) {
	sec, err := s.state.Secret(id)
	if !errors.Is(err, storage.ErrSecretNotFound) {
		return sec, err
	}
	wctx, cancel := s.boundedWait(ctx)
	defer cancel()
	if _, berr := s.rep.ReadBarrier(wctx); berr != nil {
		return nil, berr
	}
	return s.state.Secret(id)
}
