package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/rotation"
	"github.com/cofferhq/coffer/test/wait"
)

// TestCLIRotation drives rotation through the coffer binary against a real
// cofferd: register an HTTP function, rotate, watch a failing rotation in
// describe, see another rotate refused, cancel it, and rotate again to the
// end. The function stores its new value through the node's gRPC API.
func TestCLIRotation(t *testing.T) {
	t.Parallel()
	n := startNode(t, t.TempDir())
	var failSet atomic.Bool
	fn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if rotation.VerifyRequest(r, body, []byte("e2e-rotation-hmac-key"), "rot") != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var ev rotation.Event
		_ = json.Unmarshal(body, &ev)
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		var err error
		switch ev.Step {
		case rotation.StepCreateSecret:
			_, err = n.sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: ev.SecretID, ClientRequestToken: ev.ClientRequestToken,
				SecretString: ptr("rotated-" + ev.ClientRequestToken), VersionStages: []string{"AWSPENDING"}})
		case rotation.StepSetSecret:
			if failSet.Load() {
				w.WriteHeader(http.StatusBadGateway)
				_, _ = io.WriteString(w, `{"errorMessage":"database unreachable"}`)
				return
			}
		case rotation.StepFinishSecret:
			var d *cofferv1.DescribeSecretResponse
			if d, err = n.sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: ev.SecretID}); err == nil {
				from := ""
				for id, s := range d.GetVersionIdsToStages() {
					if strings.Contains(strings.Join(s.GetStages(), ","), "AWSCURRENT") {
						from = id
					}
				}
				_, err = n.sm.UpdateSecretVersionStage(ctx, &cofferv1.UpdateSecretVersionStageRequest{SecretId: ev.SecretID,
					VersionStage: "AWSCURRENT", MoveToVersionId: ev.ClientRequestToken, RemoveFromVersionId: from})
			}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	t.Cleanup(fn.Close)

	ok := func(t *testing.T, args ...string) string {
		t.Helper()
		out, errOut, code := n.cli(t, args...)
		if code != 0 {
			t.Fatalf("coffer %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}

	out := ok(t, "rotation", "register-function", "rot", fn.URL, "--secret", "e2e-rotation-hmac-key", "--insecure-http")
	fnARN := field(t, out, "ARN")
	if !strings.HasSuffix(fnARN, ":function:rot") || field(t, out, "Signed") != "true" {
		t.Fatalf("register-function printed:\n%s", out)
	}
	if out := ok(t, "rotation", "list-functions"); !strings.Contains(out, "coffer:rotator/postgresql-multi-user") || !strings.Contains(out, fnARN) {
		t.Fatalf("list-functions printed:\n%s", out)
	}
	ok(t, "secrets", "create", "e2e/rot", "--value", "v0")

	// A rotation that fails in setSecret: visible in describe, AWSCURRENT untouched.
	failSet.Store(true)
	tok := ok(t, "secrets", "rotate", "e2e/rot", "--function", "rot", "--days", "7")
	token := field(t, tok, "VersionId")
	wait.Until(t, time.Minute, func() error {
		out := ok(t, "secrets", "describe", "e2e/rot")
		if !strings.Contains(out, "failed attempt(s); last in setSecret") || !strings.Contains(out, "HTTP 502: database unreachable") {
			return fmt.Errorf("describe does not show the failure yet:\n%s", out)
		}
		return nil
	})
	if got := ok(t, "secrets", "get", "e2e/rot", "--value-only"); got != "v0\n" {
		t.Fatalf("AWSCURRENT during the failing rotation = %q", got)
	}
	if _, errOut, code := n.cli(t, "secrets", "rotate", "e2e/rot"); code != 5 || !strings.Contains(errOut, "A previous rotation isn't complete.") {
		t.Fatalf("rotate during a rotation: exit %d, %s", code, errOut)
	}
	if out := ok(t, "secrets", "cancel-rotation", "e2e/rot"); field(t, out, "VersionId") != token {
		t.Fatalf("cancel-rotation printed:\n%s", out)
	}
	// The abandoned AWSPENDING version is the caller's to clean up, as in AWS.
	ok(t, "secrets", "label", "e2e/rot", "AWSPENDING", "--remove-from", token)

	// A fixed function rotates to the end.
	failSet.Store(false)
	token = field(t, ok(t, "secrets", "rotate", "e2e/rot"), "VersionId")
	wait.Until(t, time.Minute, func() error {
		if got := ok(t, "secrets", "get", "e2e/rot", "--value-only"); got != "rotated-"+token+"\n" {
			return fmt.Errorf("AWSCURRENT is %q", got)
		}
		return nil
	})
	out = ok(t, "secrets", "describe", "e2e/rot")
	if field(t, out, "RotationEnabled") != "true" || field(t, out, "RotationLambdaARN") != fnARN ||
		field(t, out, "RotationRules") != "every 7 days" || field(t, out, "NextRotationDate") == "" || field(t, out, "LastRotatedDate") == "" ||
		strings.Contains(out, "RotationStatus") {
		t.Fatalf("describe after the rotation:\n%s", out)
	}
}
