package policy

import (
	"errors"
	"fmt"
	"slices"
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

// Parse parses doc and checks its syntax. It succeeds exactly when Validate
// reports no SYNTAX_CHECK finding; otherwise the error wraps ErrMalformed and
// describes the first problem (and how many more there are).
func Parse(doc string) (*Document, error) {
	d, problems := parse(doc)
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
// statement without a Condition has Principal "*" or {"AWS": "*"}, or has a
// NotPrincipal (which allows everyone not listed) that lists less than
// everyone. PutResourcePolicy with BlockPublicPolicy rejects such a document
// with PublicPolicyException.
//
// Any Condition counts as restricting the statement. That is coarser than
// AWS, which reasons about what each condition allows; it errs towards
// accepting a conditioned policy, never towards calling a bare "*" private.
func (d *Document) IsPublic() bool {
	if d == nil {
		return false
	}
	return slices.ContainsFunc(d.Statements, Statement.isPublic)
}

func (s Statement) isPublic() bool {
	if s.Effect != Allow || len(s.Condition) > 0 {
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
