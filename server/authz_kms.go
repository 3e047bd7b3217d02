package server

import (
	"context"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/policy"
)

// This file authorizes KMS keys: the key operations (kms:<Operation> on
// the key's ARN), and the use Secrets Manager makes of a secret's key on
// the caller's behalf (kms:GenerateDataKey to write a version,
// kms:Decrypt to read one), which AWS requires besides the secret access.

// keyringState is implemented by a state that holds the keyring record
// (storage.Store); an Authorizer over a state without it finds no key.
type keyringState interface {
	Keyring() (*storagev1.Keyring, error)
}

// keyTarget fills t for a KMS request: the key it names (for an alias
// request, the key the alias names now or is to name), or "*" for
// CreateKey and the listings.
func (a *Authorizer) keyTarget(t *Target, req proto.Message) error {
	ref := ""
	switch r := req.(type) {
	case *cofferv1.CreateAliasRequest:
		ref = r.GetTargetKeyId()
	case *cofferv1.UpdateAliasRequest:
		ref = r.GetTargetKeyId()
	case *cofferv1.DeleteAliasRequest:
		ref = r.GetAliasName()
	case *cofferv1.ListAliasesRequest:
		ref = r.GetKeyId()
	case interface{ GetKeyId() string }:
		ref = r.GetKeyId()
	}
	if ref == "" {
		return nil
	}
	ks, ok := a.state.(keyringState)
	if !ok {
		return nil
	}
	rec, err := ks.Keyring()
	if err != nil {
		return err
	}
	key := a.cfg.findKey(rec, ref)
	if key == nil {
		// Decided on the ARN named; if allowed, the operation answers
		// NotFoundException as it would anyway.
		if r, ok := a.cfg.parseKeyRef(ref); ok && r.keyID != "" && !r.arn {
			t.Resource = a.cfg.keyARN(r.keyID)
		} else if ok && r.arn {
			t.Resource = ref
		}
		return nil
	}
	t.Key = key
	t.Resource = a.cfg.keyARN(key.GetKeyId())
	return nil
}

// keyPolicyDelegates reports whether key policy d lets the account's
// identity policies decide req: it allows req for the account's root
// user (the default key policy's "Enable IAM User Permissions").
func keyPolicyDelegates(d *policy.Document, req policy.Request, cfg Config) bool {
	req.Principal = "arn:" + cfg.Partition + ":iam::" + cfg.AccountID + ":root"
	return policy.Evaluate(req, nil, &policy.Named{Name: KeyPolicyName, Doc: d}).Decision == policy.Allowed
}

// KeyUser decides whether the caller may have Secrets Manager use a KMS
// key on its behalf: action is kms:GenerateDataKey or kms:Decrypt. It
// returns nil when allowed and AWS's AccessDeniedException otherwise.
type KeyUser interface {
	AllowKeyUse(action string, key *storagev1.KmsKey) error
}

type keyUserKey struct{}

// WithKeyUser returns ctx carrying the caller's KeyUser. The transport
// edge sets it; internal callers (rotation, replication) call the Service
// without one, as the system.
func WithKeyUser(ctx context.Context, u KeyUser) context.Context {
	return context.WithValue(ctx, keyUserKey{}, u)
}

// callerKeys is a KeyUser for one caller.
type callerKeys struct {
	a      *Authorizer
	caller Caller
}

// AllowKeyUse decides action on key for the caller, with the condition
// keys KMS sets when Secrets Manager calls it on a caller's behalf.
func (u callerKeys) AllowKeyUse(action string, key *storagev1.KmsKey) error {
	t := Target{Resource: u.a.cfg.keyARN(key.GetKeyId()), Key: key, Keys: policy.Keys{}}
	t.Keys.Set("kms:ViaService", "secretsmanager."+u.a.cfg.Region+".amazonaws.com")
	t.Keys.Set("kms:CallerAccount", u.a.cfg.AccountID)
	v, err := u.a.Decide(u.caller, action, t)
	if err != nil {
		return err
	}
	if !v.Allowed {
		return apiErr(TypeAccessDeniedException, "Access to KMS is not allowed. %s", v.Err().Message)
	}
	return nil
}

// allowKeyUse checks the caller in ctx may use key for action. The
// region's default key needs no KMS permission (like AWS's
// aws/secretsmanager key, any caller allowed the secret may use it), and
// an internal caller (no KeyUser) is the system.
func allowKeyUse(ctx context.Context, action string, key *storagev1.KmsKey) error {
	if !key.GetCustomer() {
		return nil
	}
	u, _ := ctx.Value(keyUserKey{}).(KeyUser)
	if u == nil {
		return nil
	}
	return u.AllowKeyUse(action, key)
}
