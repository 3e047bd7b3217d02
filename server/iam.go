package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/coreos/go-oidc/v3/oidc"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage"
)

// RootPrincipal is the principal cofferd creates on a region's first start.
const RootPrincipal = "root"

var principalPattern = regexp.MustCompile(`^[A-Za-z0-9+=,.@_-]{1,64}$`)

// IAMState is the read side of principals, keys and policies.
type IAMState interface {
	AuthzState
	Principals() ([]storage.PrincipalEntry, error)
	Policies() ([]*storagev1.Policy, error)
}

// IAM implements the IAMService and looks up credentials for
// authentication (credentials.go). Access key secrets are sealed under the
// keyring: SigV4 recomputes signatures from the secret, so the state keeps
// the secret itself; what the node keeps in memory are verifiers.
type IAM struct {
	cofferv1.UnimplementedIAMServiceServer
	svc   *Service
	state IAMState
	authz *Authorizer
	web   *webIdentities

	mu    sync.Mutex
	cache map[string]*credential // access key id → its verifiers
}

var _ cofferv1.IAMServiceServer = (*IAM)(nil)

// NewIAM builds the IAM service over svc's replicator and keyring.
func NewIAM(svc *Service, state IAMState) *IAM {
	return &IAM{svc: svc, state: state, authz: NewAuthorizer(svc.cfg, state), cache: map[string]*credential{},
		web: &webIdentities{cfg: svc.cfg, now: svc.now, verifiers: map[string]*oidc.IDTokenVerifier{}}}
}

// Authorizer is the region's authorizer over the same state.
func (i *IAM) Authorizer() *Authorizer { return i.authz }

func (i *IAM) principalARN(name string) string {
	if strings.HasPrefix(name, "arn:") {
		return name // a role session's principal is its assumed-role ARN
	}
	return fmt.Sprintf("arn:%s:iam::%s:user/%s", i.svc.cfg.Partition, i.svc.cfg.AccountID, name)
}

// CreatePrincipal implements the IAM operation.
func (i *IAM) CreatePrincipal(ctx context.Context, req *cofferv1.CreatePrincipalRequest) (*cofferv1.CreatePrincipalResponse, error) {
	if !principalPattern.MatchString(req.GetName()) {
		return nil, apiErr(TypeValidation, "Invalid principal name. Use 1–64 characters of A-Za-z0-9+=,.@_-.")
	}
	if ReservedPrincipal(req.GetName()) {
		// root and anonymous have built-in meanings; a principal by
		// either name would be mistaken for them.
		return nil, apiErr(TypeInvalidParameter, "The principal name %s is reserved; choose another name.", req.GetName())
	}
	if e := checkLength("description", req.GetDescription(), 0, 1000); e != nil {
		return nil, e
	}
	if e := validatePrincipalTags(req.GetTags()); e != nil {
		return nil, e
	}
	p := &storagev1.Principal{Name: req.GetName(), Arn: i.principalARN(req.GetName()), CreatedDate: timestamppb.New(i.svc.now()),
		Description: req.GetDescription(), Tags: req.GetTags()}
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_CreatePrincipal{CreatePrincipal: &raftv1.CreatePrincipal{Principal: p}}}); err != nil {
		return nil, err
	}
	return &cofferv1.CreatePrincipalResponse{Principal: &cofferv1.PrincipalInfo{
		Name: p.GetName(), Arn: p.GetArn(), CreatedDate: p.GetCreatedDate(), Description: p.GetDescription(), Tags: p.GetTags(),
	}}, nil
}

// ListPrincipals implements the IAM operation.
func (i *IAM) ListPrincipals(ctx context.Context, _ *cofferv1.ListPrincipalsRequest) (*cofferv1.ListPrincipalsResponse, error) {
	if err := i.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	entries, err := i.state.Principals()
	if err != nil {
		return nil, err
	}
	resp := &cofferv1.ListPrincipalsResponse{}
	for _, e := range entries {
		resp.Principals = append(resp.Principals, &cofferv1.PrincipalInfo{
			Name: e.Principal.GetName(), Arn: e.Principal.GetArn(), CreatedDate: e.Principal.GetCreatedDate(),
			Description: e.Principal.GetDescription(), AccessKeyIds: e.AccessKeyIDs,
			AttachedPolicies: e.Principal.GetAttachedPolicies(), Tags: e.Principal.GetTags(),
		})
	}
	return resp, nil
}

// DeletePrincipal implements the IAM operation. The root principal cannot
// be deleted, by anyone: it is the region's break-glass identity, and a
// region without it could be left with no one able to manage IAM.
func (i *IAM) DeletePrincipal(ctx context.Context, req *cofferv1.DeletePrincipalRequest) (*cofferv1.DeletePrincipalResponse, error) {
	if strings.EqualFold(req.GetName(), RootPrincipal) {
		return nil, apiErr(TypeInvalidParameter, "The root principal cannot be deleted. To take a root access key out of use, delete the key.")
	}
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_DeletePrincipal{DeletePrincipal: &raftv1.DeletePrincipal{Name: req.GetName()}}}); err != nil {
		return nil, err
	}
	return &cofferv1.DeletePrincipalResponse{}, nil
}

// CreateAccessKey implements the IAM operation.
func (i *IAM) CreateAccessKey(ctx context.Context, req *cofferv1.CreateAccessKeyRequest) (*cofferv1.CreateAccessKeyResponse, error) {
	id, secret, err := NewAccessKey()
	if err != nil {
		return nil, err
	}
	k, err := i.sealedKey(req.GetPrincipal(), id, secret)
	if err != nil {
		return nil, err
	}
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_CreateAccessKey{CreateAccessKey: &raftv1.CreateAccessKey{AccessKey: k}}}); err != nil {
		return nil, err
	}
	return &cofferv1.CreateAccessKeyResponse{AccessKeyId: id, SecretAccessKey: secret, Principal: req.GetPrincipal(), CreatedDate: k.GetCreatedDate()}, nil
}

// DeleteAccessKey implements the IAM operation.
func (i *IAM) DeleteAccessKey(ctx context.Context, req *cofferv1.DeleteAccessKeyRequest) (*cofferv1.DeleteAccessKeyResponse, error) {
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_DeleteAccessKey{DeleteAccessKey: &raftv1.DeleteAccessKey{AccessKeyId: req.GetAccessKeyId()}}}); err != nil {
		return nil, err
	}
	return &cofferv1.DeleteAccessKeyResponse{}, nil
}

// sealedKey builds an access key record with its secret sealed under the
// region's default key.
func (i *IAM) sealedKey(principal, id, secret string) (*storagev1.AccessKey, error) {
	kr, err := i.svc.keys()
	if err != nil {
		return nil, err
	}
	sealed, err := kr.Seal(kr.DefaultKeyID(), "iam:"+principal, accessKeyAAD(id), id, storagev1.ValueKind_VALUE_KIND_STRING, []byte(secret))
	if err != nil {
		return nil, err
	}
	return &storagev1.AccessKey{AccessKeyId: id, Principal: principal, SealedSecret: sealed, Status: "Active", CreatedDate: timestamppb.New(i.svc.now())}, nil
}

func accessKeyAAD(id string) string { return "coffer:iam:access-key:" + id }

// NewAccessKey makes an access key id (AKIA + 16 base-32 characters, the
// shape AWS tools expect) and a 40-character secret.
func NewAccessKey() (id, secret string, err error) {
	var b [40]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("access key: %w", err)
	}
	const b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	idb := make([]byte, 16)
	for j := range idb {
		idb[j] = b32[b[j]&31]
	}
	return "AKIA" + string(idb), base64.StdEncoding.EncodeToString(b[10:40]), nil
}

// ErrSaveRootCredentials wraps the failure of BootstrapRoot's save step: the
// root principal was not proposed, because the only copy of its secret
// could not be kept.
var ErrSaveRootCredentials = errors.New("the root credentials could not be saved")

// BootstrapRoot creates the root principal and an access key on a region
// that has no principal yet. With id and secret empty it makes new ones.
// save, when set, is given the key before the principal is proposed and
// must keep it durably (cofferd writes the root-credentials file): if it
// fails, nothing is proposed and the error (ErrSaveRootCredentials) says
// why — a committed root key whose secret was lost would lock everyone out.
// created is false when principals already existed (nothing was changed,
// save not called) or when another node's root principal won the race
// (save was called with a key that is not the region's).
func (i *IAM) BootstrapRoot(ctx context.Context, id, secret string, save func(id, secret string) error) (createdID, createdSecret string, created bool, err error) {
	if entries, err := i.state.Principals(); err != nil {
		return "", "", false, err
	} else if len(entries) > 0 {
		return "", "", false, nil
	}
	if id == "" {
		if id, secret, err = NewAccessKey(); err != nil {
			return "", "", false, err
		}
	}
	k, err := i.sealedKey(RootPrincipal, id, secret)
	if err != nil {
		return "", "", false, err
	}
	if save != nil {
		if err := save(id, secret); err != nil {
			return "", "", false, fmt.Errorf("%w: %w", ErrSaveRootCredentials, err)
		}
	}
	p := &storagev1.Principal{Name: RootPrincipal, Arn: i.principalARN(RootPrincipal), CreatedDate: timestamppb.New(i.svc.now()),
		Description: "created on the region's first start"}
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_CreatePrincipal{CreatePrincipal: &raftv1.CreatePrincipal{
		Principal: p, AccessKey: k, IfNoneExist: true,
	}}}); err != nil {
		return "", "", false, err
	}
	// Another node may have won the race; ours counts only if it is there.
	if got, err := i.state.AccessKey(id); err != nil || got == nil {
		return "", "", false, err
	}
	return id, secret, true, nil
}
