package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/testkit"
	"github.com/cofferhq/coffer/test/wait"
)

// formationTimeout bounds a region's formation and a node's joining; it is
// generous because other suites may share the two cores.
const formationTimeout = 90 * time.Second

// sharedRegion is what the servers of one region share: one config file
// (bootstrap_expect 3, the seeds, the cluster CA and a node certificate,
// the gossip key, the root key), as an operator gives every host the same
// file. Each server differs only by the flags of serverFlags.
type sharedRegion struct {
	t      *testing.T
	dir    string
	config string
	// gossip is every server's gossip address, by node id; the config's
	// join list names them all.
	gossip map[string]string
}

// newSharedRegion writes the shared files for servers ids.
func newSharedRegion(t *testing.T, ids ...string) *sharedRegion {
	t.Helper()
	dir := t.TempDir()
	r := &sharedRegion{t: t, dir: dir, config: filepath.Join(dir, "cofferd.yaml"), gossip: map[string]string{}}
	cofferd := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(bin.cofferd, args...).CombinedOutput(); err != nil {
			t.Fatalf("cofferd %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	cofferd("keygen", filepath.Join(dir, "root.key"))
	cofferd("ca", "create", filepath.Join(dir, "region"))
	cofferd("ca", "issue", "--ca-dir", filepath.Join(dir, "region"), "--node-id", "region-node", "--host", testkit.Host, "--out-dir", filepath.Join(dir, "tls"))
	var join []string
	for _, id := range ids {
		r.gossip[id] = testkit.FreeGossipAddr(t)
		join = append(join, strconv.Quote(r.gossip[id]))
	}
	q := func(p string) string { return strconv.Quote(filepath.Join(dir, p)) }
	cfg := fmt.Sprintf(`region: %s
account_id: %q
seal:
  type: file
  key_file: %s
raft:
  bootstrap_expect: 3
  heartbeat_timeout: 500ms
  election_timeout: 500ms
  leader_lease_timeout: 250ms
cluster:
  ca_file: %s
  cert_file: %s
  key_file: %s
  gossip_key_file: %s
  join: [%s]
  consistency_check_interval: 2s
log_level: info
log_format: json
maintenance_interval: 1s
`, testRegion, testAccount, q("root.key"), q("tls/ca.crt"), q("tls/node.crt"), q("tls/node.key"), q("region/gossip.key"), strings.Join(join, ", "))
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// variant writes the shared config changed by edit to name, for a server
// that must differ (a later --config flag wins over the shared one).
func (r *sharedRegion) variant(name string, edit func(string) string) string {
	r.t.Helper()
	b, err := os.ReadFile(r.config)
	if err != nil {
		r.t.Fatal(err)
	}
	path := filepath.Join(r.dir, name)
	if err := os.WriteFile(path, []byte(edit(string(b))), 0o600); err != nil {
		r.t.Fatal(err)
	}
	return path
}

// regionServer is one `cofferd server` process of a shared region.
type regionServer struct {
	t        *testing.T
	id       string
	dataDir  string
	logFile  string
	grpcAddr string
	raftAddr string
	gossip   string
	proc     *exec.Cmd
	exited   chan struct{}
}

// server describes server id, not started yet.
func (r *sharedRegion) server(id string) *regionServer {
	gossip := r.gossip[id]
	if gossip == "" {
		gossip = testkit.FreeGossipAddr(r.t)
	}
	return &regionServer{
		t: r.t, id: id, dataDir: filepath.Join(r.dir, id, "data"), logFile: filepath.Join(r.dir, id+".log"),
		grpcAddr: testkit.FreeAddr(r.t), raftAddr: testkit.FreeAddr(r.t), gossip: gossip,
	}
}

// start runs `cofferd server --config <shared file>` with this server's
// id, addresses and data directory, plus extra flags, and returns at once.
// The process is stopped at the end of the test and must exit 0.
func (r *sharedRegion) start(s *regionServer, extra ...string) {
	s.t.Helper()
	logf, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	args := append([]string{"server", "--metrics-addr", "", "--config", r.config,
		"--node-id", s.id, "--data-dir", s.dataDir, "--grpc-addr", s.grpcAddr, "--aws-addr", "",
		"--raft-addr", s.raftAddr, "--gossip-addr", s.gossip}, extra...)
	cmd := exec.Command(bin.cofferd, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Start()
	logf.Close()
	if err != nil {
		s.t.Fatalf("start %s: %v", s.id, err)
	}
	s.proc, s.exited = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.exited)
	s.t.Cleanup(func() {
		s.stop()
		if s.t.Failed() {
			s.t.Logf("%s log (last lines):\n%s", s.id, tail(s.log(), 30))
		}
	})
}

// stop sends SIGTERM and waits for a clean exit.
func (s *regionServer) stop() {
	s.t.Helper()
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		_ = s.proc.Process.Kill()
		<-s.exited
		s.t.Errorf("%s did not exit within %v of SIGTERM", s.id, stopTimeout)
		return
	}
	if code := s.proc.ProcessState.ExitCode(); code != 0 {
		s.t.Errorf("%s exited with %v, want 0", s.id, s.proc.ProcessState)
	}
}

func (s *regionServer) log() []byte {
	b, err := os.ReadFile(s.logFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		s.t.Errorf("read %s's log: %v", s.id, err)
	}
	return b
}

// logLines returns the server's JSON log lines whose msg contains msg.
func (s *regionServer) logLines(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(s.log()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		if m, _ := line["msg"].(string); strings.Contains(m, msg) {
			out = append(out, line)
		}
	}
	return out
}

// waitLog waits until the server has logged a line containing msg and
// returns the first.
func (s *regionServer) waitLog(msg string) map[string]any {
	s.t.Helper()
	var found map[string]any
	wait.Until(s.t, formationTimeout, func() error {
		if s.exitedEarly() {
			s.t.Fatalf("%s exited before logging %q; log:\n%s", s.id, msg, tail(s.log(), 20))
		}
		if lines := s.logLines(msg); len(lines) > 0 {
			found = lines[0]
			return nil
		}
		return fmt.Errorf("%s has not logged %q", s.id, msg)
	})
	return found
}

func (s *regionServer) exitedEarly() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// waitServing waits until the server's gRPC health says SERVING.
func (s *regionServer) waitServing() {
	s.t.Helper()
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	wait.Until(s.t, formationTimeout, func() error {
		if s.exitedEarly() {
			s.t.Fatalf("%s exited: %v; log:\n%s", s.id, s.proc.ProcessState, tail(s.log(), 20))
		}
		st, err := servingStatus(health, "", cofferv1.SecretsManagerService_ServiceDesc.ServiceName)
		if err == nil && st == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		return fmt.Errorf("%s is not serving: %v %v", s.id, st, err)
	})
}

// accessKey is an access key, as a root-credentials file holds it.
type accessKey struct{ id, secret string }

// readCredentials parses a root-credentials file (AWS shared-credentials
// format).
func readCredentials(t *testing.T, path string) accessKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c accessKey
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			c.id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			c.secret = strings.TrimSpace(v)
		}
	}
	if c.id == "" || c.secret == "" {
		t.Fatalf("%s holds no access key:\n%s", path, b)
	}
	return c
}

// cli runs coffer against the server as the holder of creds.
func (s *regionServer) cli(creds accessKey, args ...string) (stdout, stderr string, exit int) {
	s.t.Helper()
	return runCLIWith(s.t, &creds, append([]string{"--endpoint", s.grpcAddr}, args...)...)
}

// runCLIWith runs the coffer binary with creds (none when nil).
func runCLIWith(t *testing.T, creds *accessKey, args ...string) (stdout, stderr string, exit int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.coffer, args...)
	cmd.Env = os.Environ()
	if creds != nil {
		cmd.Env = append(cmd.Env, "COFFER_ACCESS_KEY_ID="+creds.id, "COFFER_SECRET_ACCESS_KEY="+creds.secret)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		exit = ee.ExitCode()
	default:
		t.Fatalf("coffer %s: %v\nstderr: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), errb.String(), exit
}
