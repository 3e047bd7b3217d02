package policy

import "slices"

// Trusts decides whether a role's trust policy (its assume-role policy) lets
// req's caller assume the role: an explicit Deny that applies to the caller
// wins, otherwise an Allow that applies to it allows. Unlike a resource
// policy in Evaluate, a statement naming the caller's account
// (arn:aws:iam::<account>:root) allows here: a trust policy is one half of
// the decision, and the caller's own identity policies (sts:AssumeRole on
// the role) are the other, decided separately. A web identity caller
// (req.Federated set) is named only by Principal {"Federated": …} or "*".
func Trusts(req Request, trust Named) Result {
	var allow *Result
	if trust.Doc == nil {
		return Result{Decision: ImplicitDeny}
	}
	for i, s := range trust.Doc.Statements {
		if !s.trustApplies(req) || !s.matches(req) {
			continue
		}
		r := Result{Policy: trust.Name, Statement: statementName(i, s.Sid), ResourcePolicy: true}
		if s.Effect == Deny {
			r.Decision = ExplicitDeny
			return r
		}
		if allow == nil {
			r.Decision = Allowed
			allow = &r
		}
	}
	if allow != nil {
		return *allow
	}
	return Result{Decision: ImplicitDeny}
}

// trustApplies reports whether a trust policy statement names the caller.
func (s Statement) trustApplies(req Request) bool {
	switch {
	case s.Principal != nil:
		if s.Principal.Wildcard {
			return true
		}
		if req.Federated != "" {
			return slices.Contains(s.Principal.Federated, req.Federated)
		}
		applies, _ := s.Principal.names(req)
		return applies
	case s.NotPrincipal != nil:
		if s.NotPrincipal.Wildcard {
			return false
		}
		if req.Federated != "" {
			return !slices.Contains(s.NotPrincipal.Federated, req.Federated)
		}
		return !s.NotPrincipal.namesExactly(req)
	default:
		return s.Effect == Deny // read on the safe side, as principalMatches does
	}
}
