package server

import (
	"fmt"
	"strings"

	"github.com/cofferhq/coffer/server/policy"
)

// This file holds the identity rules the edge applies before any policy is
// consulted, root included: they bound what a stolen credential can turn
// into, so no Allow (and root's full access) can lift them.

// sessionRefused are the actions temporary credentials may not call: every
// change to IAM — principals, access keys, policies, attachments (a
// principal's tags are set only when it is created) — and GetSessionToken
// itself, and pairing a region, which makes another region's CA trusted and
// is root-equivalent. A session is a short-lived credential handed to a job;
// were it able to make a long-term key, or a principal with one, its expiry
// would mean nothing. AWS refuses every IAM call made with GetSessionToken
// credentials that carry no MFA (InvalidClientTokenId, "The security token
// included in the request is invalid."); Coffer has no MFA, lets reads
// through, and answers a change as STS answers GetSessionToken with session
// credentials: AccessDeniedException "Cannot call <Op> with session
// credentials" — the credentials are valid, and the caller should learn why
// it was refused.
var sessionRefused = map[string]bool{
	"coffer:CreatePrincipal":   true,
	"coffer:DeletePrincipal":   true,
	"coffer:CreateAccessKey":   true,
	"coffer:DeleteAccessKey":   true,
	"coffer:PutPolicy":         true,
	"coffer:DeletePolicy":      true,
	"coffer:AttachPolicy":      true,
	"coffer:DetachPolicy":      true,
	"coffer:GetSessionToken":   true,
	"coffer:PairRegion":        true,
	"coffer:SetPairingOptions": true,
	// The seal is root-equivalent too: a rekey or an HSM re-wrap changes
	// who can recover the root key.
	"coffer:Rekey": true,
	// Roles are IAM too: a session must not widen what it, or any role,
	// can assume or do.
	"coffer:CreateRole":             true,
	"coffer:DeleteRole":             true,
	"coffer:UpdateAssumeRolePolicy": true,
	"coffer:AttachRolePolicy":       true,
	"coffer:DetachRolePolicy":       true,
}

// rootKeyActions manage an access key of the principal they name: on root's
// keys only root may call them, since a key of root's is root.
var rootKeyActions = map[string]bool{
	"coffer:CreateAccessKey": true,
	"coffer:DeleteAccessKey": true,
}

// identityRule is the refusal, if any, of a request by the identity rules:
// a session calling a sessionRefused action, or anyone but root managing
// root's access keys (t.Resource is the principal a key action names). The
// verdict is decided by the pseudo statement "identity/<rule>".
func (a *Authorizer) identityRule(c Caller, action string, t Target) (Verdict, bool) {
	v := Verdict{Principal: a.principalARN(c.Principal), Action: action, Resource: t.Resource, Named: t.Named}
	if v.Resource == "" {
		v.Resource = "*"
	}
	op := action[strings.IndexByte(action, ':')+1:]
	switch {
	case c.Session && actionIn(sessionRefused, action):
		v.Reason = fmt.Sprintf("Cannot call %s with session credentials", op)
		v.Result = policy.Result{Decision: policy.ExplicitDeny, Policy: "identity", Statement: "no-session-iam-changes"}
	case actionIn(rootKeyActions, action) && strings.EqualFold(t.Resource, a.principalARN(RootPrincipal)) && c.Principal != RootPrincipal:
		v.Reason = fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s because only the root principal manages its access keys",
			v.Principal, action, t.Resource)
		v.Result = policy.Result{Decision: policy.ExplicitDeny, Policy: "identity", Statement: "root-keys-root-only"}
	default:
		return Verdict{}, false
	}
	return v, true
}
