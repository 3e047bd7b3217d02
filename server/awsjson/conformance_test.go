package awsjson

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/cofferhq/coffer/server"
)

// wantMembers asserts the exact members of a raw success response.
func (r rawResponse) wantMembers(t *testing.T, what string, members ...string) {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("%s: %d %s", what, r.status, r.raw)
	}
	got := slices.Sorted(maps.Keys(r.body))
	slices.Sort(members)
	if !slices.Equal(got, members) {
		t.Fatalf("%s: members %v, AWS sends %v (%s)", what, got, members, r.raw)
	}
}

// TestRawMembersAsAWSSends checks, on the raw HTTP response, the members
// AWS includes or omits (issue 18 §3, §4).
func TestRawMembersAsAWSSends(t *testing.T) {
	_, ts := startAWS(t)
	const tok = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"

	// No version, no VersionId: CreateSecret and UpdateSecret without a
	// value answer ARN and Name only.
	post(t, ts.URL, "secretsmanager.CreateSecret", `{"Name":"bare","Description":"d"}`).wantMembers(t, "create without value", "ARN", "Name")
	post(t, ts.URL, "secretsmanager.UpdateSecret", `{"SecretId":"bare","Description":"e"}`).wantMembers(t, "update without value", "ARN", "Name")
	post(t, ts.URL, "secretsmanager.CreateSecret", `{"Name":"one","SecretString":"v","ClientRequestToken":"`+tok+`"}`).
		wantMembers(t, "create with value", "ARN", "Name", "VersionId")

	// PrimaryRegion only for a secret with replicas (or a replica).
	d := post(t, ts.URL, "secretsmanager.DescribeSecret", `{"SecretId":"one"}`)
	if _, ok := d.body["PrimaryRegion"]; ok || d.status != 200 {
		t.Fatalf("DescribeSecret of an unreplicated secret: %s", d.raw)
	}
	l := post(t, ts.URL, "secretsmanager.ListSecrets", `{}`)
	for _, e := range l.body["SecretList"].([]any) {
		if _, ok := e.(map[string]any)["PrimaryRegion"]; ok {
			t.Fatalf("ListSecrets entry of an unreplicated secret: %s", l.raw)
		}
	}

	// Tags: absent for a secret never tagged, [] once its last tag is
	// removed (AWS; localstack#10477).
	if _, ok := d.body["Tags"]; ok {
		t.Fatalf("Tags for a secret never tagged: %s", d.raw)
	}
	post(t, ts.URL, "secretsmanager.TagResource", `{"SecretId":"one","Tags":[{"Key":"k","Value":"v"}]}`)
	post(t, ts.URL, "secretsmanager.UntagResource", `{"SecretId":"one","TagKeys":["k"]}`)
	if got := post(t, ts.URL, "secretsmanager.DescribeSecret", `{"SecretId":"one"}`); !strings.Contains(got.raw, `"Tags":[]`) {
		t.Fatalf("DescribeSecret after the last tag was removed: %s", got.raw)
	}

	// LastAccessedDate appears once the secret has been read that day, at
	// day granularity, on DescribeSecret, ListSecrets and the version read.
	if _, ok := d.body["LastAccessedDate"]; ok {
		t.Fatalf("LastAccessedDate before any read: %s", d.raw)
	}
	post(t, ts.URL, "secretsmanager.GetSecretValue", `{"SecretId":"one"}`)
	y, m, dd := time.Now().UTC().Date()
	today := float64(time.Date(y, m, dd, 0, 0, 0, 0, time.UTC).Unix())
	if got := post(t, ts.URL, "secretsmanager.DescribeSecret", `{"SecretId":"one"}`); got.body["LastAccessedDate"] != today {
		t.Fatalf("DescribeSecret after a read: %s, want LastAccessedDate %v", got.raw, today)
	}
	vs := post(t, ts.URL, "secretsmanager.ListSecretVersionIds", `{"SecretId":"one"}`)
	if v := vs.body["Versions"].([]any)[0].(map[string]any); v["LastAccessedDate"] != today {
		t.Fatalf("ListSecretVersionIds after a read: %s", vs.raw)
	}
	ls := post(t, ts.URL, "secretsmanager.ListSecrets", `{"Filters":[{"Key":"name","Values":["one"]}]}`)
	if e := ls.body["SecretList"].([]any)[0].(map[string]any); e["LastAccessedDate"] != today {
		t.Fatalf("ListSecrets after a read: %s", ls.raw)
	}

	// A forced delete of a secret that does not exist answers as if it
	// existed: ARN, Name and DeletionDate.
	del := post(t, ts.URL, "secretsmanager.DeleteSecret", `{"SecretId":"never/was","ForceDeleteWithoutRecovery":true}`)
	del.wantMembers(t, "forced delete of a missing secret", "ARN", "Name", "DeletionDate")
	if arn, _ := del.body["ARN"].(string); !regexp.MustCompile(`^arn:aws:secretsmanager:us-east-1:\d{12}:secret:never/was-[A-Za-z0-9]{6}$`).MatchString(arn) || del.body["Name"] != "never/was" {
		t.Fatalf("forced delete of a missing secret: %s", del.raw)
	}

	// Validation before existence: a name CreateSecret would refuse is a
	// ValidationException on every operation, never ResourceNotFound nor a
	// forced delete's success.
	const bad = "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!"
	for _, c := range [][2]string{
		{"DescribeSecret", `{"SecretId":"bad name!"}`},
		{"GetSecretValue", `{"SecretId":"bad name!"}`},
		{"DeleteSecret", `{"SecretId":"bad name!"}`},
		{"DeleteSecret", `{"SecretId":"bad name!","ForceDeleteWithoutRecovery":true}`},
		{"TagResource", `{"SecretId":"bad#name","Tags":[{"Key":"k","Value":"v"}]}`},
		{"PutResourcePolicy", `{"SecretId":"arn:aws:secretsmanager:us-east-1:123456789012:secret:bad name","ResourcePolicy":"{}"}`},
	} {
		post(t, ts.URL, "secretsmanager."+c[0], c[1]).wantError(t, 400, server.TypeValidation, bad)
	}

	// The order AWS checks in: a missing secret before its policy.
	post(t, ts.URL, "secretsmanager.PutResourcePolicy", `{"SecretId":"nope","ResourcePolicy":"{bad"}`).
		wantError(t, 400, server.TypeResourceNotFound, "")
	// A secret that never had rotation configured.
	post(t, ts.URL, "secretsmanager.CancelRotateSecret", `{"SecretId":"one"}`).
		wantError(t, 400, server.TypeInvalidRequest, "doesn't already have a Lambda function ARN configured")
	// Validation messages in AWS's form, naming the (non-sensitive) value.
	post(t, ts.URL, "secretsmanager.RotateSecret", `{"SecretId":"one","ClientRequestToken":"short"}`).
		wantError(t, 400, server.TypeValidation, "1 validation error detected: Value 'short' at 'clientRequestToken' failed to satisfy constraint: Member must have length greater than or equal to 32")
	post(t, ts.URL, "secretsmanager.RotateSecret", `{"SecretId":"one","ClientRequestToken":"`+tok+`","RotationRules":{"AutomaticallyAfterDays":0}}`).
		wantError(t, 400, server.TypeValidation, "1 validation error detected: Value '0' at 'rotationRules.automaticallyAfterDays' failed to satisfy constraint: Member must have value greater than or equal to 1")
	post(t, ts.URL, "secretsmanager.GetRandomPassword", `{"PasswordLength":5000}`).
		wantError(t, 400, server.TypeValidation, "Value '5000' at 'passwordLength'")
	post(t, ts.URL, "secretsmanager.DeleteSecret", `{"SecretId":"one","RecoveryWindowInDays":7,"ForceDeleteWithoutRecovery":true}`).
		wantError(t, 400, server.TypeInvalidParameter, "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.")
}

// TestSDKConformance drives the items of issue 18 §2–§4 through
// aws-sdk-go-v2: word filters, filter errors, validation before existence,
// the forced delete of a missing secret, and AWS's label transitions.
func TestSDKConformance(t *testing.T) {
	sm, _ := startAWS(t)
	ctx := t.Context()
	for _, in := range []*secretsmanager.CreateSecretInput{
		{Name: aws.String("app/SecretOne"), SecretString: aws.String("1"), Description: aws.String("Payments primary")},
		{Name: aws.String("app/db-password"), SecretString: aws.String("2"), Tags: []types.Tag{{Key: aws.String("env"), Value: aws.String("prod")}}},
	} {
		if _, err := sm.CreateSecret(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	list := func(f ...types.Filter) []string {
		t.Helper()
		out, err := sm.ListSecrets(ctx, &secretsmanager.ListSecretsInput{Filters: f, SortBy: types.SortByTypeName})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range out.SecretList {
			names = append(names, aws.ToString(e.Name))
		}
		return names
	}
	all := func(v ...string) types.Filter { return types.Filter{Key: types.FilterNameStringTypeAll, Values: v} }
	name := func(v ...string) types.Filter { return types.Filter{Key: types.FilterNameStringTypeName, Values: v} }
	for _, c := range []struct {
		f    []types.Filter
		want []string
	}{
		{[]types.Filter{all("one")}, []string{"app/SecretOne"}},
		{[]types.Filter{all("password")}, []string{"app/db-password"}},
		{[]types.Filter{all("payments primary")}, []string{"app/SecretOne"}},
		{[]types.Filter{{Key: types.FilterNameStringTypeDescription, Values: []string{"prim"}}}, []string{"app/SecretOne"}},
		{[]types.Filter{name("app/S"), name("app/d")}, []string{"app/SecretOne", "app/db-password"}},
		{[]types.Filter{name("app/S"), name("app/d"), {Key: types.FilterNameStringTypeTagValue, Values: []string{"prod"}}}, []string{"app/db-password"}},
	} {
		if got := list(c.f...); !slices.Equal(got, c.want) {
			t.Errorf("ListSecrets %+v = %v, want %v", c.f, got, c.want)
		}
	}
	_, err := sm.ListSecrets(ctx, &secretsmanager.ListSecretsInput{Filters: []types.Filter{{Key: types.FilterNameStringTypeDescription}}})
	wantAPIError[*types.InvalidParameterException](t, err, "Invalid filter values for key: description")
	_, err = sm.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{SecretIdList: []string{"app/SecretOne"}, Filters: []types.Filter{all("one")}})
	wantAPIError[*types.InvalidParameterException](t, err, "must be provided, but not both")

	// Validation before existence.
	_, err = sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("no such name!")})
	wantCode(t, err, server.TypeValidation)
	_, err = sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String("no such name!"), ForceDeleteWithoutRecovery: aws.Bool(true)})
	wantCode(t, err, server.TypeValidation)
	del, err := sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String("gone"), ForceDeleteWithoutRecovery: aws.Bool(true)})
	if err != nil || aws.ToString(del.Name) != "gone" || !strings.HasPrefix(aws.ToString(del.ARN), "arn:aws:secretsmanager:us-east-1:") || del.DeletionDate == nil {
		t.Fatalf("forced delete of a missing secret: %+v %v", del, err)
	}

	// Labels: a rotation's version promoted, then superseded by a new
	// value, keeps only AWSPREVIOUS.
	cur, err := sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("app/SecretOne")})
	if err != nil {
		t.Fatal(err)
	}
	var first string
	for id := range cur.VersionIdsToStages {
		first = id
	}
	const pending = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
	if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("app/SecretOne"), SecretString: aws.String("2"),
		ClientRequestToken: aws.String(pending), VersionStages: []string{"AWSPENDING"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sm.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{SecretId: aws.String("app/SecretOne"),
		VersionStage: aws.String("AWSCURRENT"), MoveToVersionId: aws.String(pending), RemoveFromVersionId: aws.String(first)}); err != nil {
		t.Fatal(err)
	}
	put, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("app/SecretOne"), SecretString: aws.String("3")})
	if err != nil {
		t.Fatal(err)
	}
	d, err := sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("app/SecretOne")})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{aws.ToString(put.VersionId): {"AWSCURRENT"}, pending: {"AWSPREVIOUS"}}
	if !maps.EqualFunc(d.VersionIdsToStages, want, slices.Equal) {
		t.Fatalf("labels %v, want %v (AWS)", d.VersionIdsToStages, want)
	}
	if d.PrimaryRegion != nil {
		t.Fatalf("PrimaryRegion %q for an unreplicated secret", aws.ToString(d.PrimaryRegion))
	}
}
