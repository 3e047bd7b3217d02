package e2e

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// readBack is everything a user can read about a set of secrets, keyed by
// a description of the call that returned it.
type readBack map[string]proto.Message

// capture reads the secrets through every read operation. LastAccessedDate
// is left out: reads move it, by design, when a day boundary passes.
func capture(t *testing.T, sm cofferv1.SecretsManagerServiceClient, live, deleted []string) readBack {
	t.Helper()
	ctx := t.Context()
	out := readBack{}
	for _, id := range append(slices.Clone(live), deleted...) {
		d := must(sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: id}))(t)
		d.LastAccessedDate = nil
		out["describe "+id] = d
		vs := must(sm.ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: id, IncludeDeprecated: true}))(t)
		for _, v := range vs.GetVersions() {
			v.LastAccessedDate = nil
		}
		out["versions "+id] = vs
		out["policy "+id] = must(sm.GetResourcePolicy(ctx, &cofferv1.GetResourcePolicyRequest{SecretId: id}))(t)
	}
	for _, id := range live {
		vs := out["versions "+id].(*cofferv1.ListSecretVersionIdsResponse)
		for _, v := range vs.GetVersions() {
			out["value "+id+" "+v.GetVersionId()] = must(sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: id, VersionId: v.GetVersionId()}))(t)
		}
		out["current "+id] = must(sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: id}))(t)
	}
	list := must(sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{
		IncludePlannedDeletion: true, SortBy: "name", Filters: []*cofferv1.Filter{{Key: "name", Values: []string{"e2e/keep/"}}},
	}))(t)
	for _, e := range list.GetSecretList() {
		e.LastAccessedDate = nil
	}
	out["list"] = list
	return out
}

// TestRestartKeepsData stops a node with SIGTERM and starts it again on the
// same data directory and root key: everything must read back identically.
// Last-accessed days are flushed only hourly here, so the reads made just
// before the stop must be written by the clean shutdown itself.
func TestRestartKeepsData(t *testing.T) {
	t.Parallel()
	n := startNode(t, t.TempDir(), withAccessFlushInterval(time.Hour))
	ctx := t.Context()
	sm := n.sm

	const (
		db     = "e2e/keep/db"
		binary = "e2e/keep/binary"
		gone   = "e2e/keep/scheduled"
		forced = "e2e/keep/forced"
		doc    = `{"Version":"2012-10-17","Statement":[{"Sid":"App","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/app"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`
	)
	tok1, tok2, tok3, tok4 := newToken(t), newToken(t), newToken(t), newToken(t)
	dbResp := must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: db, ClientRequestToken: tok1, SecretString: ptr("db-v1"),
		Description: "survives restarts", Tags: []*cofferv1.Tag{{Key: "env", Value: "prod"}, {Key: "team", Value: "db"}}}))(t)
	must(sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: db, ClientRequestToken: tok2, SecretString: ptr("db-v2")}))(t)
	must(sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: db, ClientRequestToken: tok3, SecretString: ptr("db-v3"), VersionStages: []string{"AWSPENDING", "green"}}))(t)
	must(sm.UpdateSecret(ctx, &cofferv1.UpdateSecretRequest{SecretId: db, ClientRequestToken: tok4, SecretString: ptr("db-v4")}))(t)
	must(sm.UpdateSecretVersionStage(ctx, &cofferv1.UpdateSecretVersionStageRequest{SecretId: db, VersionStage: "blue", MoveToVersionId: tok1}))(t)
	must(sm.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: db, ResourcePolicy: doc}))(t)
	must(sm.TagResource(ctx, &cofferv1.TagResourceRequest{SecretId: db, Tags: []*cofferv1.Tag{{Key: "owner", Value: "alice"}}}))(t)

	rawBinary := []byte{0xde, 0xad, 0x00, 0xbe, 0xef}
	must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: binary, ClientRequestToken: newToken(t), SecretBinary: rawBinary}))(t)
	must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: gone, ClientRequestToken: newToken(t), SecretString: ptr("scheduled")}))(t)
	must(sm.DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: gone, RecoveryWindowInDays: ptr(int64(10))}))(t)
	must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: forced, ClientRequestToken: newToken(t), SecretString: ptr("forced")}))(t)
	must(sm.DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: forced, ForceDeleteWithoutRecovery: ptr(true)}))(t)

	live, deleted := []string{db, binary}, []string{gone}
	readDay := utcMidnight(time.Now())
	before := capture(t, sm, live, deleted)

	n.restart()
	sm = n.sm

	after := capture(t, sm, live, deleted)
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if !proto.Equal(before[k], after[k]) {
			t.Errorf("%s changed across the restart:\nbefore: %s\nafter:  %s", k, prototext.Format(before[k]), prototext.Format(after[k]))
		}
	}
	if len(after) != len(before) {
		t.Errorf("read %d results after the restart, %d before", len(after), len(before))
	}
	// The capture must hold what was written, or equality proves nothing.
	if got := after["current "+db].(*cofferv1.GetSecretValueResponse); got.GetSecretString() != "db-v4" || got.GetVersionId() != tok4 || got.GetArn() != dbResp.GetArn() {
		t.Errorf("current value of %s after restart = %v", db, got)
	}
	wantStages(t, sm, db, map[string][]string{tok1: {"blue"}, tok2: {"AWSPREVIOUS"}, tok3: {"AWSPENDING", "green"}, tok4: {"AWSCURRENT"}})
	if d := must(sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: db}))(t); !maps.Equal(tagMap(d.GetTags()), map[string]string{"env": "prod", "team": "db", "owner": "alice"}) {
		t.Errorf("after restart %s has tags %v", db, tagMap(d.GetTags()))
	}
	// Reads made before the stop were recorded by the shutdown's flush.
	for _, id := range live {
		d := must(sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: id}))(t)
		if got := d.GetLastAccessedDate(); got == nil || got.AsTime().Before(readDay) {
			t.Errorf("after restart %s has LastAccessedDate %v, want the day of the reads before the stop, %v", id, got, readDay)
		}
		vs := must(sm.ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: id, IncludeDeprecated: true}))(t)
		for _, v := range vs.GetVersions() {
			if v.GetLastAccessedDate() == nil {
				t.Errorf("after restart version %s of %s has no LastAccessedDate, though it was read before the stop", v.GetVersionId(), id)
			}
		}
	}
	if d := must(sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: gone}))(t); d.GetDeletedDate() == nil {
		t.Errorf("%s is no longer scheduled for deletion after the restart", gone)
	}
	_, err := sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: forced})
	wantType(t, err, "ResourceNotFoundException")

	// The CLI reads the same.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{db}, "db-v4\n"},
		{[]string{db, "--stage", "AWSPREVIOUS"}, "db-v2\n"},
		{[]string{db, "--stage", "green"}, "db-v3\n"},
		{[]string{dbResp.GetArn(), "--version-id", tok1}, "db-v1\n"},
		{[]string{binary}, string(rawBinary)},
	} {
		out, errOut, code := n.cli(t, append([]string{"secrets", "get", "--value-only"}, c.args...)...)
		if code != 0 || out != c.want {
			t.Errorf("coffer secrets get --value-only %v = %q (exit %d, %s), want %q", c.args, out, code, errOut, c.want)
		}
	}
	out, errOut, code := n.cli(t, "secrets", "describe", db, "-o", "json")
	var d describeJSON
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil {
		t.Fatalf("describe -o json: exit %d\n%s%s", code, out, errOut)
	}
	if d.ARN != dbResp.GetArn() || d.Description != "survives restarts" || !maps.Equal(d.tags(), map[string]string{"env": "prod", "team": "db", "owner": "alice"}) ||
		!maps.EqualFunc(d.stages(), map[string][]string{tok1: {"blue"}, tok2: {"AWSPREVIOUS"}, tok3: {"AWSPENDING", "green"}, tok4: {"AWSCURRENT"}}, slices.Equal) {
		t.Errorf("describe after restart = %+v", d)
	}
	var pol struct {
		ResourcePolicy string `json:"resourcePolicy"`
	}
	out, _, code = n.cli(t, "secrets", "policy", "get", db, "-o", "json")
	if code != 0 || json.Unmarshal([]byte(out), &pol) != nil || pol.ResourcePolicy != doc {
		t.Errorf("policy get after restart: exit %d\n%s", code, out)
	}

	// And the restarted node still takes writes.
	put := must(sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: db, ClientRequestToken: newToken(t), SecretString: ptr("db-v5")}))(t)
	wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: db}, put.GetVersionId(), "db-v5")
}

// TestRestartWithAnotherRootKeyFails starts a node's data directory with a
// root key other than the one that sealed it. The node must refuse to start,
// and must start again, with the data intact, once the right key is back.
func TestRestartWithAnotherRootKeyFails(t *testing.T) {
	t.Parallel()
	n := startNode(t, t.TempDir())
	const name = "e2e/key/sealed"
	created := must(n.sm.CreateSecret(t.Context(), &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: newToken(t), SecretString: ptr("only for the right key")}))(t)
	n.stop()

	rightKey := n.keyFile + ".right"
	if err := os.Rename(n.keyFile, rightKey); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin.cofferd, "keygen", n.keyFile).CombinedOutput(); err != nil {
		t.Fatalf("cofferd keygen: %v\n%s", err, out)
	}
	if err := n.launch(); err == nil {
		v, gerr := n.sm.GetSecretValue(t.Context(), &cofferv1.GetSecretValueRequest{SecretId: name})
		t.Errorf("cofferd started with a root key other than the one that sealed its data, and GetSecretValue answered %q, %v; "+
			"want it to refuse to start", v.GetSecretString(), gerr)
		n.stop()
	} else if code := n.proc.ProcessState.ExitCode(); code != 1 || !strings.Contains(tail(n.readLog(), 5), "keyring") {
		t.Errorf("with the wrong root key cofferd exited %d, want 1 with a keyring error; log:\n%s", code, tail(n.readLog(), 5))
	}

	if err := os.Rename(rightKey, n.keyFile); err != nil {
		t.Fatal(err)
	}
	n.start()
	wantValue(t, n.sm, &cofferv1.GetSecretValueRequest{SecretId: name}, created.GetVersionId(), "only for the right key")
}
