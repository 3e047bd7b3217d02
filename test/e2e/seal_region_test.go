package e2e

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/wait"
)

// TestShamirRegion: a 3-node region sealed with 5 shares, threshold 3 (one
// seal.json copied to every node, as an operator would), forms once each
// node is unsealed with 3 shares; restarted, every node is sealed again
// and serves only health and unseal; 2 shares do not unseal a node, a
// wrong share is refused, and 3 of 5 (another three on each node) do, and
// the region serves what it held.
func TestShamirRegion(t *testing.T) {
	r := newSharedRegion(t, "n1", "n2", "n3")
	servers := map[string]*regionServer{}
	ids := []string{"n1", "n2", "n3"}
	for _, id := range ids {
		servers[id] = r.server(id)
	}
	out, err := exec.Command(bin.cofferd, "operator", "init", "--data-dir", servers["n1"].dataDir, "--shares", "5", "--threshold", "3").CombinedOutput()
	if err != nil {
		t.Fatalf("cofferd operator init: %v\n%s", err, out)
	}
	var shares []string
	for _, line := range strings.Split(string(out), "\n") {
		if _, share, ok := strings.Cut(line, ": "); ok && strings.HasPrefix(line, "share ") {
			shares = append(shares, share)
		}
	}
	if len(shares) != 5 {
		t.Fatalf("operator init printed %d shares:\n%s", len(shares), out)
	}
	seal, err := os.ReadFile(filepath.Join(servers["n1"].dataDir, "seal.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[1:] {
		if err := os.MkdirAll(servers[id].dataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(servers[id].dataDir, "seal.json"), seal, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Each node takes another three of the five.
	subsets := map[string][]int{"n1": {0, 1, 2}, "n2": {2, 3, 4}, "n3": {4, 0, 3}}
	unseal := func(s *regionServer, probe bool) {
		t.Helper()
		cli := func(args ...string) (string, string, int) {
			return runCLIWith(t, nil, append([]string{"--endpoint", s.grpcAddr}, args...)...)
		}
		wait.Until(t, formationTimeout, func() error {
			if s.exitedEarly() {
				t.Fatalf("%s exited: %s", s.id, tail(s.log(), 20))
			}
			_, stderr, code := cli("operator", "seal-status")
			if code != 0 {
				return &waitErr{stderr}
			}
			return nil
		})
		conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if st, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("%s sealed: health %v %v, want NOT_SERVING", s.id, st, err)
		}
		if _, err := cofferv1.NewSecretsManagerServiceClient(conn).ListSecrets(t.Context(), &cofferv1.ListSecretsRequest{}); err == nil {
			t.Fatalf("%s answered ListSecrets while sealed", s.id)
		}
		set := subsets[s.id]
		if probe {
			for _, k := range set[:2] {
				if out, stderr, code := cli("operator", "unseal", shares[k]); code != 0 || !strings.Contains(out, "sealed: ") {
					t.Fatalf("%s share %d: %q %q", s.id, k+1, out, stderr)
				}
			}
			if st, _, _ := cli("operator", "seal-status"); !strings.Contains(st, "2/3") {
				t.Fatalf("%s after two shares: %q, want sealed with 2/3", s.id, st)
			}
			wrong := make([]byte, 33)
			wrong[0], wrong[9] = 7, 42
			if _, stderr, code := cli("operator", "unseal", base64.StdEncoding.EncodeToString(wrong)); code == 0 || !strings.Contains(stderr, "do not combine") {
				t.Fatalf("%s took a wrong share: exit %d %q", s.id, code, stderr)
			}
		}
		for i, k := range set {
			out, stderr, code := cli("operator", "unseal", shares[k])
			if code != 0 {
				t.Fatalf("%s share %d: exit %d %q", s.id, k+1, code, stderr)
			}
			if unsealed := strings.Contains(out, "unsealed"); unsealed != (i == 2) {
				t.Fatalf("%s after %d shares: %q", s.id, i+1, out)
			}
		}
	}

	for _, id := range ids {
		r.start(servers[id], "--seal-type", "shamir")
	}
	for _, id := range ids {
		unseal(servers[id], false)
	}
	for _, id := range ids {
		servers[id].waitServing()
	}
	creds := checkOneRegion(t, servers)

	for _, id := range ids {
		servers[id].stop()
	}
	for _, id := range ids {
		r.start(servers[id], "--seal-type", "shamir")
	}
	for _, id := range ids {
		unseal(servers[id], true)
	}
	for _, id := range ids {
		servers[id].waitServing()
		if out, stderr, code := servers[id].cli(creds, "secrets", "get", "formation/db", "--value-only"); code != 0 || out != "s3cr3t\n" {
			t.Errorf("after the sealed restart, read through %s: %q, exit %d: %s", id, out, code, stderr)
		}
	}
	for _, id := range ids {
		for _, share := range shares {
			if strings.Contains(string(servers[id].log()), share) {
				t.Fatalf("a key share is in %s's log", id)
			}
		}
	}
}

type waitErr struct{ msg string }

func (e *waitErr) Error() string { return "not answering the seal service yet: " + e.msg }
