package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// CheckSyntax and CheckPublicAccess are the check names Validate reports, as
// in the AWS ValidationErrorsEntry CheckName field. CheckConditionKey is
// UnsetConditionKeys's, a Coffer check.
const (
	CheckSyntax       = "SYNTAX_CHECK"
	CheckPublicAccess = "PUBLIC_ACCESS_CHECK"
	CheckConditionKey = "CONDITION_KEY_CHECK"
)

// Finding is one problem found by Validate, shaped like AWS
// ValidationErrorsEntry.
type Finding struct {
	CheckName    string
	ErrorMessage string
}

// Validate runs the ValidateResourcePolicy checks on doc, a resource
// policy, and returns what they find; nil means the document passed.
//
// The syntax check (CheckSyntax) reports every problem ParseResource would
// reject: a statement naming neither Principal nor NotPrincipal, and what
// Parse rejects — not JSON or trailing data, longer than MaxDocumentLength,
// a missing or unknown Version, no statements, an Effect other than Allow or
// Deny, neither or both of Action and NotAction, both of Resource and
// NotResource or of Principal and NotPrincipal, unknown elements, actions
// not of the form service:ActionName, and unknown condition operators or
// malformed condition values.
//
// The broad-access check (CheckPublicAccess) runs only on a document without
// syntax problems, since a statement that does not parse has no meaning to
// judge. It reports each statement that makes the document public, by the
// rule of Document.IsPublic.
func Validate(doc string) []Finding {
	d, problems := parse(doc, true)
	var findings []Finding
	for _, p := range problems {
		findings = append(findings, Finding{CheckName: CheckSyntax, ErrorMessage: p})
	}
	if len(problems) > 0 {
		return findings
	}
	for i, s := range d.Statements {
		if !s.isPublic() {
			continue
		}
		var grant string
		switch {
		case s.NotPrincipal != nil:
			grant = "NotPrincipal"
		case s.Principal.Wildcard:
			grant = `Principal "*"`
		default:
			grant = `Principal {"AWS": "*"}`
		}
		findings = append(findings, Finding{
			CheckName: CheckPublicAccess,
			ErrorMessage: fmt.Sprintf("%s: Allow with %s and no Condition that restricts the caller grants access to everyone; "+
				"name specific principals, or add a Condition on who or where the caller is (aws:PrincipalAccount, "+
				"aws:PrincipalArn, aws:PrincipalOrgID, aws:SourceIp, aws:SourceVpc…)",
				statementLocation(i, s.Sid), grant),
		})
	}
	return findings
}

// UnsetConditionKeys reports each condition key d names that set says is
// never set in a request. Evaluation judges every request as lacking such a
// key, so the condition is decided by that alone: a positive operator never
// matches, and a negated one, an …IfExists operator or Null true always
// does — a Deny written on the key either never denies or always does.
// Findings (CheckConditionKey) come one per statement and key (keys compare
// without regard to case; the first spelling is shown), in statement order
// and then by key.
func (d *Document) UnsetConditionKeys(set func(key string) bool) []Finding {
	if d == nil {
		return nil
	}
	var findings []Finding
	for i, s := range d.Statements {
		unset := map[string]string{} // lower-cased → as written
		for _, op := range slices.Sorted(maps.Keys(s.Condition)) {
			for _, key := range slices.Sorted(maps.Keys(s.Condition[op])) {
				k := strings.ToLower(key)
				if _, seen := unset[k]; !seen && !set(key) {
					unset[k] = key
				}
			}
		}
		for _, k := range slices.Sorted(maps.Keys(unset)) {
			findings = append(findings, Finding{CheckName: CheckConditionKey, ErrorMessage: fmt.Sprintf(
				"%s: Coffer never sets the condition key %s, so every request is judged as lacking it: "+
					"a positive operator on it never matches, and a negated operator, an …IfExists operator or Null true always does",
				statementLocation(i, s.Sid), unset[k])})
		}
	}
	return findings
}
