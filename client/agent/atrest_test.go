package agent_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/client/agent"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
)

// TestAgentCacheAtRest: an agent with a cache at rest, restarted while
// the node is down, still answers what it answered before, with its age;
// a secret Coffer said was gone is not among them; nothing of the value is
// in the directory; with another key the directory is refused, and an
// altered file is answered 502, not served.
func TestAgentCacheAtRest(t *testing.T) {
	const value = `{"password":"at-rest-9f2c7e"}`
	c := clustertest.Start(t, 1)
	createSecret(t, c, "app/db", value)
	createSecret(t, c, "app/gone", "soon deleted")
	dir := filepath.Join(t.TempDir(), "cache")
	key := []byte("a-key-of-more-than-thirty-two-bytes-for-the-test")
	ccfg := client.Config{Watch: true, Retry: client.Retry{MaxAttempts: 2, BaseDelay: 10 * time.Millisecond}, CallTimeout: time.Second}
	tok := []string{"X-Aws-Parameters-Secrets-Token", token}
	withDisk := func(key []byte) agent.Config {
		d, err := agent.OpenDiskCache(dir, key)
		if err != nil {
			t.Fatal(err)
		}
		return agent.Config{Disk: d}
	}

	first := startAgent(t, c, withDisk(key), ccfg)
	a := do(t, "GET", first+"/v1/app/db", tok...)
	if a.status != 200 || a.json["SecretString"] != value || a.header.Get(agent.CacheAgeHeader) != "" {
		t.Fatalf("first read: %d %s", a.status, a.body)
	}
	version := a.json["VersionId"]
	if a := do(t, "GET", first+"/secretsmanager/get?secretId=app/gone", tok...); a.status != 200 {
		t.Fatalf("app/gone: %d %s", a.status, a.body)
	}
	ctx, cancel := clustertest.RPCContext()
	_, err := c.Client(0).DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: "app/gone", ForceDeleteWithoutRecovery: proto.Bool(true)})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if a := do(t, "GET", first+"/secretsmanager/get?secretId=app/gone&refreshNow=true", tok...); a.status != 400 {
		t.Fatalf("app/gone after its deletion: %d %s, want 400", a.status, a.body)
	}

	addr := c.Node(0).Addr()
	c.Stop(0)
	restarted := startAgentAt(t, addr, withDisk(key), ccfg) // a new process: nothing in memory
	a = do(t, "GET", restarted+"/v1/app/db", tok...)
	if a.status != 200 || a.json["SecretString"] != value || a.json["VersionId"] != version || a.header.Get(agent.CacheAgeHeader) == "" {
		t.Fatalf("after a restart with the node down: %d %s (age %q)", a.status, a.body, a.header.Get(agent.CacheAgeHeader))
	}
	if a := do(t, "GET", restarted+"/secretsmanager/get?secretId=app/gone", tok...); a.status != 502 {
		t.Fatalf("app/gone, deleted before the restart: %d %s, want 502", a.status, a.body)
	}
	if a := do(t, "GET", restarted+"/v1/app/db?versionStage=AWSPREVIOUS", tok...); a.status != 502 {
		t.Fatalf("a stage never asked for: %d %s, want 502", a.status, a.body)
	}

	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var entries []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, clear := range []string{"at-rest-9f2c7e", "app/db", "app/gone"} {
			if bytes.Contains(b, []byte(clear)) || strings.Contains(e.Name(), clear) {
				t.Errorf("%s holds %q in clear", e.Name(), clear)
			}
		}
		if strings.HasSuffix(e.Name(), ".entry") {
			entries = append(entries, e.Name())
		}
	}
	if len(entries) != 1 {
		t.Fatalf("entries %v, want app/db's alone", entries)
	}

	if _, err := agent.OpenDiskCache(dir, []byte("another-key-of-more-than-thirty-two-bytes")); !errors.Is(err, agent.ErrCacheKeyMismatch) {
		t.Fatalf("another key: %v, want ErrCacheKeyMismatch", err)
	}
	path := filepath.Join(dir, entries[0])
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x20
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	tampered := startAgentAt(t, addr, withDisk(key), ccfg)
	a = do(t, "GET", tampered+"/v1/app/db", tok...)
	if a.status != 502 || a.json["SecretString"] != nil || !strings.Contains(a.body, "failed authentication") {
		t.Fatalf("an altered file: %d %s, want 502 saying it failed authentication", a.status, a.body)
	}
	if a := do(t, "GET", tampered+"/ping"); a.status != 200 {
		t.Fatalf("/ping after refusing a file: %d", a.status)
	}
}
