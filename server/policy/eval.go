package policy

import (
	"fmt"
	"strings"
)

// Request is one authorization question: may Principal perform Action on
// Resource, given the request context Keys.
type Request struct {
	// Principal is the caller's ARN, as resource policies name it
	// (arn:aws:iam::123456789012:user/alice).
	Principal string
	// Account is the caller's account id; a resource policy naming the
	// account (123456789012 or arn:aws:iam::123456789012:root) names every
	// principal in it, as AWS reads it: it defers to identity policies and
	// grants nothing by itself.
	Account string
	// Action is service:Operation, such as secretsmanager:GetSecretValue.
	Action string
	// Resource is the ARN acted on, or "*" for operations on no resource.
	Resource string
	// Federated is the identity provider a web identity caller comes from
	// (arn:aws:iam::123456789012:oidc-provider/issuer.example.com), matched
	// by a trust policy's Principal {"Federated": …}; "" for other callers.
	Federated string
	// Keys holds the request context: condition key → values. Keys are
	// matched case-insensitively, as IAM does; use NewKeys or Keys.Set to
	// fill it.
	Keys Keys
}

// Keys is a request context: lower-cased condition key → values.
type Keys map[string][]string

// Set records a condition key's values (replacing earlier ones).
func (k Keys) Set(key string, values ...string) { k[strings.ToLower(key)] = values }

func (k Keys) get(key string) ([]string, bool) {
	v, ok := k[strings.ToLower(key)]
	return v, ok
}

// Decision is the outcome of evaluating a request.
type Decision int

// The three outcomes of IAM evaluation.
const (
	// ImplicitDeny: no statement allowed the request (nor denied it).
	ImplicitDeny Decision = iota
	// Allow: some statement allowed it and none denied it.
	Allowed
	// ExplicitDeny: a Deny statement matched; nothing can override it.
	ExplicitDeny
)

func (d Decision) String() string {
	switch d {
	case Allowed:
		return "allow"
	case ExplicitDeny:
		return "explicit deny"
	default:
		return "implicit deny"
	}
}

// Named is a policy document with the name Coffer knows it by: an identity
// policy's name, or "resource-policy" for a secret's resource policy.
type Named struct {
	Name string
	Doc  *Document
}

// Result is a Decision and the statement that decided it.
type Result struct {
	Decision Decision
	// Policy and Statement name the deciding statement: the policy's name
	// and the statement's Sid, or its index as "Statement[i]" when it has
	// none. Both are empty for an implicit deny.
	Policy    string
	Statement string
	// ResourcePolicy is true when the deciding statement came from the
	// resource policy.
	ResourcePolicy bool
}

// Decided names the deciding statement as "policy/statement", or "".
func (r Result) Decided() string {
	if r.Policy == "" {
		return ""
	}
	return r.Policy + "/" + r.Statement
}

// Evaluate decides req the way IAM does within one account: an explicit
// Deny in any policy wins; otherwise an Allow in an identity policy or in the
// resource policy allows; otherwise the request is implicitly denied.
// resource may be nil. Identity policies' statements must not carry a
// Principal (the caller is implied); resource policy statements apply only
// when their Principal names the caller (or its account), or their
// NotPrincipal does not list the caller itself.
func Evaluate(req Request, identity []Named, resource *Named) Result {
	var allow *Result
	consider := func(n Named, fromResource bool) *Result {
		if n.Doc == nil {
			return nil
		}
		for i, s := range n.Doc.Statements {
			grants := true
			if fromResource {
				var ok bool
				ok, grants = s.principalMatches(req)
				if !ok {
					continue
				}
			}
			if !s.matches(req) {
				continue
			}
			r := &Result{Policy: n.Name, Statement: statementName(i, s.Sid), ResourcePolicy: fromResource}
			if s.Effect == Deny {
				r.Decision = ExplicitDeny
				return r
			}
			if allow == nil && grants {
				r.Decision = Allowed
				allow = r
			}
		}
		return nil
	}
	for _, n := range identity {
		if r := consider(n, false); r != nil {
			return *r
		}
	}
	if resource != nil {
		if r := consider(*resource, true); r != nil {
			return *r
		}
	}
	if allow != nil {
		return *allow
	}
	return Result{Decision: ImplicitDeny}
}

func statementName(i int, sid string) string {
	if sid != "" {
		return sid
	}
	return fmt.Sprintf("Statement[%d]", i)
}

// principalMatches reports whether a resource-policy statement applies to
// the caller, and whether an Allow in it grants by itself. A statement that
// names only the caller's account applies (so its Deny counts) but grants
// nothing alone: within one account AWS leaves that to identity policies.
func (s Statement) principalMatches(req Request) (applies, grants bool) {
	switch {
	case s.Principal != nil:
		return s.Principal.names(req)
	case s.NotPrincipal != nil:
		// Everyone but the principals listed — exactly as listed, as IAM
		// reads NotPrincipal: an account there excludes the account's
		// root user, not the users in it, so a Deny with NotPrincipal
		// {"AWS": "arn:aws:iam::<account>:root"} still denies them.
		return !s.NotPrincipal.namesExactly(req), true
	default:
		// ParseResource refuses a statement without Principal or
		// NotPrincipal, as AWS does; a document stored before it did is
		// read on the safe side: its Deny applies to everyone and its
		// Allow grants no one.
		return s.Effect == Deny, false
	}
}

// namesExactly reports whether p lists the caller itself (or everyone).
func (p *Principal) namesExactly(req Request) bool {
	if p.Wildcard {
		return true
	}
	for _, a := range p.AWS {
		if a == "*" || a == req.Principal {
			return true
		}
	}
	return false
}

func (p *Principal) names(req Request) (applies, grants bool) {
	if p.Wildcard {
		return true, true
	}
	account := false
	for _, a := range p.AWS {
		switch {
		case a == "*" || a == req.Principal:
			return true, true
		case req.Account != "" && (a == req.Account || strings.HasPrefix(a, "arn:") && accountRoot(a) == req.Account):
			account = true
		}
	}
	return account, false
}

// accountRoot returns the account of arn:<partition>:iam::<account>:root, or "".
func accountRoot(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[2] != "iam" || parts[5] != "root" {
		return ""
	}
	return parts[4]
}

func (s Statement) matches(req Request) bool {
	switch {
	case s.Action != nil:
		if !anyMatch(s.Action, req.Action, true) {
			return false
		}
	case s.NotAction != nil:
		if anyMatch(s.NotAction, req.Action, true) {
			return false
		}
	default:
		return false
	}
	switch {
	case s.Resource != nil:
		if !anyMatch(s.Resource, req.Resource, false) {
			return false
		}
	case s.NotResource != nil:
		if anyMatch(s.NotResource, req.Resource, false) {
			return false
		}
	}
	return conditionsHold(s.Condition, req.Keys)
}

func anyMatch(patterns []string, value string, foldCase bool) bool {
	for _, p := range patterns {
		if p == "*" {
			return true
		}
		if foldCase {
			if Match(strings.ToLower(p), strings.ToLower(value)) {
				return true
			}
		} else if Match(p, value) {
			return true
		}
	}
	return false
}

// Match reports whether value matches pattern, where * matches any run of
// characters (including none) and ? exactly one. It runs in time
// proportional to len(pattern)·len(value) at worst, whatever the input.
func Match(pattern, value string) bool {
	// Iterative matching with one backtrack point: the classic linear-space
	// glob algorithm, which cannot blow up on many stars.
	p, v := 0, 0
	star, mark := -1, 0
	for v < len(value) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, v
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == value[v]):
			p++
			v++
		case star >= 0:
			p = star + 1
			mark++
			v = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
