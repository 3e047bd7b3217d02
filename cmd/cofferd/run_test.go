package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/test/testkit"
	"github.com/cofferhq/coffer/test/wait"
)

// Bounds that keep a broken build from hanging; no test asserts a duration.
const (
	readyTimeout = 60 * time.Second
	exitTimeout  = 60 * time.Second
)

// syncBuffer is an io.Writer the test can read while cofferd writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// running is cofferd's run in a goroutine, as main would run it.
type running struct {
	stdout, stderr syncBuffer
	cancel         context.CancelFunc
	done           chan int
}

// start runs cofferd with args and the environment env.
func start(t *testing.T, env map[string]string, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan int, 1)}
	go func() { r.done <- run(ctx, args, &r.stdout, &r.stderr, func(k string) string { return env[k] }) }()
	t.Cleanup(func() {
		r.cancel()
		select {
		case <-r.done:
		case <-time.After(exitTimeout):
			t.Errorf("cofferd did not stop")
		}
	})
	return r
}

// exit waits for cofferd to end on its own and returns its exit code.
func (r *running) exit(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-time.After(exitTimeout):
		t.Fatalf("cofferd still runs; stderr:\n%s", r.stderr.String())
		return -1
	}
}

// stop ends cofferd as Ctrl-C does and returns its exit code.
func (r *running) stop(t *testing.T) int {
	t.Helper()
	r.cancel()
	return r.exit(t)
}

// waitFor waits until cofferd wrote text to w, failing if it exits first.
func (r *running) waitFor(t *testing.T, w *syncBuffer, text string) {
	t.Helper()
	wait.True(t, readyTimeout, "cofferd to print "+text, func() bool {
		select {
		case code := <-r.done:
			r.done <- code
			t.Fatalf("cofferd exited %d before printing %q; stderr:\n%s", code, text, r.stderr.String())
		default:
		}
		return strings.Contains(w.String(), text)
	})
}

// serverArgs are the flags of a single-node cofferd server in dir, with its
// own root key, the AWS API off and free loopback ports.
func serverArgs(t *testing.T, dir string) []string {
	t.Helper()
	key := filepath.Join(dir, "root.key")
	if _, err := os.Stat(key); os.IsNotExist(err) {
		if code := run(t.Context(), []string{"keygen", key}, &bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" }); code != 0 {
			t.Fatalf("keygen: exit %d", code)
		}
	}
	return []string{"server", "--node-id", "n1", "--data-dir", filepath.Join(dir, "data"), "--seal-key-file", key,
		"--grpc-addr", testkit.FreeAddr(t), "--aws-addr", "", "--raft-addr", testkit.FreeAddr(t),
		"--log-level", "info", "--maintenance-interval", "1h", "--bootstrap", "true", "--metrics-addr", ""}
}

// principals lists the principals in a stopped node's state.
func principals(t *testing.T, dataDir string) []storage.PrincipalEntry {
	t.Helper()
	st, err := storage.Open(filepath.Join(dataDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	entries, err := st.Principals()
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// readOnlyDir makes dir unwritable, even for root (chattr +i), and undoes it
// at the end of the test.
func readOnlyDir(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
		return
	}
	// Root writes through file modes; an immutable directory stops it.
	if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot make a directory read-only for root here: chattr: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", dir).Run() })
}
