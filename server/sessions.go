package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// sessionKeyPrefix starts the access key id of temporary credentials, as
// AWS's do (long-term keys start with AKIA).
const sessionKeyPrefix = "ASIA"

// Session duration defaults: one hour by default, between 15 minutes and
// 12 hours unless configured otherwise.
const (
	DefaultSessionDuration    = time.Hour
	DefaultMinSessionDuration = 15 * time.Minute
	DefaultMaxSessionDuration = 12 * time.Hour
)

// sessionBounds are the configured default, minimum and maximum lifetimes
// of temporary credentials, zero meaning the defaults above.
func (c Config) sessionBounds() (def, lo, hi time.Duration) {
	def, lo, hi = c.SessionDuration, c.MinSessionDuration, c.MaxSessionDuration
	if def == 0 {
		def = DefaultSessionDuration
	}
	if lo == 0 {
		lo = DefaultMinSessionDuration
	}
	if hi == 0 {
		hi = DefaultMaxSessionDuration
	}
	return def, lo, hi
}

func sessionTokenAAD(id string) string { return "coffer:iam:session-token:" + id }

// Expired reports whether k's temporary credentials have run out, on the
// service's clock: the clock that set their expiration and that purges
// them, so that all three agree (cfg.Clock in tests).
func (i *IAM) Expired(k Key) bool { return k.Expired(i.svc.now()) }

// GetSessionToken implements the IAM operation: the caller's long-term
// access key is exchanged for temporary credentials that expire, and that
// are revoked when the key (or the principal) is deleted.
func (i *IAM) GetSessionToken(ctx context.Context, req *cofferv1.GetSessionTokenRequest) (*cofferv1.GetSessionTokenResponse, error) {
	caller := IdentityFrom(ctx)
	def, lo, hi := i.svc.cfg.sessionBounds()
	d := def
	if req.GetDurationSeconds() != 0 {
		d = time.Duration(req.GetDurationSeconds()) * time.Second
		if d < lo {
			return nil, validationErr("durationSeconds", fmt.Sprintf("Member must have value greater than or equal to %d", int64(lo/time.Second)))
		}
		if d > hi {
			return nil, validationErr("durationSeconds", fmt.Sprintf("Member must have value less than or equal to %d", int64(hi/time.Second)))
		}
	}
	if caller.AccessKeyID == "" {
		return nil, apiErr(TypeAccessDeniedException, "GetSessionToken exchanges an access key: sign the request with a long-term access key, not a client certificate.")
	}
	parent, err := i.state.AccessKey(caller.AccessKeyID)
	if err != nil {
		return nil, err
	}
	if parent == nil {
		return nil, errInvalidToken()
	}
	if parent.GetExpiration() != nil {
		return nil, apiErr(TypeAccessDeniedException, "Cannot call GetSessionToken with session credentials")
	}
	id, secret, err := NewAccessKey()
	if err != nil {
		return nil, err
	}
	id = sessionKeyPrefix + id[len(sessionKeyPrefix):]
	var raw [48]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("session token: %w", err)
	}
	token := base64.StdEncoding.EncodeToString(raw[:])
	k, err := i.sealedKey(parent.GetPrincipal(), id, secret)
	if err != nil {
		return nil, err
	}
	kr, err := i.svc.keys()
	if err != nil {
		return nil, err
	}
	if k.SealedSessionToken, err = kr.Seal(kr.DefaultKeyID(), "iam:"+parent.GetPrincipal(), sessionTokenAAD(id), id,
		storagev1.ValueKind_VALUE_KIND_STRING, []byte(token)); err != nil {
		return nil, err
	}
	expiration := i.svc.now().Add(d)
	k.Expiration = timestamppb.New(expiration)
	k.ParentAccessKeyId = parent.GetAccessKeyId()
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_CreateAccessKey{CreateAccessKey: &raftv1.CreateAccessKey{AccessKey: k}}}); err != nil {
		return nil, err
	}
	i.svc.log.Info("issued temporary credentials", "principal", parent.GetPrincipal(), "access_key_id", id,
		"parent_access_key_id", parent.GetAccessKeyId(), "expiration", expiration)
	return &cofferv1.GetSessionTokenResponse{AccessKeyId: id, SecretAccessKey: secret, SessionToken: token,
		Expiration: timestamppb.New(expiration)}, nil
}

// GetCallerIdentity implements the IAM operation.
func (i *IAM) GetCallerIdentity(ctx context.Context, _ *cofferv1.GetCallerIdentityRequest) (*cofferv1.GetCallerIdentityResponse, error) {
	id := IdentityFrom(ctx)
	return &cofferv1.GetCallerIdentityResponse{Principal: id.Principal, Arn: i.principalARN(id.Principal),
		Account: i.svc.cfg.AccountID, AccessKeyId: id.AccessKeyID}, nil
}

// PurgeSessions removes expired temporary credentials from the state
// machine. Only the leader proposes it, and only when there are some.
func (i *IAM) PurgeSessions(ctx context.Context) {
	if !i.svc.rep.IsLeader() {
		return
	}
	type expiredScanner interface {
		HasExpiredSessions(now time.Time) (bool, error)
	}
	if sc, ok := i.state.(expiredScanner); ok {
		if has, err := sc.HasExpiredSessions(i.svc.now()); err != nil || !has {
			return
		}
	}
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_PurgeSessions{PurgeSessions: &raftv1.PurgeSessions{}}}); err != nil {
		i.svc.log.Warn("session purge failed", "err", err)
	}
}
