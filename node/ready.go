package node

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/server"
)

// The start-up phases a node that is not ready yet reports (Gate.Ready,
// the ServiceUnavailable message).
const (
	phaseLeader    = "waiting for a leader"
	phaseKeyring   = "waiting for the region's keyring"
	phaseRoot      = "creating the root principal"
	phaseCatchUp   = "catching up with the leader's log"
	phasePrincipal = "waiting for the root principal to replicate"
)

// errNotReady is how Gate.Ready reports a phase.
type errNotReady string

func (e errNotReady) Error() string { return string(e) }

// readiness is a node's start-up state: the phase it is in until it is
// ready.
type readiness struct {
	phase atomic.Pointer[string]
	ready atomic.Bool
}

func (r *readiness) set(phase string) { r.phase.Store(&phase) }

// check is Gate.Ready: nil once the node serves requests.
func (r *readiness) check() error {
	if r.ready.Load() {
		return nil
	}
	if p := r.phase.Load(); p != nil {
		return errNotReady(*p)
	}
	return errNotReady(phaseLeader)
}

// retryEvery is how often a start-up step that failed transiently (no
// leader for a moment) is tried again.
const retryEvery = 50 * time.Millisecond

// waitReady brings the node to serving: a leader is known; the keyring is
// loaded (the leader of a new region creates it); the leader of a region
// with no principal saves and then creates the root principal; the node has
// applied the log up to the leader's commit index as of now (a read
// barrier, through the read-index path); and the region has a principal.
// Until then the APIs answer ServiceUnavailable. A node that becomes leader
// while it waits creates the root principal itself.
func (n *Node) waitReady(ctx context.Context) error {
	n.readiness.set(phaseLeader)
	if err := n.raft.WaitLeader(ctx); err != nil {
		return err
	}
	n.readiness.set(phaseKeyring)
	for {
		err := n.svc.EnsureKeyring(ctx)
		if err == nil {
			break
		}
		if server.AsAPIError(err).Type != server.TypeServiceUnavailable {
			return fmt.Errorf("initialise keyring: %w", err)
		}
		if err := sleep(ctx, retryEvery); err != nil {
			return err
		}
	}
	for {
		if n.raft.IsLeader() {
			n.readiness.set(phaseRoot)
			if err := n.bootstrapRoot(ctx); err != nil {
				if errors.Is(err, server.ErrSaveRootCredentials) || server.AsAPIError(err).Type != server.TypeServiceUnavailable {
					return err
				}
			}
		}
		n.readiness.set(phaseCatchUp)
		if _, err := n.raft.ReadBarrier(ctx); err == nil {
			principals, err := n.store.Principals()
			if err != nil {
				return fmt.Errorf("read principals: %w", err)
			}
			if len(principals) > 0 {
				n.readiness.ready.Store(true)
				return nil
			}
			n.readiness.set(phasePrincipal)
		}
		if err := sleep(ctx, retryEvery); err != nil {
			return err
		}
	}
}

// bootstrapRoot creates the root principal of a region that has none,
// after OnRootCredentials has kept its key.
func (n *Node) bootstrapRoot(ctx context.Context) error {
	saved := ""
	save := func(id, secret string) error {
		saved = id
		if n.opts.OnRootCredentials == nil {
			return nil
		}
		return n.opts.OnRootCredentials(id, secret)
	}
	id, _, created, err := n.iam.BootstrapRoot(ctx, n.opts.RootAccessKeyID, n.opts.RootSecretAccessKey, save)
	if err != nil {
		return fmt.Errorf("bootstrap root principal: %w", err)
	}
	switch {
	case created:
		n.log.Info("created the root principal and its access key", "access_key_id", id)
	case saved != "":
		// Another node's proposal won: the key this node saved is not the
		// region's. Its node's file holds the right one.
		n.log.Warn("another node created the root principal first; the root access key this node saved is not valid",
			"saved_access_key_id", saved)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
