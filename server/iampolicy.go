package server

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/policy"
)

var policyNamePattern = regexp.MustCompile(`^[A-Za-z0-9+=,.@_-]{1,128}$`)

func (i *IAM) policyARN(name string) string {
	return fmt.Sprintf("arn:%s:iam::%s:policy/%s", i.svc.cfg.Partition, i.svc.cfg.AccountID, name)
}

// ParseIdentityPolicy parses an identity policy: the IAM grammar, plus what
// IAM requires of identity policies — no Principal (the principals it is
// attached to are implied) and a Resource or NotResource in every
// statement. Failures are MalformedPolicyDocumentException.
func ParseIdentityPolicy(doc string) (*policy.Document, error) {
	if doc == "" {
		return nil, apiErr(TypeMalformedPolicy, "The policy document is empty.")
	}
	d, err := policy.Parse(doc)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), policy.ErrMalformed.Error()+": ")
		return nil, apiErr(TypeMalformedPolicy, "This policy contains an unsupported or malformed document: %s", msg)
	}
	for n, s := range d.Statements {
		loc := fmt.Sprintf("Statement[%d]", n)
		if s.Sid != "" {
			loc += fmt.Sprintf(" (Sid %q)", s.Sid)
		}
		if s.Principal != nil || s.NotPrincipal != nil {
			return nil, apiErr(TypeMalformedPolicy, "This policy contains an unsupported or malformed document: %s: an identity policy must not name a Principal; it applies to the principals it is attached to.", loc)
		}
		if s.Resource == nil && s.NotResource == nil {
			return nil, apiErr(TypeMalformedPolicy, "This policy contains an unsupported or malformed document: %s: an identity policy statement must contain Resource or NotResource.", loc)
		}
	}
	return d, nil
}

func policyInfo(p *storagev1.Policy, withDocument bool) *cofferv1.PolicyInfo {
	out := &cofferv1.PolicyInfo{Name: p.GetName(), Arn: p.GetArn(), Description: p.GetDescription(),
		CreatedDate: p.GetCreatedDate(), UpdatedDate: p.GetUpdatedDate()}
	if withDocument {
		out.Document = p.GetDocument()
	}
	return out
}

// PutPolicy implements the IAM operation. The document is parsed here; only
// a well-formed one reaches the log. A condition on a key Coffer never sets
// is stored but warned about (conditionKeyWarnings).
func (i *IAM) PutPolicy(ctx context.Context, req *cofferv1.PutPolicyRequest) (*cofferv1.PutPolicyResponse, error) {
	if !policyNamePattern.MatchString(req.GetName()) {
		return nil, apiErr(TypeValidation, "Invalid policy name. Use 1–128 characters of A-Za-z0-9+=,.@_-.")
	}
	if e := checkLength("description", req.GetDescription(), 0, 1000); e != nil {
		return nil, e
	}
	doc, err := ParseIdentityPolicy(req.GetDocument())
	if err != nil {
		return nil, err
	}
	warnings := conditionKeyWarnings(doc)
	now := timestamppb.New(i.svc.now())
	p := &storagev1.Policy{Name: req.GetName(), Arn: i.policyARN(req.GetName()), Document: req.GetDocument(),
		Description: req.GetDescription(), CreatedDate: now, UpdatedDate: now}
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_PutPolicy{PutPolicy: &raftv1.PutPolicy{Policy: p}}}); err != nil {
		return nil, err
	}
	if stored, err := i.state.Policy(p.GetName()); err == nil && stored != nil {
		p = stored // the first creation date survives a replacement
	}
	if len(warnings) > 0 {
		i.svc.log.Warn("policy names condition keys Coffer never sets", "policy", p.GetArn(), "warnings", warnings)
	}
	return &cofferv1.PutPolicyResponse{Policy: policyInfo(p, true), Warnings: warnings}, nil
}

// GetPolicy implements the IAM operation.
func (i *IAM) GetPolicy(ctx context.Context, req *cofferv1.GetPolicyRequest) (*cofferv1.GetPolicyResponse, error) {
	if err := i.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	p, err := i.state.Policy(req.GetName())
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, apiErr(TypeResourceNotFound, "No policy named %s.", req.GetName())
	}
	info := policyInfo(p, true)
	info.AttachedTo, err = i.attachedTo(p.GetName())
	if err != nil {
		return nil, err
	}
	return &cofferv1.GetPolicyResponse{Policy: info}, nil
}

func (i *IAM) attachedTo(name string) ([]string, error) {
	entries, err := i.state.Principals()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if slices.Contains(e.Principal.GetAttachedPolicies(), name) {
			out = append(out, e.Principal.GetName())
		}
	}
	return out, nil
}

// ListPolicies implements the IAM operation.
func (i *IAM) ListPolicies(ctx context.Context, _ *cofferv1.ListPoliciesRequest) (*cofferv1.ListPoliciesResponse, error) {
	if err := i.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	policies, err := i.state.Policies()
	if err != nil {
		return nil, err
	}
	entries, err := i.state.Principals()
	if err != nil {
		return nil, err
	}
	resp := &cofferv1.ListPoliciesResponse{}
	for _, p := range policies {
		info := policyInfo(p, false)
		for _, e := range entries {
			if slices.Contains(e.Principal.GetAttachedPolicies(), p.GetName()) {
				info.AttachedTo = append(info.AttachedTo, e.Principal.GetName())
			}
		}
		resp.Policies = append(resp.Policies, info)
	}
	return resp, nil
}

// DeletePolicy implements the IAM operation.
func (i *IAM) DeletePolicy(ctx context.Context, req *cofferv1.DeletePolicyRequest) (*cofferv1.DeletePolicyResponse, error) {
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_DeletePolicy{DeletePolicy: &raftv1.DeletePolicy{Name: req.GetName()}}}); err != nil {
		return nil, err
	}
	return &cofferv1.DeletePolicyResponse{}, nil
}

// AttachPolicy implements the IAM operation. Nothing attaches to root: like
// an AWS account's root user it is not subject to identity policies, so a
// Deny attached to it would only look like a restriction.
func (i *IAM) AttachPolicy(ctx context.Context, req *cofferv1.AttachPolicyRequest) (*cofferv1.AttachPolicyResponse, error) {
	if strings.EqualFold(req.GetPrincipal(), RootPrincipal) {
		return nil, apiErr(TypeInvalidParameter, "Policies cannot be attached to the root principal: it has full access and is not subject to identity policies.")
	}
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_AttachPolicy{AttachPolicy: &raftv1.AttachPolicy{
		Principal: req.GetPrincipal(), Policy: req.GetPolicy(),
	}}}); err != nil {
		return nil, err
	}
	return &cofferv1.AttachPolicyResponse{}, nil
}

// DetachPolicy implements the IAM operation.
func (i *IAM) DetachPolicy(ctx context.Context, req *cofferv1.DetachPolicyRequest) (*cofferv1.DetachPolicyResponse, error) {
	if _, err := i.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_DetachPolicy{DetachPolicy: &raftv1.DetachPolicy{
		Principal: req.GetPrincipal(), Policy: req.GetPolicy(),
	}}}); err != nil {
		return nil, err
	}
	return &cofferv1.DetachPolicyResponse{}, nil
}

// SimulatePolicy implements the IAM operation: the decision the edge would
// make for the principal, with the deciding statement. It decides as the
// Gate does (Authorizer.Authorize): a Secrets Manager action on a secret is
// the request that action makes naming it — so a GetSecretValue reads
// AWSCURRENT unless the context says otherwise — and ListSecrets and
// BatchGetSecretValue on "*" and the self actions need no Allow.
func (i *IAM) SimulatePolicy(ctx context.Context, req *cofferv1.SimulatePolicyRequest) (*cofferv1.SimulatePolicyResponse, error) {
	if req.GetAction() == "" || !strings.Contains(req.GetAction(), ":") {
		return nil, apiErr(TypeInvalidParameter, "Action must be service:Operation, such as secretsmanager:GetSecretValue.")
	}
	if err := i.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	p, err := i.state.Principal(req.GetPrincipal())
	if err != nil {
		return nil, err
	}
	if p == nil && !i.authz.fullAccess(req.GetPrincipal()) {
		return nil, apiErr(TypeResourceNotFound, "No principal named %s.", req.GetPrincipal())
	}
	resource := req.GetResource()
	if resource == "" {
		resource = "*"
	}
	action := req.GetAction()
	t := Target{Resource: resource, Keys: policy.Keys{}}
	if resource != "*" {
		canonical, r, ok := secretRequest(action, resource)
		if !ok && strings.HasPrefix(strings.ToLower(canonical), "secretsmanager:") {
			// An action naming no secret (ListSecrets) asked about one:
			// the per-secret decision, on the secret's ARN, tags and
			// resource policy.
			r, ok = &cofferv1.DescribeSecretRequest{SecretId: resource}, true
		}
		if ok {
			action = canonical
			if t, err = i.authz.TargetOf(action, r); err != nil {
				return nil, err
			}
		}
	}
	for k, v := range req.GetContext() {
		t.Keys.Set(k, v)
	}
	caller := Caller{Principal: req.GetPrincipal()}
	if v, ok := req.GetContext()["aws:SourceIp"]; ok {
		caller.SourceIP = v
	}
	v, err := i.authz.Authorize(caller, action, t)
	if err != nil {
		return nil, err
	}
	decision := "implicitDeny"
	switch {
	case v.Allowed:
		decision = "allowed"
	case v.Result.Decision == policy.ExplicitDeny:
		decision = "explicitDeny"
	}
	return &cofferv1.SimulatePolicyResponse{Decision: decision, MatchedPolicy: v.Result.Policy,
		MatchedStatement: v.Result.Statement, Resource: v.Resource}, nil
}

// validatePrincipalTags applies IAM's tag limits.
func validatePrincipalTags(tags map[string]string) *APIError {
	if len(tags) > 50 {
		return apiErr(TypeValidation, "A principal can have at most 50 tags.")
	}
	for k, v := range tags {
		if k == "" || len(k) > 128 || len(v) > 256 || strings.HasPrefix(strings.ToLower(k), "aws:") {
			return apiErr(TypeValidation, "Invalid tag %q: keys are 1–128 characters and must not start with aws:, values at most 256.", truncateTag(k))
		}
	}
	return nil
}

func truncateTag(k string) string {
	if len(k) > 32 {
		return k[:32] + "…"
	}
	return k
}
