package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// MaxDocumentLength is the longest resource policy AWS accepts, in
// characters.
const MaxDocumentLength = 20480

// Version2012 and Version2008 are the policy language versions AWS accepts.
const (
	Version2012 = "2012-10-17"
	Version2008 = "2008-10-17"
)

// ErrMalformed is wrapped by every Parse error; the text after it says where
// the document is wrong (statement index, Sid and field). server/ maps it to
// MalformedPolicyDocumentException.
var ErrMalformed = errors.New("malformed policy document")

// Document is a parsed IAM policy. Every list is normalised to a slice, so an
// element written as a single string and as a one-element array parse alike.
type Document struct {
	Version    string
	ID         string
	Statements []Statement
}

// Statement is one statement of a Document. Of each pair Principal and
// NotPrincipal, Action and NotAction, Resource and NotResource at most one is
// set; Action or NotAction always is. A nil slice means the element was
// absent.
type Statement struct {
	Sid          string
	Effect       Effect
	Principal    *Principal
	NotPrincipal *Principal
	Action       []string
	NotAction    []string
	Resource     []string
	NotResource  []string
	// Condition maps an operator (such as "StringEquals" or
	// "ForAnyValue:StringLikeIfExists") to condition keys and their
	// values. Booleans and numbers are kept as their JSON text, so
	// true becomes "true" and 1.50 stays "1.50".
	Condition map[string]map[string][]string
}

// Effect is whether a Statement allows or denies what it matches.
type Effect string

// Allow and Deny are the two effects a Statement can have.
const (
	Allow Effect = "Allow"
	Deny  Effect = "Deny"
)

// Principal names who a Statement applies to. Wildcard is set when the
// document says "Principal": "*"; otherwise the lists hold the values under
// each key of the principal object, so {"AWS": "*"} has AWS == ["*"] and
// Wildcard false.
type Principal struct {
	Wildcard      bool
	AWS           []string
	Service       []string
	Federated     []string
	CanonicalUser []string
}

// Parse parses doc and checks its syntax as an identity policy or any IAM
// policy document. The error wraps ErrMalformed and describes the first
// problem (and how many more there are).
func Parse(doc string) (*Document, error) {
	return parseErr(parse(doc, false))
}

// ParseResource parses a resource policy: the grammar Parse accepts, plus
// what AWS requires of resource policies — every statement names a
// Principal or NotPrincipal. It succeeds exactly when Validate reports no
// SYNTAX_CHECK finding.
func ParseResource(doc string) (*Document, error) {
	return parseErr(parse(doc, true))
}

func parseErr(d *Document, problems []string) (*Document, error) {
	switch len(problems) {
	case 0:
		return d, nil
	case 1:
		return nil, fmt.Errorf("%w: %s", ErrMalformed, problems[0])
	default:
		return nil, fmt.Errorf("%w: %s (and %d more problems)", ErrMalformed, problems[0], len(problems)-1)
	}
}

// IsPublic reports whether d grants access to everyone: whether any Allow
// statement whose Principal is "*" or {"AWS": "*"}, or whose NotPrincipal
// lists less than everyone, has no Condition that restricts the caller (see
// RestrictsCaller). PutResourcePolicy with BlockPublicPolicy rejects such a
// document with PublicPolicyException.
//
// A Condition on anything else — aws:SecureTransport, aws:CurrentTime, a
// resource tag — leaves the statement public: anyone can meet it.
func (d *Document) IsPublic() bool {
	if d == nil {
		return false
	}
	return slices.ContainsFunc(d.Statements, Statement.isPublic)
}

func (s Statement) isPublic() bool {
	if s.Effect != Allow || s.restrictsCaller() {
		return false
	}
	if s.NotPrincipal != nil {
		// Everyone except the listed principals, unless the list is
		// everyone, which leaves no one.
		return !s.NotPrincipal.isEveryone()
	}
	return s.Principal.isEveryone()
}

func (p *Principal) isEveryone() bool {
	return p != nil && (p.Wildcard || slices.Contains(p.AWS, "*"))
}

// callerKind is how a condition key restricts who the caller is.
type callerKind int

const (
	callerExact   callerKind = iota + 1 // an identifier: account, org, user, VPC
	callerARN                           // an ARN: restricting once its account is fixed
	callerNetwork                       // an address range
)

// callerKeys are the condition keys that identify the caller or where it
// calls from, lower-cased. A statement conditioned on one of them, with
// values that pin it down, grants access only to known principals or
// networks.
var callerKeys = map[string]callerKind{
	"aws:sourceip":         callerNetwork,
	"aws:sourcevpc":        callerExact,
	"aws:sourcevpce":       callerExact,
	"aws:principalaccount": callerExact,
	"aws:principalarn":     callerARN,
	"aws:principalorgid":   callerExact,
	"aws:sourceaccount":    callerExact,
	"aws:sourcearn":        callerARN,
	"aws:userid":           callerExact,
	"aws:username":         callerExact,
}

// restrictsCaller reports whether one of s's conditions limits the
// statement to known principals or networks. Condition blocks AND together,
// so one such condition is enough. A condition counts when:
//
//   - its key is one of callerKeys;
//   - its operator is positive and requires the key: StringEquals,
//     StringEqualsIgnoreCase, StringLike, ArnEquals or ArnLike for
//     identifiers and ARNs, IpAddress for aws:SourceIp — optionally with
//     ForAnyValue:, which is false for an absent key. Negated operators,
//     …IfExists and ForAllValues: hold for callers without the key, so
//     they restrict no one;
//   - every one of its values (which OR together) pins the caller down: an
//     identifier without wildcards, an ARN whose partition, service and
//     account have none, an address range narrower than the whole
//     address space.
func (s Statement) restrictsCaller() bool {
	for op, block := range s.Condition {
		set, base, found := strings.Cut(op, ":")
		if !found {
			set, base = "", op
		}
		if set == "ForAllValues" || strings.HasSuffix(base, "IfExists") {
			continue
		}
		for key, values := range block {
			kind := callerKeys[strings.ToLower(key)]
			if kind == 0 || len(values) == 0 || !restrictingOperator(kind, base) {
				continue
			}
			if !slices.ContainsFunc(values, func(v string) bool { return !pinsCaller(kind, v) }) {
				return true
			}
		}
	}
	return false
}

func restrictingOperator(kind callerKind, op string) bool {
	if kind == callerNetwork {
		return op == "IpAddress"
	}
	switch op {
	case "StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike":
		return true
	}
	return false
}

// pinsCaller reports whether one condition value names known callers.
func pinsCaller(kind callerKind, v string) bool {
	switch kind {
	case callerNetwork:
		if pfx, err := netip.ParsePrefix(v); err == nil {
			return pfx.Bits() > 0
		}
		_, err := netip.ParseAddr(v)
		return err == nil
	case callerARN:
		// arn:partition:service:region:account:resource — the account
		// must be fixed; the resource part may use wildcards.
		parts := strings.SplitN(v, ":", 6)
		if len(parts) != 6 || parts[0] != "arn" || parts[4] == "" {
			return false
		}
		return !strings.ContainsAny(parts[1]+parts[2]+parts[4], "*?")
	default:
		return v != "" && !strings.ContainsAny(v, "*?")
	}
}
