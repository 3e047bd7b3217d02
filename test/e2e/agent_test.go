package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

const agentToken = "e2e-agent-ssrf-token"

// agentProc is one `coffer agent` child process.
type agentProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	mu     sync.Mutex
	stderr bytes.Buffer
	exited chan struct{}
}

// startAgentProc runs `coffer agent` against endpoint with args on a free
// loopback port and returns once it serves. It is stopped at the end of
// the test.
func startAgentProc(t *testing.T, endpoint string, args ...string) *agentProc {
	t.Helper()
	a := &agentProc{t: t, exited: make(chan struct{})}
	a.cmd = exec.Command(bin.coffer, append([]string{"--endpoint", endpoint, "--timeout", "2s", "agent", "--port", "0"}, args...)...)
	a.cmd.Env = append(os.Environ(), "COFFER_ACCESS_KEY_ID="+rootAccessKeyID, "COFFER_SECRET_ACCESS_KEY="+rootSecretAccessKey, "AWS_TOKEN="+agentToken)
	pipe, err := a.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			a.mu.Lock()
			a.stderr.WriteString(line + "\n")
			a.mu.Unlock()
			if u, ok := strings.CutPrefix(line, "coffer agent: serving on "); ok {
				serving <- u
			}
		}
		_, _ = io.Copy(io.Discard, pipe)
		_ = a.cmd.Wait()
		close(a.exited)
	}()
	t.Cleanup(a.stop)
	select {
	case a.url = <-serving:
	case <-a.exited:
		t.Fatalf("coffer agent exited before serving: %v\n%s", a.cmd.ProcessState, a.output())
	case <-time.After(startTimeout):
		t.Fatalf("coffer agent did not serve within %v:\n%s", startTimeout, a.output())
	}
	return a
}

func (a *agentProc) output() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stderr.String()
}

// stop sends SIGTERM and waits; the agent must exit 0.
func (a *agentProc) stop() {
	select {
	case <-a.exited:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(stopTimeout):
		_ = a.cmd.Process.Kill()
		<-a.exited
		a.t.Errorf("coffer agent did not exit within %v of SIGTERM", stopTimeout)
		return
	}
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		a.t.Errorf("coffer agent exited %d after SIGTERM:\n%s", code, a.output())
	}
}

// runAgentCLI runs `coffer agent` that is expected to exit at once (a
// refused configuration), with the SSRF token set.
func runAgentCLI(t *testing.T, args ...string) (stdout, stderr string, exit int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.coffer, args...)
	cmd.Env = append(os.Environ(), "COFFER_ACCESS_KEY_ID="+rootAccessKeyID, "COFFER_SECRET_ACCESS_KEY="+rootSecretAccessKey, "AWS_TOKEN="+agentToken)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("coffer %s did not exit: %v\nstderr: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

type agentAnswer struct {
	status int
	age    string
	body   string
	json   map[string]any
}

func (a *agentProc) get(path string, withToken bool) agentAnswer {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url+path, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	if withToken {
		req.Header.Set("X-Aws-Parameters-Secrets-Token", agentToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("GET %s: %v\nagent stderr:\n%s", path, err, a.output())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := agentAnswer{status: resp.StatusCode, age: resp.Header.Get("X-Coffer-Cache-Age"), body: string(b)}
	_ = json.Unmarshal(b, &out.json)
	return out
}

// TestAgentCacheAtRest runs `coffer agent --cache-dir` against a real
// cofferd: what it served survives the agent's restart while cofferd is
// down (served with its age), the directory holds no plaintext, another
// key is refused with a clear error, and an altered file is answered 502
// without the agent failing.
func TestAgentCacheAtRest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"))
	const value = "e2e-at-rest-value-5b1d"
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	created := must(n.sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "svc/api-key", SecretString: ptr(value)}))(t)

	cache := filepath.Join(dir, "agent-cache")
	keyFile := filepath.Join(dir, "keys", "agent-cache.key")
	otherKey := filepath.Join(dir, "keys", "other.key")
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	for f, k := range map[string]string{keyFile: "Vq3b8XyH0mJc2Zr9LwT4eN7sKd1GfA6uPoQ5iRxYz0E=\n", otherKey: "0000000000000000000000000000000000000000000=\n"} {
		if err := os.WriteFile(f, []byte(k), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cacheArgs := []string{"--cache-dir", cache, "--cache-key-file", keyFile}

	a := startAgentProc(t, n.grpcAddr, cacheArgs...)
	got := a.get("/secretsmanager/get?secretId=svc/api-key", true)
	if got.status != 200 || got.json["SecretString"] != value || got.age != "" {
		t.Fatalf("with cofferd up: %d %s (age %q)", got.status, got.body, got.age)
	}
	a.stop()
	n.stop()

	a = startAgentProc(t, n.grpcAddr, cacheArgs...)
	got = a.get("/secretsmanager/get?secretId=svc/api-key", true)
	if got.status != 200 || got.json["SecretString"] != value || got.json["VersionId"] != created.GetVersionId() || got.age == "" {
		t.Fatalf("restarted with cofferd down: %d %s (age %q), want the value with X-Coffer-Cache-Age\nagent stderr:\n%s", got.status, got.body, got.age, a.output())
	}
	if got := a.get("/secretsmanager/get?secretId=svc/never-read", true); got.status != 502 {
		t.Fatalf("a secret never read, cofferd down: %d %s, want 502", got.status, got.body)
	}
	if got := a.get("/secretsmanager/get?secretId=svc/api-key", false); got.status != 403 {
		t.Fatalf("the cache at rest without the SSRF token: %d, want 403", got.status)
	}
	a.stop()

	ents, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	var entry string
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
		b, err := os.ReadFile(filepath.Join(cache, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, clear := range []string{value, base64.StdEncoding.EncodeToString([]byte(value)), "svc/api-key"} {
			if bytes.Contains(b, []byte(clear)) || strings.Contains(e.Name(), clear) {
				t.Errorf("%s holds %q in clear", e.Name(), clear)
			}
		}
		if strings.HasSuffix(e.Name(), ".entry") {
			entry = filepath.Join(cache, e.Name())
		}
	}
	if entry == "" {
		t.Fatalf("no entry file in %s", cache)
	}

	out, errOut, code := runAgentCLI(t, "--endpoint", n.grpcAddr, "agent", "--port", "0", "--cache-dir", cache, "--cache-key-file", otherKey)
	if code == 0 || !strings.Contains(errOut, "written with another key") {
		t.Fatalf("another key: exit %d, stderr %q, stdout %q; want a failure saying so", code, errOut, out)
	}
	_, errOut, code = runAgentCLI(t, "--endpoint", n.grpcAddr, "agent", "--port", "0", "--cache-dir", filepath.Dir(keyFile), "--cache-key-file", keyFile)
	if code != 2 || !strings.Contains(errOut, "inside --cache-dir") {
		t.Fatalf("a key inside the cache directory: exit %d, stderr %q; want 2", code, errOut)
	}

	b, err := os.ReadFile(entry)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-3] ^= 0x01
	if err := os.WriteFile(entry, b, 0o600); err != nil {
		t.Fatal(err)
	}
	a = startAgentProc(t, n.grpcAddr, cacheArgs...)
	got = a.get("/secretsmanager/get?secretId=svc/api-key", true)
	if got.status != 502 || got.json["SecretString"] != nil || !strings.Contains(got.body, "failed authentication") {
		t.Fatalf("an altered entry: %d %s, want 502 saying it failed authentication", got.status, got.body)
	}
	if got := a.get("/ping", false); got.status != 200 || got.body != "healthy" {
		t.Fatalf("/ping after refusing an entry: %d %q", got.status, got.body)
	}
	if !strings.Contains(a.output(), "refusing a cached copy") || strings.Contains(a.output(), value) {
		t.Fatalf("agent stderr should report the refusal without the value:\n%s", a.output())
	}
}
