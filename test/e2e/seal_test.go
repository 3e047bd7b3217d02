package e2e

import (
	"encoding/base64"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// TestShamirSeal: a node with the shamir seal starts sealed, serving only
// health (NOT_SERVING) and the seal service; two of its five shares do not
// unseal it, a wrong share is refused and discards what was entered, and
// three shares (any three) unseal it, at its first start and after a
// restart, with the data intact.
func TestShamirSeal(t *testing.T) {
	t.Parallel()
	starts := 0
	onSealed := func(n *node) {
		t.Helper()
		starts++
		ctx := t.Context()
		if st, err := healthpb.NewHealthClient(n.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("health of a sealed node: %v %v, want NOT_SERVING", st, err)
		}
		if _, err := n.sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{}); status.Code(err) != codes.Unimplemented {
			t.Fatalf("a sealed node answered ListSecrets: %v; it must serve only health and unseal", err)
		}
		if out, errOut, code := n.cli(t, "operator", "seal-status"); code != 0 || !strings.Contains(out, "0/3") {
			t.Fatalf("coffer operator seal-status: exit %d %q %q", code, out, errOut)
		}
		order := []int{0, 1, 2, 3, 4}
		if starts > 1 {
			order = []int{4, 2, 0, 1, 3} // any three shares unseal
		}
		for i, k := range order[:2] {
			out, errOut, code := n.cli(t, "operator", "unseal", n.shares[k])
			if code != 0 || !strings.Contains(out, "sealed: ") || !strings.Contains(out, string(rune('1'+i))+" of 3") {
				t.Fatalf("unseal share %d: exit %d %q %q", k+1, code, out, errOut)
			}
		}
		// Two shares do not unseal; a wrong third one is refused and the
		// two before it are discarded.
		wrong := make([]byte, 33)
		wrong[0] = 9
		wrong[5] = 1
		if _, errOut, code := n.cli(t, "operator", "unseal", base64.StdEncoding.EncodeToString(wrong)); code == 0 || !strings.Contains(errOut, "do not combine") {
			t.Fatalf("a wrong share: exit %d %q, want a refusal", code, errOut)
		}
		if out, _, _ := n.cli(t, "operator", "seal-status"); !strings.Contains(out, "0/3") {
			t.Fatalf("after a refused combination the node still holds shares: %q", out)
		}
		for _, k := range order[2:] {
			out, errOut, code := n.cli(t, "operator", "unseal", n.shares[k])
			if code != 0 {
				t.Fatalf("unseal share %d: exit %d %q %q", k+1, code, out, errOut)
			}
			if strings.Contains(out, "unsealed") {
				return
			}
		}
		t.Fatal("three shares did not unseal the node")
	}
	n := startNode(t, t.TempDir(), func(o *nodeOptions) { o.onSealed = onSealed })
	ctx := t.Context()
	must(n.sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "sealed/one", ClientRequestToken: newToken(t), SecretString: ptr("kept across seals")}))(t)
	n.restart()
	if starts != 2 {
		t.Fatalf("the node started sealed %d times, want 2", starts)
	}
	if got := must(n.sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "sealed/one"}))(t); got.GetSecretString() != "kept across seals" {
		t.Fatalf("after the restart and unseal: %q", got.GetSecretString())
	}
	for _, share := range n.shares {
		if strings.Contains(string(n.readLog()), share) {
			t.Fatal("a key share is in the node's log")
		}
	}
}
