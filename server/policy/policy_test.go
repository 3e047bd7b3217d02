package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const secretARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf"

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want *Document
	}{
		{
			name: "statement object, string action and resource",
			doc: `{"Version":"2012-10-17","Statement":{"Effect":"Allow",
				"Principal":{"AWS":"arn:aws:iam::123456789012:root"},
				"Action":"secretsmanager:GetSecretValue","Resource":"*"}}`,
			want: &Document{Version: "2012-10-17", Statements: []Statement{{
				Effect:    Allow,
				Principal: &Principal{AWS: []string{"arn:aws:iam::123456789012:root"}},
				Action:    []string{"secretsmanager:GetSecretValue"},
				Resource:  []string{"*"},
			}}},
		},
		{
			name: "statement array, arrays, Id and Sid, 2008 version",
			doc: `{"Version":"2008-10-17","Id":"policy-1","Statement":[
				{"Sid":"Read","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:role/app","123456789012"]},
				 "Action":["secretsmanager:GetSecretValue","secretsmanager:Describe*"],"Resource":["` + secretARN + `"]},
				{"Sid":"NoDelete","Effect":"Deny","Principal":"*","NotAction":["secretsmanager:Get?ecretValue"],"NotResource":"arn:aws:s3:::x"}]}`,
			want: &Document{Version: "2008-10-17", ID: "policy-1", Statements: []Statement{
				{
					Sid: "Read", Effect: Allow,
					Principal: &Principal{AWS: []string{"arn:aws:iam::111122223333:role/app", "123456789012"}},
					Action:    []string{"secretsmanager:GetSecretValue", "secretsmanager:Describe*"},
					Resource:  []string{secretARN},
				},
				{
					Sid: "NoDelete", Effect: Deny,
					Principal:   &Principal{Wildcard: true},
					NotAction:   []string{"secretsmanager:Get?ecretValue"},
					NotResource: []string{"arn:aws:s3:::x"},
				},
			}},
		},
		{
			name: "every principal type, action *",
			doc: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{
				"AWS":"*","Service":["lambda.amazonaws.com"],"Federated":"cognito-identity.amazonaws.com",
				"CanonicalUser":"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"},
				"Action":"*"}]}`,
			want: &Document{Version: "2012-10-17", Statements: []Statement{{
				Effect: Allow,
				Principal: &Principal{
					AWS:           []string{"*"},
					Service:       []string{"lambda.amazonaws.com"},
					Federated:     []string{"cognito-identity.amazonaws.com"},
					CanonicalUser: []string{"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"},
				},
				Action: []string{"*"},
			}}},
		},
		{
			name: "NotPrincipal",
			doc: `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:root"},
				"Action":"secretsmanager:*","Resource":"*"}]}`,
			want: &Document{Version: "2012-10-17", Statements: []Statement{{
				Effect:       Deny,
				NotPrincipal: &Principal{AWS: []string{"arn:aws:iam::123456789012:root"}},
				Action:       []string{"secretsmanager:*"},
				Resource:     []string{"*"},
			}}},
		},
		{
			name: "conditions with string, bool, number and array values",
			doc: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue",
				"Condition":{
					"StringEquals":{"aws:PrincipalOrgID":"o-abc123","secretsmanager:VersionStage":["AWSCURRENT","AWSPREVIOUS"]},
					"Bool":{"aws:SecureTransport":true},
					"NumericLessThan":{"aws:MultiFactorAuthAge":3600,"x:ratio":1.50},
					"ForAnyValue:StringLikeIfExists":{"aws:TagKeys":["env*",false,2]},
					"Null":{"aws:TokenIssueTime":"false"}}}]}`,
			want: &Document{Version: "2012-10-17", Statements: []Statement{{
				Effect:    Allow,
				Principal: &Principal{Wildcard: true},
				Action:    []string{"secretsmanager:GetSecretValue"},
				Condition: map[string]map[string][]string{
					"StringEquals": {
						"aws:PrincipalOrgID":          {"o-abc123"},
						"secretsmanager:VersionStage": {"AWSCURRENT", "AWSPREVIOUS"},
					},
					"Bool":                           {"aws:SecureTransport": {"true"}},
					"NumericLessThan":                {"aws:MultiFactorAuthAge": {"3600"}, "x:ratio": {"1.50"}},
					"ForAnyValue:StringLikeIfExists": {"aws:TagKeys": {"env*", "false", "2"}},
					"Null":                           {"aws:TokenIssueTime": {"false"}},
				},
			}}},
		},
		{
			name: "surrounding whitespace",
			doc:  "\n\t {\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Deny\",\"Action\":\"s3:Get*\"}} \r\n",
			want: &Document{Version: "2012-10-17", Statements: []Statement{{Effect: Deny, Action: []string{"s3:Get*"}}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.doc)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse =\n%#v\nwant\n%#v", got, tc.want)
			}
			// Validate checks resource policies: it agrees with
			// ParseResource, which also wants a Principal.
			_, rerr := ParseResource(tc.doc)
			if f := syntaxFindings(Validate(tc.doc)); (len(f) == 0) != (rerr == nil) {
				t.Errorf("Validate reports syntax findings %v but ParseResource gives %v", f, rerr)
			}
		})
	}
}

// stmt wraps statement JSON in a valid document.
func stmt(s string) string {
	return `{"Version":"2012-10-17","Statement":[` + s + `]}`
}

func TestParseMalformed(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		mentions []string
	}{
		{"empty", "", []string{"empty"}},
		{"whitespace", "  \n", []string{"empty"}},
		{"not JSON", "Version: 2012-10-17", []string{"not valid JSON", "offset"}},
		{"truncated", `{"Version":"2012-10-17","Statement":[`, []string{"not valid JSON"}},
		{"trailing data", stmt(`{"Effect":"Allow","Action":"*"}`) + `{}`, []string{"data after the JSON value"}},
		{"trailing garbage", stmt(`{"Effect":"Allow","Action":"*"}`) + ` x`, []string{"data after"}},
		{"array document", `[]`, []string{"must be a JSON object", "array"}},
		{"string document", `"policy"`, []string{"must be a JSON object", "string"}},
		{"too long", `{"Version":"2012-10-17","Id":"` + strings.Repeat("a", MaxDocumentLength) + `"}`, []string{"20480"}},
		{"missing Version", `{"Statement":{"Effect":"Allow","Action":"*"}}`, []string{"Version is required"}},
		{"unknown Version", `{"Version":"2012-10-18","Statement":{"Effect":"Allow","Action":"*"}}`, []string{"Version", "2012-10-18"}},
		{"numeric Version", `{"Version":2012,"Statement":{"Effect":"Allow","Action":"*"}}`, []string{"Version must be a string"}},
		{"Id not a string", `{"Version":"2012-10-17","Id":1,"Statement":{"Effect":"Allow","Action":"*"}}`, []string{"Id must be a string"}},
		{"unknown top-level key", `{"Version":"2012-10-17","Statements":[],"Statement":{"Effect":"Allow","Action":"*"}}`, []string{`"Statements"`, "top-level"}},
		{"missing Statement", `{"Version":"2012-10-17"}`, []string{"Statement is required"}},
		{"empty Statement", `{"Version":"2012-10-17","Statement":[]}`, []string{"Statement must contain at least one"}},
		{"null Statement", `{"Version":"2012-10-17","Statement":null}`, []string{"Statement must be an object or an array", "null"}},
		{"Statement element not object", stmt(`"Allow"`), []string{"Statement[0] must be an object"}},
		{"missing Effect", stmt(`{"Action":"*"}`), []string{"Statement[0]", "Effect is required"}},
		{"lowercase Effect", stmt(`{"Sid":"S1","Effect":"allow","Action":"*"}`), []string{`Statement[0] (Sid "S1")`, "Effect", `"allow"`}},
		{"boolean Effect", stmt(`{"Effect":true,"Action":"*"}`), []string{"Effect", "boolean"}},
		{"neither Action nor NotAction", stmt(`{"Effect":"Allow","Resource":"*"}`), []string{"Action or NotAction"}},
		{"both Action and NotAction", stmt(`{"Effect":"Allow","Action":"*","NotAction":"s3:*"}`), []string{"both Action and NotAction"}},
		{"both Resource and NotResource", stmt(`{"Effect":"Allow","Action":"*","Resource":"*","NotResource":"*"}`), []string{"both Resource and NotResource"}},
		{"both Principal and NotPrincipal", stmt(`{"Effect":"Deny","Action":"*","Principal":"*","NotPrincipal":{"AWS":"*"}}`), []string{"both Principal and NotPrincipal"}},
		{"unknown statement key", stmt(`{"Effect":"Allow","Action":"*","Actions":"*"}`), []string{"Statement[0]", `"Actions"`}},
		{"Sid not a string", stmt(`{"Sid":5,"Effect":"Allow","Action":"*"}`), []string{"Sid must be a string"}},
		{"action without service", stmt(`{"Effect":"Allow","Action":"GetSecretValue"}`), []string{`Action "GetSecretValue"`, "service:ActionName"}},
		{"action with two colons", stmt(`{"Effect":"Allow","Action":["s3:Get","a:b:c"]}`), []string{`Action[1] "a:b:c"`}},
		{"action with space", stmt(`{"Effect":"Allow","NotAction":"secretsmanager:Get Secret"}`), []string{`NotAction "secretsmanager:Get Secret"`}},
		{"empty action", stmt(`{"Effect":"Allow","Action":""}`), []string{`Action ""`}},
		{"empty Action array", stmt(`{"Effect":"Allow","Action":[]}`), []string{"Action must not be an empty array"}},
		{"Action number", stmt(`{"Effect":"Allow","Action":42}`), []string{"Action must be a string or an array of strings", "number"}},
		{"Action element not string", stmt(`{"Effect":"Allow","Action":["s3:Get",{}]}`), []string{"Action[1] must be a string", "object"}},
		{"empty Resource", stmt(`{"Effect":"Allow","Action":"*","Resource":[""]}`), []string{`Resource[0] ""`, "empty"}},
		{"Principal other string", stmt(`{"Effect":"Allow","Action":"*","Principal":"arn:aws:iam::123456789012:root"}`), []string{"Principal must be \"*\" or an object"}},
		{"Principal array", stmt(`{"Effect":"Allow","Action":"*","Principal":["*"]}`), []string{"Principal must be", "array"}},
		{"Principal empty object", stmt(`{"Effect":"Allow","Action":"*","Principal":{}}`), []string{"Principal must name at least one principal"}},
		{"Principal unknown type", stmt(`{"Effect":"Allow","Action":"*","Principal":{"User":"bob"}}`), []string{"Principal", `"User"`}},
		{"Principal AWS number", stmt(`{"Effect":"Allow","Action":"*","Principal":{"AWS":123456789012}}`), []string{"Principal.AWS must be a string"}},
		{"NotPrincipal Service empty", stmt(`{"Effect":"Deny","Action":"*","NotPrincipal":{"Service":[]}}`), []string{"NotPrincipal.Service must not be an empty array"}},
		{"Condition not object", stmt(`{"Effect":"Allow","Action":"*","Condition":"aws:SecureTransport"}`), []string{"Condition must be an object"}},
		{"unknown operator", stmt(`{"Effect":"Allow","Action":"*","Condition":{"StringEqual":{"aws:x":"y"}}}`), []string{`Condition operator "StringEqual"`}},
		{"unknown set prefix", stmt(`{"Effect":"Allow","Action":"*","Condition":{"ForSomeValues:StringLike":{"aws:x":"y"}}}`), []string{`"ForSomeValues:StringLike"`}},
		{"NullIfExists", stmt(`{"Effect":"Allow","Action":"*","Condition":{"NullIfExists":{"aws:x":"true"}}}`), []string{`"NullIfExists"`}},
		{"operator block not object", stmt(`{"Effect":"Allow","Action":"*","Condition":{"StringEquals":["a"]}}`), []string{"Condition.StringEquals must be an object", "array"}},
		{"operator block empty", stmt(`{"Effect":"Allow","Action":"*","Condition":{"Bool":{}}}`), []string{"Condition.Bool must contain at least one condition key"}},
		{"empty condition key", stmt(`{"Effect":"Allow","Action":"*","Condition":{"Bool":{"":"true"}}}`), []string{"Condition.Bool", "empty condition key"}},
		{"condition value null", stmt(`{"Effect":"Allow","Action":"*","Condition":{"StringEquals":{"aws:x":null}}}`), []string{`Condition.StringEquals["aws:x"]`, "null"}},
		{"condition value object", stmt(`{"Effect":"Allow","Action":"*","Condition":{"StringEquals":{"aws:x":{"a":"b"}}}}`), []string{`Condition.StringEquals["aws:x"]`, "object"}},
		{"condition value nested array", stmt(`{"Effect":"Allow","Action":"*","Condition":{"StringEquals":{"aws:x":["a",["b"]]}}}`), []string{`Condition.StringEquals["aws:x"][1]`, "array"}},
		{"condition value empty array", stmt(`{"Effect":"Allow","Action":"*","Condition":{"StringEquals":{"aws:x":[]}}}`), []string{`Condition.StringEquals["aws:x"] must not be an empty array`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse(tc.doc)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse = %+v, %v; want an error wrapping ErrMalformed", d, err)
			}
			if d != nil {
				t.Errorf("Parse returned a document with its error: %+v", d)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if len(syntaxFindings(Validate(tc.doc))) == 0 {
				t.Errorf("Validate reports no syntax finding for a document Parse rejects")
			}
		})
	}
}

func TestParseLengthLimit(t *testing.T) {
	base := stmt(`{"Sid":"","Effect":"Deny","Action":"*"}`)
	pad := func(n int, r string) string { // a valid document of exactly n characters
		return strings.Replace(base, `"Sid":""`, `"Sid":"`+strings.Repeat(r, n-len(base))+`"`, 1)
	}
	if _, err := Parse(pad(MaxDocumentLength, "a")); err != nil {
		t.Errorf("document of exactly %d characters: %v", MaxDocumentLength, err)
	}
	// Multi-byte characters count once: the limit is characters, not bytes.
	if _, err := Parse(pad(MaxDocumentLength, "é")); err != nil {
		t.Errorf("document of %d two-byte characters: %v", MaxDocumentLength, err)
	}
	_, err := Parse(pad(MaxDocumentLength+1, "a"))
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "20481 characters") {
		t.Errorf("document of %d characters: got %v, want ErrMalformed naming its length", MaxDocumentLength+1, err)
	}
}

func TestParseReportsProblemCount(t *testing.T) {
	_, err := Parse(`{"Statement":[{"Effect":"Maybe"}]}`)
	if err == nil {
		t.Fatal("Parse accepted a broken document")
	}
	// Version missing, Effect wrong, no Action: the first, and two more.
	if !strings.Contains(err.Error(), "Version is required") || !strings.Contains(err.Error(), "and 2 more problems") {
		t.Errorf("error = %q, want the first problem and a count of the others", err)
	}
}

func syntaxFindings(fs []Finding) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.CheckName == CheckSyntax {
			out = append(out, f)
		}
	}
	return out
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []Finding
	}{
		{
			name: "passes",
			doc: stmt(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/app"},
				"Action":"secretsmanager:GetSecretValue","Resource":"*"}`),
			want: nil,
		},
		{
			name: "not JSON",
			doc:  `{"Version":`,
			want: []Finding{{CheckSyntax, "the document is not valid JSON: it ends before the JSON value is complete"}},
		},
		{
			name: "too long",
			doc:  strings.Repeat(" ", MaxDocumentLength+1),
			want: []Finding{{CheckSyntax, "the document is 20481 characters long; the maximum is 20480"}},
		},
		{
			name: "every problem reported, in a stable order",
			doc: `{"Version":"1","Extra":1,"Statement":[
				{"Sid":"A","Effect":"Allow","Action":"nope","NotAction":"*","Condition":{"Like":{"k":"v"}},"Resouce":"*"},
				{"Effect":"Deny","Resource":"*","NotResource":"*"}]}`,
			want: []Finding{
				{CheckSyntax, `unknown top-level element "Extra"; a policy may contain only Version, Id and Statement`},
				{CheckSyntax, `Version "1" is not a policy language version; use "2012-10-17" (or "2008-10-17")`},
				{CheckSyntax, `Statement[0] (Sid "A"): unknown element "Resouce"; a statement may contain only Sid, Effect, Principal, NotPrincipal, Action, NotAction, Resource, NotResource, Condition`},
				{CheckSyntax, `Statement[0] (Sid "A"): a resource policy statement must name a Principal or NotPrincipal, such as {"AWS": "arn:aws:iam::123456789012:user/app"}`},
				{CheckSyntax, `Statement[0] (Sid "A"): a statement must not have both Action and NotAction`},
				{CheckSyntax, `Statement[0] (Sid "A"): Action "nope" is not of the form "service:ActionName", such as "secretsmanager:GetSecretValue" (* and ? are wildcards)`},
				{CheckSyntax, `Statement[0] (Sid "A"): Condition operator "Like" is not an IAM condition operator, such as StringEquals, ArnLike or ForAnyValue:StringLikeIfExists`},
				{CheckSyntax, `Statement[1]: a resource policy statement must name a Principal or NotPrincipal, such as {"AWS": "arn:aws:iam::123456789012:user/app"}`},
				{CheckSyntax, `Statement[1]: a statement must have Action or NotAction`},
				{CheckSyntax, `Statement[1]: a statement must not have both Resource and NotResource`},
			},
		},
		{
			name: "syntax problems suppress the public check",
			doc:  stmt(`{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Bogus":1}`),
			want: []Finding{{CheckSyntax, `Statement[0]: unknown element "Bogus"; a statement may contain only Sid, Effect, Principal, NotPrincipal, Action, NotAction, Resource, NotResource, Condition`}},
		},
		{
			name: "a resource policy names a principal in every statement",
			doc: stmt(`{"Sid":"Who","Effect":"Deny","Action":"secretsmanager:DeleteSecret","Resource":"*"},
				{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/app"},"Action":"*"}`),
			want: []Finding{{CheckSyntax, `Statement[0] (Sid "Who"): a resource policy statement must name a Principal or NotPrincipal, such as {"AWS": "arn:aws:iam::123456789012:user/app"}`}},
		},
		{
			name: "a condition anyone can meet does not make a statement private",
			doc: stmt(`{"Sid":"TLS","Effect":"Allow","Principal":"*","Action":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}},
				{"Sid":"Office","Effect":"Allow","Principal":"*","Action":"*","Condition":{"Bool":{"aws:SecureTransport":"true"},"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}`),
			want: []Finding{{CheckPublicAccess, `Statement[0] (Sid "TLS"): Allow with Principal "*" and no Condition that restricts the caller grants access to everyone; name specific principals, or add a Condition on who or where the caller is (aws:PrincipalAccount, aws:PrincipalArn, aws:PrincipalOrgID, aws:SourceIp, aws:SourceVpc…)`}},
		},
		{
			name: "public statements",
			doc: stmt(`{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue"},
				{"Sid":"Ok","Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringEquals":{"aws:PrincipalAccount":"123456789012"}}},
				{"Sid":"AnyAWS","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::123456789012:root","*"]},"Action":"*"},
				{"Sid":"Except","Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"*"}`),
			want: []Finding{
				{CheckPublicAccess, `Statement[0]: Allow with Principal "*" and no Condition that restricts the caller grants access to everyone; name specific principals, or add a Condition on who or where the caller is (aws:PrincipalAccount, aws:PrincipalArn, aws:PrincipalOrgID, aws:SourceIp, aws:SourceVpc…)`},
				{CheckPublicAccess, `Statement[2] (Sid "AnyAWS"): Allow with Principal {"AWS": "*"} and no Condition that restricts the caller grants access to everyone; name specific principals, or add a Condition on who or where the caller is (aws:PrincipalAccount, aws:PrincipalArn, aws:PrincipalOrgID, aws:SourceIp, aws:SourceVpc…)`},
				{CheckPublicAccess, `Statement[3] (Sid "Except"): Allow with NotPrincipal and no Condition that restricts the caller grants access to everyone; name specific principals, or add a Condition on who or where the caller is (aws:PrincipalAccount, aws:PrincipalArn, aws:PrincipalOrgID, aws:SourceIp, aws:SourceVpc…)`},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Validate(tc.doc)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Validate =\n%s\nwant\n%s", formatFindings(got), formatFindings(tc.want))
			}
		})
	}
}

func formatFindings(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString("  " + f.CheckName + ": " + f.ErrorMessage + "\n")
	}
	if len(fs) == 0 {
		b.WriteString("  (none)\n")
	}
	return b.String()
}

func TestIsPublic(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want bool
	}{
		{"Principal *", stmt(`{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}`), true},
		{"AWS *", stmt(`{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"secretsmanager:*"}`), true},
		{"AWS * among accounts", stmt(`{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::123456789012:root","*"]},"Action":"*"}`), true},
		{"Allow with NotPrincipal", stmt(`{"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"*"}`), true},
		{"public statement after a private one", stmt(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"*"},
			{"Effect":"Allow","Principal":"*","NotAction":"secretsmanager:DeleteSecret"}`), true},
		{"empty Condition restricts nothing", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{}}`), true},
		{"restricted to an organization", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-abc123"}}}`), false},
		{"SecureTransport restricts no one", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}`), true},
		{"a resource tag restricts no one", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringEquals":{"secretsmanager:ResourceTag/team":"a"}}}`), true},
		{"SecureTransport and a network", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"Bool":{"aws:SecureTransport":"true"},"IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.168.1.7"]}}}`), false},
		{"the whole address space", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","0.0.0.0/0"]}}}`), true},
		{"NotIpAddress", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}`), true},
		{"account (key case-insensitive)", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringEquals":{"AWS:PrincipalAccount":"123456789012"}}}`), false},
		{"account wildcard", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringLike":{"aws:PrincipalAccount":"*"}}}`), true},
		{"one wildcard value among accounts", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringLike":{"aws:PrincipalAccount":["123456789012","1*"]}}}`), true},
		{"StringNotEquals on the account", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringNotEquals":{"aws:PrincipalAccount":"999999999999"}}}`), true},
		{"IfExists holds without the key", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringEqualsIfExists":{"aws:SourceVpc":"vpc-1"}}}`), true},
		{"ForAllValues holds without the key", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"ForAllValues:StringEquals":{"aws:SourceVpce":"vpce-1"}}}`), true},
		{"ForAnyValue needs the key", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"ForAnyValue:StringEquals":{"aws:SourceVpce":"vpce-1"}}}`), false},
		{"principal ARNs in one account", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/*"}}}`), false},
		{"principal ARNs in any account", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/app"}}}`), true},
		{"a user name", stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringEquals":{"aws:username":"app"}}}`), false},
		{"NotPrincipal restricted by a condition", stmt(`{"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:user/x"},"Action":"*","Condition":{"StringEquals":{"aws:SourceAccount":"123456789012"}}}`), false},
		{"Allow with NotPrincipal *", stmt(`{"Effect":"Allow","NotPrincipal":"*","Action":"*"}`), false},
		{"Allow with NotPrincipal AWS *", stmt(`{"Effect":"Allow","NotPrincipal":{"AWS":"*"},"Action":"*"}`), false},
		{"Deny with *", stmt(`{"Effect":"Deny","Principal":"*","Action":"*"}`), false},
		{"account root", stmt(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"*","Resource":"*"}`), false},
		{"service principal", stmt(`{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"*"}`), false},
		{"no principal", stmt(`{"Effect":"Allow","Action":"*"}`), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse(tc.doc)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := d.IsPublic(); got != tc.want {
				t.Errorf("IsPublic = %v, want %v", got, tc.want)
			}
		})
	}
	var nilDoc *Document
	if nilDoc.IsPublic() {
		t.Error("nil Document is public")
	}
}

func TestKnownOperator(t *testing.T) {
	for op, want := range map[string]bool{
		"StringEquals":                        true,
		"StringNotEqualsIgnoreCase":           true,
		"ArnLikeIfExists":                     true,
		"ForAllValues:StringLike":             true,
		"ForAnyValue:NumericLessThanIfExists": true,
		"Null":                                true,
		"ForAllValues:Null":                   true,
		"NullIfExists":                        false,
		"stringequals":                        false,
		"StringEqualsIfExistsIfExists":        false,
		"ForAnyValue:":                        false,
		":StringEquals":                       false,
		"ForAnyValue:ForAllValues:StringLike": false,
		"":                                    false,
	} {
		if got := knownOperator(op); got != want {
			t.Errorf("knownOperator(%q) = %v, want %v", op, got, want)
		}
	}
}

// FuzzParse checks that no input panics Parse, ParseResource, Validate or
// IsPublic, and that they agree: ParseResource accepts only what Parse
// does, it succeeds exactly when Validate finds no syntax problem, and then
// IsPublic holds exactly when Validate finds public access.
func FuzzParse(f *testing.F) {
	seeds := []string{
		stmt(`{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}`),
		`{"Version":"2012-10-17","Statement":{"Sid":"x","Effect":"Deny","NotPrincipal":{"AWS":["a","b"]},"NotAction":"s3:*","NotResource":"*"}}`,
		stmt(`{"Effect":"Allow","Principal":{"AWS":"*","Service":"s","Federated":["f"],"CanonicalUser":"c"},"Action":["*"],
			"Condition":{"ForAnyValue:StringLikeIfExists":{"k":["v",true,1e3]},"Bool":{"b":false}}}`),
		`{"Version":"2008-10-17","Id":"i","Statement":[]}`,
		`{"Version":"2012-10-17","Statement":[{"Effect":"allow","Action":"x"},null,1,"s",[]]}`,
		stmt(`{"Effect":"Allow","Action":"*","Condition":{"StringEquals":{"k":[null,{},[]]}}}`),
		stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","::/0"]},"ForAnyValue:ArnLike":{"aws:PrincipalArn":"arn:aws:iam::1:*"}}}`),
		stmt(`{"Effect":"Allow","NotPrincipal":{"AWS":"x"},"Action":"*","Condition":{"StringLikeIfExists":{"aws:SourceVpce":"vpce-?"},"Bool":{"aws:SecureTransport":true}}}`),
		`{"Version":`,
		`[1,2,3]`,
		`{} {}`,
		`"\ud800"`,
		"{\"Version\":\"2012-10-17\",\"Statement\":{\"Sid\":\"\xff\xfe\",\"Effect\":\"Deny\",\"Action\":\"*\"}}",
		strings.Repeat("[", 200),
		"",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		if _, err := ParseResource(doc); err == nil {
			if _, perr := Parse(doc); perr != nil {
				t.Fatalf("ParseResource accepted what Parse refuses: %v", perr)
			}
		}
		d, err := ParseResource(doc)
		findings := Validate(doc)
		public := d.IsPublic()
		syntax := len(syntaxFindings(findings))
		if (err == nil) != (syntax == 0) {
			t.Fatalf("Parse error %v but %d syntax findings: %v", err, syntax, findings)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) || d != nil {
				t.Fatalf("Parse = %v, %v; want nil and an error wrapping ErrMalformed", d, err)
			}
			return
		}
		hasPublicFinding := len(findings) > 0
		if public != hasPublicFinding {
			t.Fatalf("IsPublic = %v but findings %v", public, findings)
		}
		if len(d.Statements) == 0 || (d.Version != Version2012 && d.Version != Version2008) {
			t.Fatalf("Parse accepted a document without statements or version: %+v", d)
		}
		for _, s := range d.Statements {
			if (s.Action == nil) == (s.NotAction == nil) || (s.Effect != Allow && s.Effect != Deny) {
				t.Fatalf("Parse accepted an invalid statement: %+v", s)
			}
		}
	})
}
