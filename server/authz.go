package server

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/policy"
)

// AnonymousPrincipal is who an unauthenticated gRPC call is, where cofferd
// dev lets such calls through. Like RootPrincipal it has full access, but
// only on an Authorizer told to (AllowAnonymous); elsewhere the name grants
// nothing. Both names are reserved: no principal can be created with them
// and no client certificate can be mapped to them.
const AnonymousPrincipal = "anonymous"

// ReservedPrincipal reports whether name is one of the principal names
// with built-in meaning (root, anonymous), compared as IAM compares user
// names, without regard to case.
func ReservedPrincipal(name string) bool {
	return strings.EqualFold(name, RootPrincipal) || strings.EqualFold(name, AnonymousPrincipal)
}

// ResourcePolicyName is how a secret's resource policy is named as the
// deciding policy.
const ResourcePolicyName = "resource-policy"

// AuthzState is what authorization reads from the state machine.
type AuthzState interface {
	Principal(name string) (*storagev1.Principal, error)
	Policy(name string) (*storagev1.Policy, error)
	Secret(ref string) (*storagev1.Secret, error)
	AccessKey(id string) (*storagev1.AccessKey, error)
}

// Authorizer decides requests with the region's identity policies and
// secrets' resource policies. It reads the node's local state: a policy
// change takes effect on a node once it has applied it (like IAM, policy
// changes are eventually consistent, here within replication lag).
type Authorizer struct {
	cfg   Config
	state AuthzState
	now   func() time.Time
	// anonymous gives AnonymousPrincipal full access (cofferd dev).
	anonymous atomic.Bool

	mu         sync.Mutex
	docs       map[string]*policy.Document // document text → parsed
	identities map[string]identityEntry    // principal → its policies at an index
}

// identityEntry is a principal's record and parsed identity policies as of
// a state index; it is reused while the state has not moved on.
type identityEntry struct {
	index     uint64
	principal *storagev1.Principal
	policies  []policy.Named
}

// indexedState is implemented by a state that knows the last index it
// applied; with it, a principal's policies are read once per change
// rather than once per request.
type indexedState interface {
	AppliedIndex() uint64
}

// maxCachedDocs bounds the parsed-document cache; it is emptied when full.
const maxCachedDocs = 4096

// NewAuthorizer builds an Authorizer for the region cfg describes.
func NewAuthorizer(cfg Config, state AuthzState) *Authorizer {
	now := time.Now // aws:CurrentTime on the service's clock (Config.Clock in tests)
	if cfg.Clock != nil {
		now = cfg.Clock
	}
	return &Authorizer{cfg: cfg, state: state, now: now, docs: map[string]*policy.Document{}, identities: map[string]identityEntry{}}
}

// AllowAnonymous gives AnonymousPrincipal — the caller BearerAuth lets in
// without credentials when anonymous access is on — full access. Only a
// node that lets such calls in (cofferd dev) calls it.
func (a *Authorizer) AllowAnonymous() { a.anonymous.Store(true) }

// fullAccess reports whether principal is allowed everything: root always,
// the anonymous caller only where anonymous access is on.
func (a *Authorizer) fullAccess(principal string) bool {
	return principal == RootPrincipal || principal == AnonymousPrincipal && a.anonymous.Load()
}

// Caller is who makes a request and from where.
type Caller struct {
	// Principal is the authenticated principal's name.
	Principal string
	// AccessKeyID is the key the request was signed with ("" for mTLS).
	AccessKeyID string
	// SourceIP is the peer's address without port (aws:SourceIp).
	SourceIP string
	// SecureTransport is whether the request came over TLS.
	SecureTransport bool
	// Session is whether the key is temporary credentials.
	Session bool
}

// Verdict is a decision and what it was about.
type Verdict struct {
	Allowed   bool
	Principal string // the caller's ARN
	Action    string
	Resource  string
	// Named is what a denial names as the resource when it is not
	// Resource (Target.Named).
	Named  string
	Result policy.Result
	// Reason, when set, is the whole message of a denial by one of the
	// edge's identity rules (identityRule), which no policy can override.
	Reason string
}

// Statement names the deciding statement ("policy/Sid"), or "".
func (v Verdict) Statement() string { return v.Result.Decided() }

// Err is the AccessDeniedException for a denied verdict, in AWS's words:
// principal, action and resource, and why — never a value.
func (v Verdict) Err() *APIError {
	if v.Allowed {
		return nil
	}
	if v.Reason != "" {
		return apiErr(TypeAccessDeniedException, "%s", v.Reason)
	}
	on, shown := "", v.Resource
	if v.Named != "" {
		shown = v.Named
	}
	if shown != "" && shown != "*" {
		on = " on resource: " + shown
	}
	why := fmt.Sprintf("because no identity-based policy allows the %s action", v.Action)
	if v.Result.Decision == policy.ExplicitDeny {
		kind := "an identity-based policy"
		if v.Result.ResourcePolicy {
			kind = "a resource-based policy"
		}
		why = "with an explicit deny in " + kind
	}
	return apiErr(TypeAccessDeniedException, "User: %s is not authorized to perform: %s%s %s", v.Principal, v.Action, on, why)
}

// Decide evaluates one request. The root principal (and, on an Authorizer
// that AllowAnonymous, the anonymous caller) has full access, decided by
// the pseudo statement "root/full-access" ("anonymous/full-access").
func (a *Authorizer) Decide(c Caller, action string, t Target) (Verdict, error) {
	if t.Resource == "" {
		t.Resource = "*"
	}
	v := Verdict{Principal: a.principalARN(c.Principal), Action: action, Resource: t.Resource, Named: t.Named}
	if a.fullAccess(c.Principal) {
		v.Allowed = true
		v.Result = policy.Result{Decision: policy.Allowed, Policy: c.Principal, Statement: "full-access"}
		return v, nil
	}
	p, identity, err := a.identity(c.Principal)
	if err != nil {
		return v, err
	}
	var resource *policy.Named
	if doc := t.Secret.GetResourcePolicy(); doc != "" {
		d, err := a.parsed(doc)
		if err != nil {
			return v, err
		}
		resource = &policy.Named{Name: ResourcePolicyName, Doc: d}
	}
	req := policy.Request{Principal: v.Principal, Account: a.cfg.AccountID, Action: action, Resource: t.Resource,
		Keys: a.keys(c, p, t)}
	if t.Key.GetCustomer() {
		// A customer key's policy is its resource policy, and decides
		// alone unless it hands the decision to the account (an Allow
		// for the account's root), as KMS evaluates key policies.
		d, err := a.parsed(t.Key.GetPolicy())
		if err != nil {
			return v, err
		}
		resource = &policy.Named{Name: KeyPolicyName, Doc: d}
		if !keyPolicyDelegates(d, req, a.cfg) {
			identity = nil
		}
	}
	v.Result = policy.Evaluate(req, identity, resource)
	v.Allowed = v.Result.Decision == policy.Allowed
	return v, nil
}

// identity returns a principal's record and its identity policies, from
// the cache while the state's applied index has not changed.
func (a *Authorizer) identity(name string) (*storagev1.Principal, []policy.Named, error) {
	var index uint64
	is, indexed := a.state.(indexedState)
	if indexed {
		index = is.AppliedIndex()
		a.mu.Lock()
		e, ok := a.identities[name]
		a.mu.Unlock()
		if ok && e.index == index {
			return e.principal, e.policies, nil
		}
	}
	p, attached, err := a.attachedPolicies(name)
	if err != nil {
		return nil, nil, err
	}
	var identity []policy.Named
	for _, pn := range attached {
		rec, err := a.state.Policy(pn)
		if err != nil {
			return nil, nil, err
		}
		if rec == nil {
			continue // detached concurrently; it grants nothing
		}
		d, err := a.parsed(rec.GetDocument())
		if err != nil {
			return nil, nil, err
		}
		identity = append(identity, policy.Named{Name: pn, Doc: d})
	}
	if indexed {
		a.mu.Lock()
		if len(a.identities) >= maxCachedDocs {
			clear(a.identities)
		}
		// The index was read before the state, so a change applied
		// meanwhile only makes the entry stale sooner, never wrong.
		a.identities[name] = identityEntry{index: index, principal: p, policies: identity}
		a.mu.Unlock()
	}
	return p, identity, nil
}

// keys builds the request context: global keys, the principal's tags, the
// secret's keys (secretKeys), then what the request itself sets. Every key
// set here is in conditionKeys (authz_keys.go).
func (a *Authorizer) keys(c Caller, p *storagev1.Principal, t Target) policy.Keys {
	now := a.now().UTC()
	k := policy.Keys{}
	k.Set("aws:CurrentTime", now.Format(time.RFC3339))
	k.Set("aws:EpochTime", strconv.FormatInt(now.Unix(), 10))
	k.Set("aws:SecureTransport", strconv.FormatBool(c.SecureTransport))
	if role, _, ok := assumedRole(c.Principal); ok {
		// As AWS sets them for a role session: the role's ARN, no user name.
		k.Set("aws:PrincipalArn", roleARN(a.cfg, role))
		k.Set("aws:PrincipalType", "AssumedRole")
	} else {
		k.Set("aws:username", c.Principal)
		k.Set("aws:PrincipalArn", a.principalARN(c.Principal))
		k.Set("aws:PrincipalType", "User")
	}
	k.Set("aws:PrincipalAccount", a.cfg.AccountID)
	k.Set("aws:RequestedRegion", a.cfg.Region)
	if c.SourceIP != "" {
		k.Set("aws:SourceIp", c.SourceIP)
	}
	for key, value := range p.GetTags() {
		k.Set("aws:PrincipalTag/"+key, value)
	}
	if s := t.Secret; s != nil {
		secretKeys(k, s, a.cfg.Region)
	}
	for key, values := range t.Keys {
		k[key] = values
	}
	return k
}

// parsed parses a stored document once. Stored documents were parsed when
// they were put, so an error here means the state is damaged.
func (a *Authorizer) parsed(doc string) (*policy.Document, error) {
	a.mu.Lock()
	d, ok := a.docs[doc]
	a.mu.Unlock()
	if ok {
		return d, nil
	}
	d, err := policy.Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("stored policy no longer parses: %w", err)
	}
	a.mu.Lock()
	if len(a.docs) >= maxCachedDocs {
		clear(a.docs)
	}
	a.docs[doc] = d
	a.mu.Unlock()
	return d, nil
}

// actionFor is the IAM action of an RPC: secretsmanager:<Op> for the
// Secrets Manager API, coffer:<Op> for the admin and IAM APIs.
func actionFor(fullMethod string) (action, operation string) {
	svc, op, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	switch svc {
	case cofferv1.SecretsManagerService_ServiceDesc.ServiceName:
		return "secretsmanager:" + op, op
	case cofferv1.KeyService_ServiceDesc.ServiceName:
		return KeyAction(op), op
	}
	if svc == cofferv1.IAMService_ServiceDesc.ServiceName && op == "AssumeRole" {
		return ActionAssumeRole, op // the action identity policies name, as in AWS
	}
	return "coffer:" + op, op
}

// KeyAction is the action of a KMS operation.
func KeyAction(op string) string { return "kms:" + op }

// SecretAction is the action of a Secrets Manager operation.
func SecretAction(op string) string { return "secretsmanager:" + op }

// Actions whose answer is filtered secret by secret rather than refused as
// a whole: ListSecrets shows the secrets the caller may list
// (secretsmanager:ListSecrets on each secret's ARN), BatchGetSecretValue
// returns the ones it may read (secretsmanager:GetSecretValue on each).
// Only an explicit Deny on "*" refuses them outright.
var filteredActions = map[string]bool{
	"secretsmanager:ListSecrets":         true,
	"secretsmanager:BatchGetSecretValue": true,
	// WatchSecrets shows changes to the secrets the caller may list.
	"coffer:WatchSecrets": true,
}

// selfActions need no Allow: any authenticated caller may ask who it is or
// exchange its key for temporary credentials, as with STS. An explicit
// Deny still refuses them.
var selfActions = map[string]bool{
	"coffer:GetCallerIdentity": true,
	"coffer:GetSessionToken":   true,
}

// Authorize decides a request as the transport edge does: first the
// identity rules no policy overrides (identityRule: what session
// credentials may not do, who manages root's keys), then Decide, then the
// edge's own rules — a filtered action on "*" (the call as a whole; each
// secret is then decided by the SecretFilter) and a self action need no
// Allow, so only an explicit Deny refuses them. The Gate and SimulatePolicy
// both decide with it, so that simulate answers what a real call gets.
func (a *Authorizer) Authorize(c Caller, action string, t Target) (Verdict, error) {
	if c.Principal == "" && strings.EqualFold(action, ActionAssumeRoleWithWebIdentity) {
		// Unsigned, as in AWS: the token is the credential, verified (and
		// the role's trust policy consulted) by the operation itself.
		return Verdict{Allowed: true, Action: action, Resource: t.Resource,
			Result: policy.Result{Decision: policy.Allowed, Policy: "web-identity", Statement: "token"}}, nil
	}
	if v, refused := a.identityRule(c, action, t); refused {
		return v, nil
	}
	v, err := a.Decide(c, action, t)
	if err != nil || v.Allowed || v.Result.Decision == policy.ExplicitDeny {
		return v, err
	}
	filtered := actionIn(filteredActions, action) && v.Resource == "*"
	if filtered || actionIn(selfActions, action) {
		v.Allowed = true
		v.Result.Policy, v.Result.Statement = "", ""
		if filtered {
			v.Result.Policy, v.Result.Statement = "per-secret", "filter"
		}
	}
	return v, nil
}

// actionIn reports whether action is in set; actions compare without
// regard to case, as IAM compares them.
func actionIn(set map[string]bool, action string) bool {
	if set[action] {
		return true
	}
	for k := range set {
		if strings.EqualFold(k, action) {
			return true
		}
	}
	return false
}
