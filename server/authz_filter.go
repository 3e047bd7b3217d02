package server

import (
	"context"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/server/policy"
)

// This file decides ListSecrets and BatchGetSecretValue secret by secret:
// the filter the transport edge hands the Service in the context.

// SecretFilter decides, secret by secret, what a caller may see in
// ListSecrets and BatchGetSecretValue. AllowSecret decides action on the
// secret the caller knows as id: sec, or nil when no such secret exists —
// then the decision is on the ARN the caller named, so that a caller
// without rights cannot tell a secret it may not read from one that does
// not exist. It returns nil when allowed and the AccessDeniedException
// otherwise.
type SecretFilter interface {
	AllowSecret(action, id string, sec *storagev1.Secret) error
}

type filterKey struct{}

// WithSecretFilter returns ctx carrying the caller's filter. The transport
// edge sets it; internal callers (rotation, replication) call the Service
// without one and see everything.
func WithSecretFilter(ctx context.Context, f SecretFilter) context.Context {
	return context.WithValue(ctx, filterKey{}, f)
}

func secretFilterFrom(ctx context.Context) SecretFilter {
	f, _ := ctx.Value(filterKey{}).(SecretFilter)
	return f
}

// callerFilter is a SecretFilter for one caller.
type callerFilter struct {
	a      *Authorizer
	caller Caller
}

// AllowSecret decides action on one secret as the edge decides a request
// naming it: the same target, and the keys the request would carry
// (secretsmanager:VersionStage AWSCURRENT for a GetSecretValue).
func (f callerFilter) AllowSecret(action, id string, sec *storagev1.Secret) error {
	t := Target{Resource: "*", Keys: policy.Keys{}}
	f.a.secretTarget(&t, id, sec)
	if _, req, ok := secretRequest(action, id); ok {
		requestKeys(t.Keys, req)
	}
	v, err := f.a.Decide(f.caller, action, t)
	if err != nil {
		return err
	}
	if !v.Allowed {
		return v.Err()
	}
	return nil
}
