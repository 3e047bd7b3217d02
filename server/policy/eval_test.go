package policy

import (
	"strings"
	"testing"
	"time"
)

const (
	alice   = "arn:aws:iam::123456789012:user/alice"
	account = "123456789012"
)

func mustParse(t testing.TB, doc string) *Document {
	t.Helper()
	d, err := Parse(doc)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return d
}

func stmts(s ...string) string {
	return `{"Version":"2012-10-17","Statement":[` + strings.Join(s, ",") + `]}`
}

func TestEvaluate(t *testing.T) {
	keys := func(kv ...string) Keys {
		k := Keys{}
		for i := 0; i+1 < len(kv); i += 2 {
			k.Set(kv[i], kv[i+1])
		}
		return k
	}
	req := func(action, resource string, k Keys) Request {
		return Request{Principal: alice, Account: account, Action: action, Resource: resource, Keys: k}
	}
	tests := []struct {
		name      string
		identity  []string
		resource  string
		req       Request
		want      Decision
		statement string // "policy/statement" expected to decide
	}{
		{
			name: "no policy is an implicit deny",
			req:  req("secretsmanager:GetSecretValue", secretARN, nil),
			want: ImplicitDeny,
		},
		{
			name:      "identity allow with action wildcard",
			identity:  []string{stmts(`{"Sid":"Read","Effect":"Allow","Action":"secretsmanager:Get*","Resource":"*"}`)},
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      Allowed,
			statement: "p0/Read",
		},
		{
			name:     "actions match case-insensitively, resources do not",
			identity: []string{stmts(`{"Effect":"Allow","Action":"SecretsManager:getsecretvalue","Resource":"arn:aws:secretsmanager:eu-west-1:123456789012:secret:DB-*"}`)},
			req:      req("secretsmanager:GetSecretValue", secretARN, nil),
			want:     ImplicitDeny,
		},
		{
			name:      "resource ? matches one character",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-??????"}`)},
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      Allowed,
			statement: "p0/Statement[0]",
		},
		{
			name: "explicit deny beats allow in another policy",
			identity: []string{
				stmts(`{"Effect":"Allow","Action":"*","Resource":"*"}`),
				stmts(`{"Sid":"NoDB","Effect":"Deny","Action":"secretsmanager:*","Resource":"arn:aws:secretsmanager:*:*:secret:db-*"}`),
			},
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      ExplicitDeny,
			statement: "p1/NoDB",
		},
		{
			name:      "NotAction allows everything else",
			identity:  []string{stmts(`{"Effect":"Allow","NotAction":"secretsmanager:Delete*","Resource":"*"}`)},
			req:       req("secretsmanager:DeleteSecret", secretARN, nil),
			want:      ImplicitDeny,
			statement: "",
		},
		{
			name:      "NotResource",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","NotResource":"arn:aws:secretsmanager:*:*:secret:prod/*"}`)},
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      Allowed,
			statement: "p0/Statement[0]",
		},
		{
			name:      "resource policy alone allows the named principal",
			resource:  stmts(`{"Sid":"App","Effect":"Allow","Principal":{"AWS":"` + alice + `"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}`),
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      Allowed,
			statement: "resource-policy/App",
		},
		{
			name:     "resource policy for someone else does not",
			resource: stmts(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/bob"},"Action":"*","Resource":"*"}`),
			req:      req("secretsmanager:GetSecretValue", secretARN, nil),
			want:     ImplicitDeny,
		},
		{
			name:     "account principal grants nothing alone",
			resource: stmts(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"*","Resource":"*"}`),
			req:      req("secretsmanager:GetSecretValue", secretARN, nil),
			want:     ImplicitDeny,
		},
		{
			name:      "account principal's deny applies",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*"}`)},
			resource:  stmts(`{"Sid":"Lock","Effect":"Deny","Principal":{"AWS":"123456789012"},"Action":"*","Resource":"*"}`),
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      ExplicitDeny,
			statement: "resource-policy/Lock",
		},
		{
			name:      "NotPrincipal deny spares the listed principal",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*"}`)},
			resource:  stmts(`{"Effect":"Deny","NotPrincipal":{"AWS":"` + alice + `"},"Action":"*","Resource":"*"}`),
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      Allowed,
			statement: "p0/Statement[0]",
		},
		{
			name:      "NotPrincipal deny naming the account still denies its users",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*"}`)},
			resource:  stmts(`{"Sid":"OnlyRoot","Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"*","Resource":"*"}`),
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      ExplicitDeny,
			statement: "resource-policy/OnlyRoot",
		},
		{
			name:      "NotPrincipal deny naming the account by its id still denies its users",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*"}`)},
			resource:  stmts(`{"Effect":"Deny","NotPrincipal":{"AWS":["123456789012","arn:aws:iam::123456789012:user/bob"]},"Action":"*","Resource":"*"}`),
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      ExplicitDeny,
			statement: "resource-policy/Statement[0]",
		},
		{
			name:      "NotPrincipal deny listing the account and the caller spares the caller",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*"}`)},
			resource:  stmts(`{"Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:iam::123456789012:root","` + alice + `"]},"Action":"*","Resource":"*"}`),
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      Allowed,
			statement: "p0/Statement[0]",
		},
		{
			name:      "NotPrincipal allow grants everyone not listed",
			resource:  stmts(`{"Sid":"AllButBob","Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:user/bob"},"Action":"*","Resource":"*"}`),
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      Allowed,
			statement: "resource-policy/AllButBob",
		},
		{
			name:     "NotPrincipal allow grants not the one listed",
			resource: stmts(`{"Effect":"Allow","NotPrincipal":{"AWS":"` + alice + `"},"Action":"*","Resource":"*"}`),
			req:      req("secretsmanager:GetSecretValue", secretARN, nil),
			want:     ImplicitDeny,
		},
		{
			name:      "a stored resource statement without a principal: its Deny applies to everyone",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*"}`)},
			resource:  stmts(`{"Sid":"Old","Effect":"Deny","Action":"secretsmanager:GetSecretValue","Resource":"*"}`),
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      ExplicitDeny,
			statement: "resource-policy/Old",
		},
		{
			name:     "a stored resource statement without a principal: its Allow grants no one",
			resource: stmts(`{"Effect":"Allow","Action":"*","Resource":"*"}`),
			req:      req("secretsmanager:GetSecretValue", secretARN, nil),
			want:     ImplicitDeny,
		},
		{
			name:      "resource-policy deny beats an identity allow",
			identity:  []string{stmts(`{"Sid":"All","Effect":"Allow","Action":"*","Resource":"*"}`)},
			resource:  stmts(`{"Sid":"NoRead","Effect":"Deny","Principal":{"AWS":"` + alice + `"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}`),
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      ExplicitDeny,
			statement: "resource-policy/NoRead",
		},
		{
			name:      "condition true: StringEquals on a resource tag (key case-insensitive)",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"secretsmanager:ResourceTag/Team":"payments"}}}`)},
			req:       req("secretsmanager:GetSecretValue", secretARN, keys("secretsmanager:resourcetag/team", "payments")),
			want:      Allowed,
			statement: "p0/Statement[0]",
		},
		{
			name:     "condition false: StringEquals with another value",
			identity: []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"secretsmanager:ResourceTag/Team":"payments"}}}`)},
			req:      req("secretsmanager:GetSecretValue", secretARN, keys("secretsmanager:ResourceTag/Team", "search")),
			want:     ImplicitDeny,
		},
		{
			name:     "condition false: key absent",
			identity: []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringLike":{"aws:PrincipalTag/role":"ops*"}}}`)},
			req:      req("secretsmanager:GetSecretValue", secretARN, nil),
			want:     ImplicitDeny,
		},
		{
			name:      "negated operator with key absent holds",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringNotEquals":{"secretsmanager:VersionStage":"AWSPREVIOUS"}}}`)},
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      Allowed,
			statement: "p0/Statement[0]",
		},
		{
			name:     "StringNotEquals false",
			identity: []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringNotEquals":{"secretsmanager:VersionStage":["AWSPREVIOUS","AWSPENDING"]}}}`)},
			req:      req("secretsmanager:GetSecretValue", secretARN, keys("secretsmanager:VersionStage", "AWSPENDING")),
			want:     ImplicitDeny,
		},
		{
			name:      "IfExists holds when absent",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEqualsIfExists":{"secretsmanager:VersionStage":"AWSCURRENT"}}}`)},
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      Allowed,
			statement: "p0/Statement[0]",
		},
		{
			name:      "IpAddress and Bool together",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.168.1.7"]},"Bool":{"aws:SecureTransport":true}}}`)},
			req:       req("secretsmanager:GetSecretValue", secretARN, keys("aws:SourceIp", "10.2.3.4", "aws:SecureTransport", "true")),
			want:      Allowed,
			statement: "p0/Statement[0]",
		},
		{
			name:     "IpAddress false",
			identity: []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}`)},
			req:      req("secretsmanager:GetSecretValue", secretARN, keys("aws:SourceIp", "127.0.0.1")),
			want:     ImplicitDeny,
		},
		{
			name:      "NotIpAddress deny",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*"}`, `{"Sid":"Office","Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}`)},
			req:       req("secretsmanager:GetSecretValue", secretARN, keys("aws:SourceIp", "::ffff:127.0.0.1")),
			want:      ExplicitDeny,
			statement: "p0/Office",
		},
		{
			name:      "DateLessThan and DateGreaterThan window",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"},"DateLessThan":{"aws:CurrentTime":"2027-01-01T00:00:00Z"}}}`)},
			req:       req("secretsmanager:GetSecretValue", secretARN, keys("aws:CurrentTime", time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC).Format(time.RFC3339))),
			want:      Allowed,
			statement: "p0/Statement[0]",
		},
		{
			name:     "DateLessThan false",
			identity: []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}}`)},
			req:      req("secretsmanager:GetSecretValue", secretARN, keys("aws:CurrentTime", "2026-11-22T00:00:00Z")),
			want:     ImplicitDeny,
		},
		{
			name:      "SecretId StringLike",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringLike":{"secretsmanager:SecretId":"arn:*:secret:db-*"}}}`)},
			req:       req("secretsmanager:GetSecretValue", secretARN, keys("secretsmanager:SecretId", secretARN)),
			want:      Allowed,
			statement: "p0/Statement[0]",
		},
		{
			name:      "Null: key must be absent",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"Null":{"secretsmanager:VersionStage":"true"}}}`)},
			req:       req("secretsmanager:GetSecretValue", secretARN, nil),
			want:      Allowed,
			statement: "p0/Statement[0]",
		},
		{
			name:     "ForAllValues with one value outside",
			identity: []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"ForAllValues:StringEquals":{"aws:TagKeys":["a","b"]}}}`)},
			req:      Request{Principal: alice, Action: "secretsmanager:TagResource", Resource: secretARN, Keys: Keys{"aws:tagkeys": {"a", "c"}}},
			want:     ImplicitDeny,
		},
		{
			name:      "ForAnyValue with one value inside",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"ForAnyValue:StringEquals":{"aws:TagKeys":["a","b"]}}}`)},
			req:       Request{Principal: alice, Action: "secretsmanager:TagResource", Resource: secretARN, Keys: Keys{"aws:tagkeys": {"a", "c"}}},
			want:      Allowed,
			statement: "p0/Statement[0]",
		},
		{
			name:      "NumericLessThan",
			identity:  []string{stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"NumericLessThan":{"secretsmanager:RecoveryWindowInDays":10}}}`)},
			req:       req("secretsmanager:DeleteSecret", secretARN, keys("secretsmanager:RecoveryWindowInDays", "7")),
			want:      Allowed,
			statement: "p0/Statement[0]",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ids []Named
			for i, d := range tc.identity {
				ids = append(ids, Named{Name: "p" + string(rune('0'+i)), Doc: mustParse(t, d)})
			}
			var res *Named
			if tc.resource != "" {
				res = &Named{Name: "resource-policy", Doc: mustParse(t, tc.resource)}
			}
			if tc.req.Keys == nil {
				tc.req.Keys = Keys{}
			}
			got := Evaluate(tc.req, ids, res)
			if got.Decision != tc.want || got.Decided() != tc.statement {
				t.Fatalf("Evaluate = %v by %q; want %v by %q", got.Decision, got.Decided(), tc.want, tc.statement)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, value string
		want           bool
	}{
		{"*", "", true},
		{"", "", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbd", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*a*a*a*a*a*b", strings.Repeat("a", 200), false},
		{"secretsmanager:Get*", "secretsmanager:GetSecretValue", true},
	}
	for _, tc := range tests {
		if got := Match(tc.pattern, tc.value); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.value, got, tc.want)
		}
	}
}

// FuzzEvaluate feeds arbitrary documents and requests to the evaluator: it
// must never panic, and its answer must be consistent — a deny names a
// statement, and adding a blanket Deny to any parseable policy (or a
// resource-policy Deny to all but the account's root user) turns every
// answer into an explicit deny.
func FuzzEvaluate(f *testing.F) {
	f.Add(stmts(`{"Effect":"Allow","Action":"secretsmanager:Get*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}`),
		"secretsmanager:GetSecretValue", secretARN, "aws:SourceIp", "10.1.2.3")
	f.Add(stmts(`{"Effect":"Deny","Principal":"*","NotAction":"s3:*","NotResource":"a*?b","Condition":{"ForAllValues:DateLessThanIfExists":{"aws:CurrentTime":["2020-01-01",1700000000]}}}`),
		"s3:GetObject", "ab", "aws:CurrentTime", "2019-12-31T00:00:00Z")
	f.Add(stmts(`{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"*","Condition":{"Null":{"k":"false"},"NumericGreaterThan":{"n":"1e400"},"BinaryEquals":{"b":"AAEC"}}}`),
		"x:y", "*", "n", "1e401")
	f.Add(stmts(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringLike":{"k":"*a*a*a*a*a*a*a*b"},"Bool":{"b":"TRUE"}}}`),
		"a:b", "*", "k", strings.Repeat("a", 100))
	f.Fuzz(func(t *testing.T, doc, action, resource, key, value string) {
		d, err := Parse(doc)
		if err != nil {
			return
		}
		req := Request{Principal: alice, Account: account, Action: action, Resource: resource, Keys: Keys{}}
		req.Keys.Set(key, value)
		for _, asResource := range []bool{false, true} {
			var r Result
			if asResource {
				r = Evaluate(req, nil, &Named{Name: "resource-policy", Doc: d})
			} else {
				r = Evaluate(req, []Named{{Name: "p", Doc: d}}, nil)
			}
			if (r.Decision == ImplicitDeny) != (r.Decided() == "") {
				t.Fatalf("decision %v with deciding statement %q", r.Decision, r.Decided())
			}
		}
		deny := mustParse(t, stmts(`{"Sid":"All","Effect":"Deny","Action":"*","Resource":"*"}`))
		if r := Evaluate(req, []Named{{Name: "p", Doc: d}, {Name: "deny", Doc: deny}}, nil); r.Decision != ExplicitDeny {
			t.Fatalf("a blanket Deny gave %v", r.Decision)
		}
		// Naming the account in NotPrincipal spares its root user, not
		// its users: the caller stays denied whatever else is allowed.
		notRoot := mustParse(t, stmts(`{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::`+account+`:root"},"Action":"*","Resource":"*"}`))
		if r := Evaluate(req, []Named{{Name: "p", Doc: d}}, &Named{Name: "resource-policy", Doc: notRoot}); r.Decision != ExplicitDeny {
			t.Fatalf("a resource-policy Deny with NotPrincipal of the account gave %v", r.Decision)
		}
	})
}
