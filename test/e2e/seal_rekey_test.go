package e2e

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// unsealWith enters shares on a sealed node until it answers unsealed.
func unsealWith(t *testing.T, n *node, shares []string) {
	t.Helper()
	for _, s := range shares {
		out, errOut, code := n.cli(t, "operator", "unseal", s)
		if code != 0 {
			t.Fatalf("unseal: exit %d %q %q", code, out, errOut)
		}
		if strings.Contains(out, "unsealed") {
			return
		}
	}
	t.Fatalf("%d shares did not unseal the node", len(shares))
}

// TestShamirRekey: a running node's Shamir seal is re-split from 3-of-5 to
// 2-of-3 with `coffer operator rekey`. A rekey whose new shares are lost
// is cancelled with nothing changed; a holder sees who started a rekey and
// where the shares go before anything is sent (--status, --yes); a wrong
// current share discards the ones entered, a nonce of another rekey is
// refused, three current shares hand out the new ones, and seal.json
// changes only once two of them are entered back (one of a cancelled
// rekey does not combine); the node keeps serving throughout, its seal.json names the
// new split with the same check (the root key did not change), and after
// a restart two new shares unseal it with the data intact, while two old
// shares do not. No share reaches the log or the audit trail.
func TestShamirRekey(t *testing.T) {
	t.Parallel()
	var newShares []string
	starts := 0
	onSealed := func(n *node) {
		t.Helper()
		starts++
		if starts == 1 {
			unsealWith(t, n, n.shares[:3])
			return
		}
		// Two old shares do not combine under the new 2-of-3 seal.
		if _, errOut, code := n.cli(t, "operator", "unseal", n.shares[0]); code != 0 {
			t.Fatalf("old share 1: %q", errOut)
		}
		if _, errOut, code := n.cli(t, "operator", "unseal", n.shares[1]); code == 0 || !strings.Contains(errOut, "do not combine") {
			t.Fatalf("two old shares after a rekey: exit %d %q, want a refusal", code, errOut)
		}
		unsealWith(t, n, []string{newShares[2], newShares[0]})
	}
	n := startNode(t, t.TempDir(), func(o *nodeOptions) { o.onSealed = onSealed })
	ctx := t.Context()
	must(n.sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "rekey/one", ClientRequestToken: newToken(t), SecretString: ptr("kept across a rekey")}))(t)
	before, err := os.ReadFile(filepath.Join(n.dataDir, "seal.json"))
	if err != nil {
		t.Fatal(err)
	}

	if out, errOut, code := n.cli(t, "operator", "seal-status"); code != 0 || !strings.Contains(out, "false") || !strings.Contains(out, "shamir") {
		t.Fatalf("seal-status of a running node: exit %d %q %q", code, out, errOut)
	}
	// enterCurrent enters current shares (by index) until the node hands
	// out the new shares, and returns them with the verification nonce.
	enterCurrent := func(nonce string, ks ...int) (shares []string, verifyNonce string) {
		t.Helper()
		var out string
		for _, k := range ks {
			var errOut string
			var code int
			out, errOut, code = n.cli(t, "operator", "rekey", "--nonce", nonce, "--yes", n.shares[k])
			if code != 0 {
				t.Fatalf("rekey share %d: exit %d %q %q", k+1, code, out, errOut)
			}
			if strings.Contains(out, "new shares:") {
				break
			}
		}
		for _, line := range strings.Split(out, "\n") {
			if _, share, ok := strings.Cut(line, ": "); ok && strings.HasPrefix(line, "share ") {
				shares = append(shares, share)
			}
		}
		_, rest, ok := strings.Cut(out, "--verify --nonce ")
		if len(shares) != 3 || !ok {
			t.Fatalf("rekey printed %d new shares, want 3 and the verification nonce:\n%s", len(shares), out)
		}
		return shares, strings.Fields(rest)[0]
	}
	sealUnchanged := func(when string) {
		t.Helper()
		if now, err := os.ReadFile(filepath.Join(n.dataDir, "seal.json")); err != nil || string(now) != string(before) {
			t.Fatalf("seal.json %s: %v\n%s\nwant it unchanged:\n%s", when, err, now, before)
		}
	}
	initRekey := func() string {
		t.Helper()
		out, errOut, code := n.cli(t, "operator", "rekey", "--init", "--shares", "3", "--threshold", "2")
		if code != 0 || !strings.Contains(out, "nonce: ") {
			t.Fatalf("rekey --init: exit %d %q %q", code, out, errOut)
		}
		return strings.Fields(out[strings.Index(out, "nonce: ")+len("nonce: "):])[0]
	}

	// A rekey whose new shares never reach their holders (the answer was
	// lost) is cancelled: nothing changed, the current shares still rule.
	nonce := initRekey()
	lost, verifyNonce := enterCurrent(nonce, 0, 1, 2)
	sealUnchanged("once the new shares were handed out")
	if _, errOut, code := n.cli(t, "operator", "rekey", "--cancel"); code == 0 || !strings.Contains(errOut, "--nonce") {
		t.Fatalf("cancel without the nonce: exit %d %q, want a refusal", code, errOut)
	}
	if _, errOut, code := n.cli(t, "operator", "rekey", "--cancel", "--nonce", nonce); code == 0 || !strings.Contains(errOut, "nonce") {
		t.Fatalf("cancel with the first phase's nonce: exit %d %q, want a refusal", code, errOut)
	}
	if out, errOut, code := n.cli(t, "operator", "rekey", "--cancel", "--nonce", verifyNonce); code != 0 || !strings.Contains(out, "cancelled") {
		t.Fatalf("cancel: exit %d %q %q", code, out, errOut)
	}
	sealUnchanged("after a cancelled rekey")

	nonce = initRekey()
	if _, errOut, code := n.cli(t, "operator", "rekey", "--init", "--shares", "3", "--threshold", "2"); code == 0 || !strings.Contains(errOut, "in progress") {
		t.Fatalf("a second rekey --init: exit %d %q, want a refusal", code, errOut)
	}
	// A holder sees the rekey before consenting, and nothing is sent
	// without --yes.
	if out, errOut, code := n.cli(t, "operator", "rekey", "--status"); code != 0 || !strings.Contains(out, "started by ") || !strings.Contains(out, "IN CLEAR") || !strings.Contains(out, "0 of 3") {
		t.Fatalf("rekey --status: exit %d %q %q", code, out, errOut)
	}
	if _, errOut, code := n.cli(t, "operator", "rekey", "--nonce", nonce, n.shares[0]); code == 0 || !strings.Contains(errOut, "started by") || !strings.Contains(errOut, "--yes") {
		t.Fatalf("a share without --yes: exit %d %q, want the rekey shown and nothing sent", code, errOut)
	}
	if _, errOut, code := n.cli(t, "operator", "rekey", "--nonce", "00"+nonce[2:], "--yes", n.shares[0]); code == 0 || !strings.Contains(errOut, "nonce") {
		t.Fatalf("another nonce: exit %d %q, want a refusal", code, errOut)
	}
	for i, k := range []int{4, 1} {
		out, errOut, code := n.cli(t, "operator", "rekey", "--nonce", nonce, "--yes", n.shares[k])
		if code != 0 || !strings.Contains(out, string(rune('1'+i))+" of 3") {
			t.Fatalf("rekey share %d: exit %d %q %q", k+1, code, out, errOut)
		}
	}
	wrong := make([]byte, 33)
	wrong[0], wrong[7] = 9, 1
	if _, errOut, code := n.cli(t, "operator", "rekey", "--nonce", nonce, "--yes", base64.StdEncoding.EncodeToString(wrong)); code == 0 || !strings.Contains(errOut, "do not combine") {
		t.Fatalf("a wrong share: exit %d %q, want a refusal", code, errOut)
	}
	// The node serves during the rekey.
	if got := must(n.sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "rekey/one"}))(t); got.GetSecretString() != "kept across a rekey" {
		t.Fatalf("read during the rekey: %q", got.GetSecretString())
	}
	newShares, verifyNonce = enterCurrent(nonce, 0, 3, 2)
	sealUnchanged("before the new shares were entered back")
	if _, errOut, code := n.cli(t, "operator", "rekey", "--verify", "--nonce", verifyNonce, "--yes", lost[0]); code != 0 {
		t.Fatalf("verify, first share: exit %d %q", code, errOut)
	}
	if _, errOut, code := n.cli(t, "operator", "rekey", "--verify", "--nonce", verifyNonce, "--yes", newShares[1]); code == 0 || !strings.Contains(errOut, "do not combine") {
		t.Fatalf("verify with a share of the cancelled rekey: exit %d %q, want a refusal", code, errOut)
	}
	sealUnchanged("after a failed verification")
	out, errOut, code := "", "", 0
	for _, s := range []string{newShares[1], newShares[2]} {
		if out, errOut, code = n.cli(t, "operator", "rekey", "--verify", "--nonce", verifyNonce, "--yes", s); code != 0 {
			t.Fatalf("verify: exit %d %q %q", code, out, errOut)
		}
	}
	if !strings.Contains(out, "rekeyed") {
		t.Fatalf("after two new shares entered back: %q", out)
	}
	after, err := os.ReadFile(filepath.Join(n.dataDir, "seal.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(after), `"threshold": 2`) || !strings.Contains(string(after), `"shares": 3`) || checkOf(t, before) != checkOf(t, after) {
		t.Fatalf("seal.json after the rekey:\n%s\nbefore:\n%s", after, before)
	}
	if out, _, _ := n.cli(t, "operator", "seal-status"); !strings.Contains(out, "3") || !strings.Contains(out, "/2") {
		t.Fatalf("seal-status after the rekey: %q", out)
	}

	n.restart()
	if starts != 2 {
		t.Fatalf("the node started sealed %d times, want 2", starts)
	}
	if got := must(n.sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "rekey/one"}))(t); got.GetSecretString() != "kept across a rekey" {
		t.Fatalf("after the rekey and a restart: %q", got.GetSecretString())
	}
	logs := string(n.readLog())
	audit := readAll(t, n.dataDir)
	for _, s := range append(append([]string{}, n.shares...), newShares...) {
		if strings.Contains(logs, s) || strings.Contains(audit, s) {
			t.Fatal("a key share is in the node's log or data directory")
		}
	}
}

// checkOf is seal.json's check value.
func checkOf(t *testing.T, sealJSON []byte) string {
	t.Helper()
	_, rest, ok := strings.Cut(string(sealJSON), `"check":`)
	if !ok {
		t.Fatalf("seal.json without a check: %s", sealJSON)
	}
	return strings.TrimSpace(strings.SplitN(rest, "\n", 2)[0])
}

// readAll concatenates every file under dir (the audit trail, the Raft log,
// the state), for a scan.
func readAll(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		b.Write(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
