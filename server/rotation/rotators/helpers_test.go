package rotators_test

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/cofferhq/coffer/node"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/rotation"
	"github.com/cofferhq/coffer/server/rotation/rotators"
	"github.com/cofferhq/coffer/server/rotation/rotators/dbtest"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
)

// startCoffer starts a real single Coffer node in-process and returns its
// API service, which the rotators call as their SecretsAPI.
func startCoffer(t *testing.T) *server.Service {
	t.Helper()
	opts := clustertest.SingleNodeOptions(t, t.TempDir())
	// The engine looks for due work often, so RotateSecret tests finish
	// promptly; the direct-step tests never enable rotation.
	opts.Rotation = rotation.Config{Interval: 50 * time.Millisecond}
	opts.Rotators = rotators.Builtin
	n, err := node.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return n.Service()
}

// createSecret stores value as a new secret and returns its ARN and first
// version id.
func createSecret(t *testing.T, svc *server.Service, name, value string) (arn, versionID string) {
	t.Helper()
	out, err := svc.CreateSecret(context.Background(), &cofferv1.CreateSecretRequest{
		Name: name, ClientRequestToken: uuid.NewString(), SecretString: &value,
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.GetArn(), out.GetVersionId()
}

// rotate runs the four steps for a new token, failing t on any error.
func rotate(t *testing.T, fn rotation.Function, secretID string) string {
	t.Helper()
	token := uuid.NewString()
	for _, step := range rotation.Steps {
		if err := fn.Invoke(context.Background(), rotation.Event{Step: step, SecretID: secretID, ClientRequestToken: token}); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	return token
}

// creds is the part of an RDS secret a client uses to log in.
type creds struct {
	VersionID string
	Username  string `json:"username"`
	Password  string `json:"password"`
	MasterARN string `json:"masterarn"`
}

func readCreds(ctx context.Context, api rotation.SecretsAPI, id, versionID, stage string) (creds, error) {
	out, err := api.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: id, VersionId: versionID, VersionStage: stage})
	if err != nil {
		return creds{}, err
	}
	var c creds
	if err := json.Unmarshal([]byte(out.GetSecretString()), &c); err != nil {
		return creds{}, err
	}
	c.VersionID = out.GetVersionId()
	return c, nil
}

func mustCreds(t *testing.T, api rotation.SecretsAPI, id, stage string) creds {
	t.Helper()
	c, err := readCreds(context.Background(), api, id, "", stage)
	if err != nil {
		t.Fatalf("read %s: %v", stage, err)
	}
	return c
}

// labels returns the secret's versions and their labels, sorted, with
// AWSPENDING left out: AWS leaves it on the version a rotation finished,
// and the engine may clear it, so the tests accept both.
func labels(t *testing.T, api rotation.SecretsAPI, id string) map[string][]string {
	t.Helper()
	desc, err := api.DescribeSecret(context.Background(), &cofferv1.DescribeSecretRequest{SecretId: id})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for v, st := range desc.GetVersionIdsToStages() {
		var ls []string
		for _, l := range st.GetStages() {
			if l != "AWSPENDING" {
				ls = append(ls, l)
			}
		}
		sort.Strings(ls)
		if len(ls) > 0 {
			out[v] = ls
		}
	}
	return out
}

// wantLabels checks AWSCURRENT is on current, AWSPREVIOUS on previous and
// nothing else carries a label, and that AWSPENDING, if left, is only on
// the current version.
func wantLabels(t *testing.T, api rotation.SecretsAPI, id, current, previous string) {
	t.Helper()
	want := map[string][]string{current: {"AWSCURRENT"}}
	if previous != "" {
		want[previous] = []string{"AWSPREVIOUS"}
	}
	got := labels(t, api, id)
	if len(got) != len(want) {
		t.Fatalf("labels = %v, want %v", got, want)
	}
	for v, ls := range want {
		if !slices.Equal(got[v], ls) {
			t.Fatalf("labels = %v, want %v", got, want)
		}
	}
	desc, err := api.DescribeSecret(context.Background(), &cofferv1.DescribeSecretRequest{SecretId: id})
	if err != nil {
		t.Fatal(err)
	}
	for v, st := range desc.GetVersionIdsToStages() {
		if slices.Contains(st.GetStages(), "AWSPENDING") && v != current {
			t.Fatalf("AWSPENDING left on version %s, which is not AWSCURRENT (%s)", v, current)
		}
	}
}

func wantLogin(t *testing.T, db *dbtest.Server, user, password string) {
	t.Helper()
	if err := db.Login(context.Background(), user, password); err != nil {
		t.Fatalf("login as %s: %v", user, err)
	}
}

func wantLoginRefused(t *testing.T, db *dbtest.Server, user, password string) {
	t.Helper()
	err := db.Login(context.Background(), user, password)
	if !dbtest.IsAuthError(err) {
		t.Fatalf("login as %s with an old password: err = %v, want it refused", user, err)
	}
}

// wantNoPassword fails t when msg contains any of the passwords.
func wantNoPassword(t *testing.T, msg string, passwords ...string) {
	t.Helper()
	for _, pw := range passwords {
		if pw != "" && strings.Contains(msg, pw) {
			t.Fatalf("error message contains a password: %s", msg)
		}
	}
}
