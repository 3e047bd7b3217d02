package faults

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
	"github.com/cofferhq/coffer/test/wait"
)

// TestFullDisk: a node whose data directory is a small tmpfs volume fills
// up. Filler files copied into the volume (docker cp) take its space, then
// puts go on until the node refuses one; the refusal must be a definite,
// clear error (never a crash, never an acknowledged write that is then
// missing). Once the filler is removed, the node takes writes again by
// itself, with every acknowledged version readable.
//
// The node is a region of one, started with `docker run` from the same
// image and the us-east-1 keys: a full disk on a follower of the shared
// region would be confounded with the other faults.
func TestFullDisk(t *testing.T) {
	const (
		volSize = 48 << 20
		chunk   = 2 << 20
		value   = 48 << 10
	)
	name := dep.project + "_disk1"
	vol := dep.project + "_disk1_data"
	port := dep.portPrefix + "19"
	_ = docker("rm", "-f", "-v", name)
	_ = docker("volume", "rm", vol)
	mustDocker(t, "volume", "create", "--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
		"--opt", fmt.Sprintf("o=size=%d", volSize), vol)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker", "logs", "--tail", "40", name).CombinedOutput()
			t.Logf("%s log (last lines):\n%s", name, out)
		}
		_ = docker("rm", "-f", "-v", name)
		_ = docker("volume", "rm", vol)
	})
	const keyID, secret = "AKIAFULLDISK00000001", "full-disk-test-secret-access-key-000001"
	mustDocker(t, "run", "-d", "--name", name, "--ulimit", "memlock=8388608:8388608",
		"--network", dep.network("client"), "-p", "127.0.0.1:"+port+":7400",
		"-v", dep.project+"_pki:/pki:ro", "-v", filepath.Join(dep.compose, "us-east-1.yaml")+":/etc/coffer/cofferd.yaml:ro",
		"-v", vol+":/data", "--tmpfs", "/audit:size=256m",
		dep.project+"/cofferd:dev", "server", "--config", "/etc/coffer/cofferd.yaml",
		"--node-id", "disk1", "--bootstrap-expect", "1", "--join=", "--gossip-addr=", "--region-addr=", "--wan-addr=", "--wan-join=",
		"--raft-addr", "127.0.0.1:7401", "--api-advertise-addr", "127.0.0.1:"+port,
		"--audit-path", "/audit/audit.log", "--root-access-key-id", keyID, "--root-secret-access-key", secret)

	ca, err := os.ReadFile(filepath.Join(dep.out, usEast+"-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	creds := &grpcsig.Credentials{AccessKeyID: keyID, SecretAccessKey: secret, Region: usEast}
	conn, err := grpc.NewClient("127.0.0.1:"+port, append(creds.DialOptions(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sm := cofferv1.NewSecretsManagerServiceClient(conn)
	call := func(f func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return f(ctx)
	}
	running := func() {
		t.Helper()
		if out, err := exec.Command("docker", "inspect", "-f", "{{.State.Running}}", name).Output(); err != nil || strings.TrimSpace(string(out)) != "true" {
			t.Fatalf("the node is not running (%s, %v)", out, err)
		}
	}
	wait.Until(t, healTimeout, func() error {
		running()
		return call(func(ctx context.Context) error {
			_, err := sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{MaxResults: proto32(1)})
			return err
		})
	})

	// Take space with filler files that can be removed later.
	dir := t.TempDir()
	chunkFile := filepath.Join(dir, "chunk")
	if err := os.WriteFile(chunkFile, make([]byte, chunk), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Half the volume goes to filler files (removed later to free space),
	// the rest to puts.
	var fillers []string
	for i := range volSize / chunk / 2 {
		f := fmt.Sprintf("/data/filler-%02d", i)
		if err := docker("cp", chunkFile, name+":"+f); err != nil {
			t.Logf("filler %d: %v", i, err)
			fillers = append(fillers, f) // it may hold part of a chunk
			break
		}
		fillers = append(fillers, f)
	}
	t.Logf("%d filler files copied in", len(fillers))

	// Puts until the node refuses one, on secrets of at most 90 versions.
	big := strings.Repeat("x", value)
	var acked []struct{ key, version string }
	var refusal error
	for i := 0; i < 2000 && refusal == nil; i++ {
		key := fmt.Sprintf("disk/%d", i/90)
		var version string
		err := call(func(ctx context.Context) error {
			tok := token("full-disk", i)
			if i%90 == 0 {
				r, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: key, SecretString: proto.String(big), ClientRequestToken: tok})
				version = r.GetVersionId()
				return err
			}
			r, err := sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: key, SecretString: proto.String(big), ClientRequestToken: tok})
			version = r.GetVersionId()
			return err
		})
		if err != nil {
			refusal = err
			break
		}
		acked = append(acked, struct{ key, version string }{key, version})
	}
	if refusal == nil {
		t.Fatalf("%d puts of %d KiB acknowledged on a %d MiB volume: never refused", len(acked), value>>10, volSize>>20)
	}
	t.Logf("after %d acknowledged puts the node refused: %s", len(acked), describe(refusal))
	if unknownOutcome(refusal) && !strings.Contains(strings.ToLower(refusal.Error()), "space") {
		t.Errorf("the refusal does not say why: %s", describe(refusal))
	}
	running()

	// Free the space; the node takes writes again by itself.
	for _, f := range fillers {
		mustDocker(t, "cp", filepath.Join(dir, "empty"), name+":"+f)
	}
	wait.Until(t, healTimeout, func() error {
		return call(func(ctx context.Context) error {
			_, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "disk/after", SecretString: proto.String("after"), ClientRequestToken: token("full-disk-after", 0)})
			return err
		})
	})
	for _, a := range acked {
		if err := call(func(ctx context.Context) error {
			r, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: a.key, VersionId: a.version})
			if err == nil && r.GetSecretString() != big {
				return fmt.Errorf("version %s of %s holds another value", a.version, a.key)
			}
			return err
		}); err != nil {
			t.Errorf("acknowledged %s of %s: %s", a.version, a.key, describe(err))
		}
	}
	logs, _ := exec.Command("docker", "logs", name).CombinedOutput()
	if strings.Contains(string(logs), "panic") {
		t.Errorf("the node's log holds a panic")
	}
}
