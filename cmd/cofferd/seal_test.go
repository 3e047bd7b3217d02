package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
	"github.com/cofferhq/coffer/test/testkit"
	"github.com/cofferhq/coffer/test/wait"
)

// Fixed root credentials, so a test can call the API it started.
const (
	testAccessKeyID = "AKIASEALTESTROOT0001"
	testSecretKey   = "seal-test-root-secret-access-key-0001"
)

// rootEnv is env with the fixed root credentials added.
func rootEnv(env map[string]string) map[string]string {
	out := map[string]string{"COFFER_ROOT_ACCESS_KEY_ID": testAccessKeyID, "COFFER_ROOT_SECRET_ACCESS_KEY": testSecretKey}
	for k, v := range env {
		out[k] = v
	}
	return out
}

// rootConn is a connection to the node at addr whose calls are signed
// with the fixed root credentials.
func rootConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		(&grpcsig.Credentials{AccessKeyID: testAccessKeyID, SecretAccessKey: testSecretKey, Region: "us-east-1"}).DialOptions()...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// secretsClient is a Secrets Manager client of the node at addr, signed
// with the fixed root credentials.
func secretsClient(t *testing.T, addr string) cofferv1.SecretsManagerServiceClient {
	t.Helper()
	return cofferv1.NewSecretsManagerServiceClient(rootConn(t, addr))
}

// operatorInit runs `cofferd operator init` in dataDir and returns the
// shares it printed.
func operatorInit(t *testing.T, dataDir string, args ...string) []string {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"operator", "init", "--data-dir", dataDir}, args...)
	if code := run(t.Context(), args, &out, &errOut, func(string) string { return "" }); code != 0 {
		t.Fatalf("cofferd %v: exit %d: %s", args, code, errOut.String())
	}
	return parseShares(out.String())
}

// parseShares reads the "share N: …" lines cofferd printed.
func parseShares(out string) []string {
	var shares []string
	for _, line := range strings.Split(out, "\n") {
		if _, share, ok := strings.Cut(line, ": "); ok && strings.HasPrefix(line, "share ") {
			shares = append(shares, share)
		}
	}
	return shares
}

// shamirArgs are serverArgs with the shamir seal and a metrics listener.
func shamirArgs(t *testing.T, dir, grpcAddr, metricsAddr string) []string {
	t.Helper()
	return []string{"server", "--node-id", "n1", "--data-dir", filepath.Join(dir, "data"), "--seal-type", "shamir",
		"--grpc-addr", grpcAddr, "--aws-addr", "", "--raft-addr", testkit.FreeAddr(t),
		"--log-level", "info", "--maintenance-interval", "1h", "--bootstrap", "true", "--metrics-addr", metricsAddr}
}

// unsealShares enters shares on the sealed node at addr and returns the
// last answer.
func unsealShares(t *testing.T, addr string, shares ...string) *cofferv1.UnsealResponse {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	seal := cofferv1.NewSealServiceClient(conn)
	var resp *cofferv1.UnsealResponse
	for _, s := range shares {
		wait.Until(t, readyTimeout, func() error { // the node may still be binding
			resp, err = seal.Unseal(t.Context(), &cofferv1.UnsealRequest{Share: s})
			return err
		})
	}
	return resp
}

// get fetches url and returns the status code and body, or 0 when nothing
// answers.
func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSealedMetricsAndHealth: a node sealed with key shares serves, on its
// metrics address, coffer_sealed 1 and the unseal progress as shares
// arrive, /readyz and /v1/sys/health failing with "sealed", /livez
// passing; once unsealed, the running node's metrics on the same address
// say coffer_sealed 0 with the seal's type.
func TestSealedMetricsAndHealth(t *testing.T) {
	dir := t.TempDir()
	shares := operatorInit(t, filepath.Join(dir, "data"), "--shares", "3", "--threshold", "2")
	grpcAddr, metricsAddr := testkit.FreeAddr(t), testkit.FreeAddr(t)
	r := start(t, nil, shamirArgs(t, dir, grpcAddr, metricsAddr)...)
	base := "http://" + metricsAddr
	wait.True(t, readyTimeout, "the sealed node's metrics", func() bool {
		code, body := get(base + "/metrics")
		return code == 200 && strings.Contains(body, "\ncoffer_sealed 1\n")
	})
	_, body := get(base + "/metrics")
	for _, want := range []string{`coffer_seal_info{type="shamir"} 1`, "coffer_unseal_progress_shares 0", "coffer_unseal_threshold_shares 2"} {
		if !strings.Contains(body, want) {
			t.Errorf("sealed /metrics lacks %q", want)
		}
	}
	if code, body := get(base + "/readyz"); code != 503 || !strings.Contains(body, "unsealed") {
		t.Errorf("sealed /readyz: %d %q, want 503 naming the unsealed check", code, body)
	}
	if code, _ := get(base + "/livez"); code != 200 {
		t.Errorf("sealed /livez: %d, want 200", code)
	}
	code, body := get(base + "/v1/sys/health")
	var sys struct {
		Sealed bool `json:"sealed"`
	}
	if err := json.Unmarshal([]byte(body), &sys); code != 503 || err != nil || !sys.Sealed {
		t.Errorf("sealed /v1/sys/health: %d %q, want 503 and sealed true", code, body)
	}

	if resp := unsealShares(t, grpcAddr, shares[2]); !resp.GetSealed() || resp.GetProgress() != 1 {
		t.Fatalf("one share of two: %v", resp)
	}
	if _, body := get(base + "/metrics"); !strings.Contains(body, "coffer_unseal_progress_shares 1\n") || !strings.Contains(body, "coffer_sealed 1\n") {
		t.Errorf("after one share, /metrics does not say 1 share held and sealed")
	}
	if resp := unsealShares(t, grpcAddr, shares[0]); resp.GetSealed() {
		t.Fatalf("two shares of two: %v, want unsealed", resp)
	}
	r.waitFor(t, &r.stderr, "node ready")
	wait.True(t, readyTimeout, "the running node's metrics", func() bool {
		code, body := get(base + "/metrics")
		return code == 200 && strings.Contains(body, "\ncoffer_sealed 0\n") && strings.Contains(body, `coffer_seal_info{type="shamir"} 1`)
	})
	if _, body := get(base + "/metrics"); strings.Contains(body, "coffer_unseal_progress_shares") {
		t.Errorf("an unsealed node still reports unseal progress")
	}
	for _, s := range shares {
		if strings.Contains(r.stderr.String(), s) {
			t.Fatal("a key share is in cofferd's log")
		}
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// assertNoKey fails if key (raw, base64 or hex) is in any file under dir
// or in logs: the seal's root key must exist only in memory.
func assertNoKey(t *testing.T, dir, logs string, key []byte) {
	t.Helper()
	needles := map[string][]byte{"raw": key, "base64": []byte(base64.StdEncoding.EncodeToString(key)),
		"raw base64": []byte(base64.RawStdEncoding.EncodeToString(key)), "hex": []byte(hex.EncodeToString(key))}
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for enc, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s holds the root key (%s)", path, enc)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 {
		t.Fatalf("searched only %d files under %s", files, dir)
	}
	for enc, n := range needles {
		if bytes.Contains([]byte(logs), n) {
			t.Errorf("the log holds the root key (%s)", enc)
		}
	}
}
