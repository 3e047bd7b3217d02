package awsjson

import (
	"maps"
	"regexp"
	"slices"
	"testing"
	"time"

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
