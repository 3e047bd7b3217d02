package client_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

func newClient(t *testing.T, c *clustertest.Cluster, cfg client.Config) *client.Client {
	t.Helper()
	var eps []string
	for i := range c.N() {
		eps = append(eps, c.Node(i).Addr())
	}
	cfg.Regions = []client.Region{{Name: clustertest.DefaultRegion, Endpoints: eps}}
	cfg.Credentials = client.Credentials{AccessKeyID: clustertest.RootAccessKeyID, SecretAccessKey: clustertest.RootSecretAccessKey}
	cl, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func create(t *testing.T, c *clustertest.Cluster, name, value string) {
	t.Helper()
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	if _, err := c.Client(c.Leader()).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, SecretString: &value}); err != nil {
		t.Fatal(err)
	}
}

func put(t *testing.T, c *clustertest.Cluster, name, value string) string {
	t.Helper()
	var out string
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		ctx, cancel := clustertest.RPCContext()
		defer cancel()
		resp, err := c.Client(c.Leader()).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, SecretString: &value})
		if err != nil {
			return err
		}
		out = resp.GetVersionId()
		return nil
	})
	return out
}

// TestClientAcrossLeaderLoss: against a real 3-node region, the client
// caches, is told of a change by the watch (no TTL involved), reads
// without an error while the leader is lost, and its watch resumes on
// another node and keeps the cache fresh after the election.
func TestClientAcrossLeaderLoss(t *testing.T) {
	c := clustertest.Start(t, 3)
	create(t, c, "app/db", "one")
	cl := newClient(t, c, client.Config{Watch: true, CacheTTL: time.Hour, Retry: client.Retry{MaxAttempts: 40, MaxDelay: 500 * time.Millisecond}})
	ctx := t.Context()

	if _, err := cl.GetSecretValue(ctx, "app/missing"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("missing secret: %v, want ErrNotFound", err)
	}
	// Wait until the watch follows, so the entry below is watch-fresh.
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if cl.Stats().WatchConnects == 0 {
			return errors.New("watch not connected")
		}
		return nil
	})
	get := func() *client.Secret {
		t.Helper()
		s, err := cl.GetSecretValue(ctx, "app/db")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := get(); s.String != "one" {
		t.Fatalf("first read %q", s.String)
	}
	get()
	if st := cl.Stats(); st.Hits < 1 || st.Misses < 1 {
		t.Fatalf("after two reads: %+v, want a miss then a hit", st)
	}
	two := put(t, c, "app/db", "two")
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if s := get(); s.VersionID != two || s.String != "two" {
			return fmt.Errorf("still reading version %s", s.VersionID)
		}
		return nil
	})
	if st := cl.Stats(); st.Evictions < 1 || st.Events < 1 {
		t.Fatalf("the new value came without an eviction: %+v", st)
	}

	// The leader is lost; reads of a secret the cache does not hold
	// (versions by id) go to the region and must not fail.
	leader := c.Leader()
	c.Stop(leader)
	for range 50 {
		if s, err := cl.GetSecretValue(ctx, "app/db", client.VersionID(two)); err != nil || s.String != "two" {
			t.Fatalf("read during the election: %v", err)
		}
		if _, err := cl.GetSecretValue(ctx, "app/db", client.VersionStage("AWSPREVIOUS")); err != nil {
			t.Fatalf("read of AWSPREVIOUS during the election: %v", err)
		}
	}
	c.WaitLeader(c.Others(leader)...)
	three := put(t, c, "app/db", "three")
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if s := get(); s.VersionID != three {
			return fmt.Errorf("after the election still reading version %s", s.VersionID)
		}
		return nil
	})
	t.Logf("stats: %+v", cl.Stats())
}

// TestClientServesLastGoodValue: with every node down, a cached value past
// its TTL is served and counted stale; an uncached secret fails with
// ErrUnavailable.
func TestClientServesLastGoodValue(t *testing.T) {
	c := clustertest.Start(t, 1)
	create(t, c, "app/db", "kept")
	cl := newClient(t, c, client.Config{CacheTTL: time.Millisecond, Retry: client.Retry{MaxAttempts: 2, BaseDelay: 10 * time.Millisecond}, CallTimeout: time.Second})
	ctx := t.Context()
	if _, err := cl.GetSecretValue(ctx, "app/db"); err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	s, err := cl.GetSecretValue(ctx, "app/db")
	if err != nil || s.String != "kept" {
		t.Fatalf("with the region down: %v", err)
	}
	if st := cl.Stats(); st.Stale != 1 {
		t.Fatalf("stats %+v, want one stale answer", st)
	}
	if _, err := cl.GetSecretValue(ctx, "app/other"); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("uncached secret with the region down: %v, want ErrUnavailable", err)
	}
}

// TestFailoverExample runs client/examples/failover as a process and
// loses the leader while it reads: it must finish with no error.
func TestFailoverExample(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "failover")
	if out, err := exec.Command("go", "build", "-o", bin, "./examples/failover").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	c := clustertest.Start(t, 3)
	create(t, c, "app/db", "v")
	var eps []string
	for i := range c.N() {
		eps = append(eps, c.Node(i).Addr())
	}
	cmd := exec.Command(bin, "-region", clustertest.DefaultRegion, "-endpoints", strings.Join(eps, ","), "-secret", "app/db", "-reads", "600", "-interval", "5ms")
	cmd.Env = append(os.Environ(), "COFFER_ACCESS_KEY_ID="+clustertest.RootAccessKeyID, "COFFER_SECRET_ACCESS_KEY="+clustertest.RootSecretAccessKey)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if !strings.Contains(out.String(), "read 100 ok") {
			return errors.New("not yet at read 100")
		}
		return nil
	})
	c.Stop(c.Leader())
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the example failed across the failover: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "errors=0") {
		t.Fatalf("output:\n%s", out.String())
	}
	t.Logf("example: %s", strings.TrimSpace(out.String()[strings.LastIndex(out.String(), "reads="):]))
}

// syncBuffer is an output buffer the process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
