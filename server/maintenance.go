package server

import (
	"context"
	"errors"
	"time"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage/kms"
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
			s.MaintainKeys(ctx)
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

// MaintainKeys, on the leader, rotates the KMS keys whose automatic
// rotation is due or whose primary material has wrapped KeyWrapLimit values
// (new material; nothing is re-encrypted), and deletes the keys whose
// deletion date has passed. Apply re-checks both, so a racing
// CancelKeyDeletion or DisableKey wins. It returns how many keys it
// rotated and deleted.
func (s *Service) MaintainKeys(ctx context.Context) (rotated, deleted int) {
	if !s.rep.IsLeader() {
		return 0, 0
	}
	rec, err := s.state.Keyring()
	if err != nil || rec == nil {
		return 0, 0
	}
	now := s.now()
	for _, key := range rec.GetKeys() {
		arn := s.cfg.keyARN(key.GetKeyId())
		switch {
		case key.GetDeletionDate() != nil && !key.GetDeletionDate().AsTime().After(now):
			if _, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_DeleteKmsKey{DeleteKmsKey: &raftv1.DeleteKmsKey{KeyId: key.GetKeyId()}}}); err != nil {
				s.log.Warn("kms key deletion failed", "key_arn", arn, "err", err)
				continue
			}
			deleted++
			s.log.Info("kms key deleted after its waiting period", "key_arn", arn)
		case key.GetRotationEnabled() && key.GetDeletionDate() == nil && !key.GetDisabled() &&
			key.GetNextRotationDate() != nil && !key.GetNextRotationDate().AsTime().After(now):
			if err := s.rotateKey(ctx, key, false); err != nil {
				s.log.Warn("kms key rotation failed", "key_arn", arn, "err", err)
				continue
			}
			rotated++
			s.log.Info("kms key rotated", "key_arn", arn)
		case key.GetDeletionDate() == nil && !key.GetDisabled() && s.wrapLimitReached(key):
			if err := s.rotateKey(ctx, key, false); err != nil {
				s.log.Warn("kms key rollover before its nonce limit failed", "key_arn", arn, "err", err)
				continue
			}
			rotated++
			s.log.Info("kms key given new material before its nonce limit", "key_arn", arn, "version", key.GetPrimaryVersion()+1)
		}
	}
	return rotated, deleted
}

// wrapLimitReached reports whether key's primary material has wrapped
// its share of values.
func (s *Service) wrapLimitReached(key *storagev1.KmsKey) bool {
	limit := s.cfg.KeyWrapLimit
	if limit == 0 {
		limit = kms.WrapLimit
	}
	n, err := s.state.KMSWraps(key.GetKeyId(), key.GetPrimaryVersion())
	if err != nil {
		s.log.Warn("reading a kms key's wrap count failed", "key_arn", s.cfg.keyARN(key.GetKeyId()), "err", err)
		return false
	}
	return n >= limit
}
