package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/policy"
)

// Roles: identities with no long-term key. A role has a trust policy
// (who may assume it: principals of the account, or holders of a web
// identity token from a configured issuer) and attached identity policies
// (what its sessions may do). Assuming it (assume.go) mints temporary
// credentials whose principal is the assumed-role ARN,
// arn:<partition>:sts::<account>:assumed-role/<role>/<session>, which the
// Authorizer resolves back to the role's policies.

// Role session bounds, AWS's: a role's maximum session duration is between
// one and twelve hours (one by default); a session lasts at least 15
// minutes, and one hour at most when a session assumes a role (chaining).
const (
	DefaultRoleMaxSession = 3600
	minRoleMaxSession     = 3600
	maxRoleMaxSession     = 43200
	minRoleSession        = 900
	chainedRoleSession    = 3600
)

// RoleState is the read side of roles; storage.Store implements it. It is
// kept apart from IAMState so that states without roles still serve the
// rest of IAM (a role operation on one is an internal error).
type RoleState interface {
	Role(name string) (*storagev1.Role, error)
	Roles() ([]*storagev1.Role, error)
}

func (i *IAM) roles() (RoleState, error) {
	rs, ok := i.state.(RoleState)
	if !ok {
		return nil, fmt.Errorf("iam: the state %T keeps no roles", i.state)
	}
	return rs, nil
}

func roleARN(cfg Config, name string) string {
	return fmt.Sprintf("arn:%s:iam::%s:role/%s", cfg.Partition, cfg.AccountID, name)
}

// assumedRoleARN is the ARN — and the principal name — of a role session.
func assumedRoleARN(cfg Config, role, session string) string {
	return fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", cfg.Partition, cfg.AccountID, role, session)
}

// assumedRole splits an assumed-role ARN into its role and session names;
// ok is false for any other principal name (user names cannot hold ':').
func assumedRole(principal string) (role, session string, ok bool) {
	parts := strings.SplitN(principal, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "sts" {
		return "", "", false
	}
	rest, found := strings.CutPrefix(parts[5], "assumed-role/")
	if !found {
		return "", "", false
	}
	role, session, found = strings.Cut(rest, "/")
	return role, session, found && role != "" && session != ""
}

// ParseTrustPolicy parses a role's trust policy: a resource policy (every
// statement names a Principal or NotPrincipal) with no Resource, as IAM
// requires of assume-role policies. Failures are
// MalformedPolicyDocumentException.
func ParseTrustPolicy(doc string) (*policy.Document, error) {
	if doc == "" {
		return nil, apiErr(TypeMalformedPolicy, "The trust policy document is empty.")
	}
	d, err := policy.ParseResource(doc)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), policy.ErrMalformed.Error()+": ")
		return nil, apiErr(TypeMalformedPolicy, "This policy contains an unsupported or malformed document: %s", msg)
	}
	for n, s := range d.Statements {
		if s.Resource != nil || s.NotResource != nil {
			return nil, apiErr(TypeMalformedPolicy, "Has prohibited field Resource: Statement[%d] of a trust policy applies to the role itself.", n)
		}
	}
	return d, nil
}

func roleInfo(r *storagev1.Role) *cofferv1.RoleInfo {
	return &cofferv1.RoleInfo{Name: r.GetName(), Arn: r.GetArn(), RoleId: r.GetRoleId(), CreatedDate: r.GetCreatedDate(),
		Description: r.GetDescription(), AssumeRolePolicyDocument: r.GetTrustPolicy(),
		MaxSessionDurationSeconds: r.GetMaxSessionDurationSeconds(), AttachedPolicies: r.GetAttachedPolicies()}
}

// newRoleID makes a role's unique id: AROA and 17 base-32 characters, the
// shape of AWS's role ids.
func newRoleID() (string, error) {
	var b [17]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("role id: %w", err)
	}
	const b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	for j := range b {
		b[j] = b32[b[j]&31]
	}
	return "AROA" + string(b[:]), nil
}

// CreateRole implements the IAM operation.
func (i *IAM) CreateRole(ctx context.Context, req *cofferv1.CreateRoleRequest) (*cofferv1.CreateRoleResponse, error) {
	if !principalPattern.MatchString(req.GetName()) {
		return nil, apiErr(TypeValidation, "Invalid role name. Use 1–64 characters of A-Za-z0-9+=,.@_-.")
	}
	if e := checkLength("description", req.GetDescription(), 0, 1000); e != nil {
		return nil, e
	}
	maxSession := req.GetMaxSessionDurationSeconds()
	if maxSession == 0 {
		maxSession = DefaultRoleMaxSession
	}
	if maxSession < minRoleMaxSession || maxSession > maxRoleMaxSession {
		return nil, validationErr("maxSessionDuration", fmt.Sprintf("Member must have value between %d and %d", minRoleMaxSession, maxRoleMaxSession))
	}
	if _, err := ParseTrustPolicy(req.GetAssumeRolePolicyDocument()); err != nil {
		return nil, err
	}
	id, err := newRoleID()
	if err != nil {
		return nil, err
	}
	r := &storagev1.Role{Name: req.GetName(), Arn: roleARN(i.svc.cfg, req.GetName()), RoleId: id, CreatedDate: timestamppb.New(i.svc.now()),
		Description: req.GetDescription(), TrustPolicy: req.GetAssumeRolePolicyDocument(), MaxSessionDurationSeconds: maxSession}
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_CreateRole{CreateRole: &raftv1.CreateRole{Role: r}}}); err != nil {
		return nil, err
	}
	return &cofferv1.CreateRoleResponse{Role: roleInfo(r)}, nil
}

// GetRole implements the IAM operation.
func (i *IAM) GetRole(ctx context.Context, req *cofferv1.GetRoleRequest) (*cofferv1.GetRoleResponse, error) {
	if err := i.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	rs, err := i.roles()
	if err != nil {
		return nil, err
	}
	r, err := rs.Role(req.GetName())
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, apiErr(TypeResourceNotFound, "The role with name %s cannot be found.", req.GetName())
	}
	return &cofferv1.GetRoleResponse{Role: roleInfo(r)}, nil
}

// ListRoles implements the IAM operation.
func (i *IAM) ListRoles(ctx context.Context, _ *cofferv1.ListRolesRequest) (*cofferv1.ListRolesResponse, error) {
	if err := i.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	rs, err := i.roles()
	if err != nil {
		return nil, err
	}
	roles, err := rs.Roles()
	if err != nil {
		return nil, err
	}
	out := &cofferv1.ListRolesResponse{}
	for _, r := range roles {
		out.Roles = append(out.Roles, roleInfo(r))
	}
	return out, nil
}

// DeleteRole implements the IAM operation: a role with policies attached
// is refused (detach them first, as IAM's DeleteConflict says), and the
// role's live sessions are revoked with it.
func (i *IAM) DeleteRole(ctx context.Context, req *cofferv1.DeleteRoleRequest) (*cofferv1.DeleteRoleResponse, error) {
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_DeleteRole{DeleteRole: &raftv1.DeleteRole{Name: req.GetName()}}}); err != nil {
		return nil, err
	}
	return &cofferv1.DeleteRoleResponse{}, nil
}

// UpdateAssumeRolePolicy implements the IAM operation. Live sessions keep
// their credentials until they expire, as in AWS: the trust policy decides
// who may assume the role, not what a session already assumed may do.
func (i *IAM) UpdateAssumeRolePolicy(ctx context.Context, req *cofferv1.UpdateAssumeRolePolicyRequest) (*cofferv1.UpdateAssumeRolePolicyResponse, error) {
	if _, err := ParseTrustPolicy(req.GetPolicyDocument()); err != nil {
		return nil, err
	}
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_UpdateRoleTrustPolicy{UpdateRoleTrustPolicy: &raftv1.UpdateRoleTrustPolicy{
		Name: req.GetRoleName(), TrustPolicy: req.GetPolicyDocument(),
	}}}); err != nil {
		return nil, err
	}
	return &cofferv1.UpdateAssumeRolePolicyResponse{}, nil
}

// AttachRolePolicy implements the IAM operation.
func (i *IAM) AttachRolePolicy(ctx context.Context, req *cofferv1.AttachRolePolicyRequest) (*cofferv1.AttachRolePolicyResponse, error) {
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_AttachRolePolicy{AttachRolePolicy: &raftv1.AttachRolePolicy{
		Role: req.GetRoleName(), Policy: req.GetPolicy(),
	}}}); err != nil {
		return nil, err
	}
	return &cofferv1.AttachRolePolicyResponse{}, nil
}

// DetachRolePolicy implements the IAM operation.
func (i *IAM) DetachRolePolicy(ctx context.Context, req *cofferv1.DetachRolePolicyRequest) (*cofferv1.DetachRolePolicyResponse, error) {
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_DetachRolePolicy{DetachRolePolicy: &raftv1.DetachRolePolicy{
		Role: req.GetRoleName(), Policy: req.GetPolicy(),
	}}}); err != nil {
		return nil, err
	}
	return &cofferv1.DetachRolePolicyResponse{}, nil
}

// The STS actions of roles, as identity policies name them.
const (
	ActionAssumeRole                = "sts:AssumeRole"
	ActionAssumeRoleWithWebIdentity = "sts:AssumeRoleWithWebIdentity"
)

// attachedPolicies returns a caller's principal record (nil for a role
// session) and the names of the identity policies that apply to it: a
// principal's own, or, for a role session, its role's. A session of a
// deleted role has none (and its credentials were revoked with the role).
func (a *Authorizer) attachedPolicies(name string) (*storagev1.Principal, []string, error) {
	if role, _, ok := assumedRole(name); ok {
		rs, ok := a.state.(RoleState)
		if !ok {
			return nil, nil, nil
		}
		r, err := rs.Role(role)
		if err != nil {
			return nil, nil, err
		}
		return nil, r.GetAttachedPolicies(), nil
	}
	p, err := a.state.Principal(name)
	if err != nil {
		return nil, nil, err
	}
	return p, p.GetAttachedPolicies(), nil
}
