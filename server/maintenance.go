package server

import (
	"context"
	"errors"
	"time"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// Run does the service's background work until ctx ends: on the leader,
// creating the keyring and purging secrets whose recovery window has ended;
// on every node, flushing gathered last-accessed days.
func (s *Service) Run(ctx context.Context) {
	maintain := time.NewTicker(s.cfg.MaintenanceInterval)
	defer maintain.Stop()
	flush := time.NewTicker(s.cfg.AccessFlushInterval)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			s.FlushAccess(context.WithoutCancel(ctx))
			return
		case <-maintain.C:
			if err := s.EnsureKeyring(ctx); err != nil && !errors.Is(err, errKeyringNotReady) {
				s.log.Warn("keyring initialisation failed", "err", err)
			}
			s.PurgeExpired(ctx)
		case <-flush.C:
			s.FlushAccess(ctx)
		}
	}
}

// PurgeExpired finishes the deletions whose recovery window has ended. Only
// the leader does it; Apply re-checks the date, so a racing RestoreSecret wins.
func (s *Service) PurgeExpired(ctx context.Context) int {
	if !s.rep.IsLeader() {
		return 0
	}
	now := s.now()
	var due []string
	err := s.state.Secrets(func(sec *storagev1.Secret) bool {
		// A replica goes when its primary's purge ships, never on this
		// region's clock (the primary may have restored it meanwhile).
		if d := sec.GetDeletionDate(); d != nil && !d.AsTime().After(now) && !sec.GetReplica() {
			due = append(due, sec.GetArn())
		}
		return true
	})
	if err != nil {
		s.log.Warn("purge scan failed", "err", err)
		return 0
	}
	purged := 0
	for _, arn := range due {
		res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_PurgeSecret{PurgeSecret: &raftv1.PurgeSecret{Arn: arn}}})
		if err != nil {
			s.log.Warn("purge failed", "arn", arn, "err", err)
			continue
		}
		if !res.DeletionDate.IsZero() {
			purged++
			s.log.Info("secret purged after its recovery window", "arn", arn)
		}
	}
	return purged
}

// FlushAccess proposes the last-accessed days gathered since the last flush.
func (s *Service) FlushAccess(ctx context.Context) {
	entries := s.access.drain()
	if len(entries) == 0 {
		return
	}
	if _, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_RecordAccess{RecordAccess: &raftv1.RecordAccess{Entries: entries}}}); err != nil {
		s.log.Debug("last-accessed flush deferred", "secrets", len(entries), "err", err)
	}
}
