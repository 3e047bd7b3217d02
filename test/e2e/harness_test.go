package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
	"github.com/cofferhq/coffer/test/testkit"
)

// Bounds that keep a broken build from hanging CI. They are generous because
// the suite runs under -race on two cores; no test asserts on durations.
const (
	startTimeout = 60 * time.Second // until gRPC health reports SERVING
	stopTimeout  = 60 * time.Second // from SIGTERM to exit
	rpcTimeout   = 30 * time.Second // per RPC made by the tests
	cliTimeout   = 60 * time.Second // per coffer invocation
)

// Region and account every test node is configured with, as they appear in ARNs.
const (
	testRegion  = "us-east-1"
	testAccount = "123456789012"
)

// bin holds the paths of the binaries TestMain builds.
var bin struct {
	cofferd, coffer string
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// COFFER_* variables override cofferd's config file and coffer's flags'
	// defaults; a developer's own settings must not change what tests see.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "COFFER_") {
			os.Unsetenv(name)
		}
	}
	dir, err := os.MkdirTemp("", "coffer-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin.cofferd = filepath.Join(dir, "cofferd")
	bin.coffer = filepath.Join(dir, "coffer")
	for out, pkg := range map[string]string{
		bin.cofferd: "github.com/cofferhq/coffer/cmd/cofferd",
		bin.coffer:  "github.com/cofferhq/coffer/cmd/coffer",
	} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go build %s: %v\n%s", pkg, err, b)
			return 1
		}
	}
	return m.Run()
}

// node is one cofferd child process and a gRPC client connected to it. Its
// data directory, root key and ports stay the same across stop and restart.
type node struct {
	t          *testing.T
	dataDir    string
	awsAddr    string
	keyFile    string
	configFile string
	logFile    string
	grpcAddr   string
	raftAddr   string
	opts       nodeOptions

	// shares are the shamir seal's key shares (withShamir).
	shares []string

	proc   *exec.Cmd
	exited chan struct{} // closed once proc has been waited for
	conn   *grpc.ClientConn
	// sm is the API client of the running process; restart replaces it.
	sm cofferv1.SecretsManagerServiceClient
}

// nodeOptions are the few settings a test may change.
type nodeOptions struct {
	// snapshotThreshold and snapshotInterval, when set, make Raft snapshot
	// after that many new log entries, checked every interval.
	snapshotThreshold uint64
	snapshotInterval  time.Duration
	// accessFlushInterval replaces the default 200ms between flushes of
	// last-accessed days.
	accessFlushInterval time.Duration
	// onSealed, when set, makes the node use the shamir seal
	// (`cofferd operator init` runs first; its shares are in node.shares)
	// and is called at each start once the node answers sealed; it must
	// unseal it.
	onSealed func(n *node)
}

type nodeOption func(*nodeOptions)

// withAccessFlushInterval sets how often the node writes last-accessed days.
func withAccessFlushInterval(d time.Duration) nodeOption {
	return func(o *nodeOptions) { o.accessFlushInterval = d }
}

// withSnapshots makes the node take Raft snapshots often.
func withSnapshots(threshold uint64, interval time.Duration) nodeOption {
	return func(o *nodeOptions) { o.snapshotThreshold, o.snapshotInterval = threshold, interval }
}

// startNode starts a single-node region whose files live under dir: its
// config, root key (generated with "cofferd keygen" if missing), data
// directory and log. It returns once gRPC health reports SERVING, and stops
// the node at the end of the test, which must then exit 0.
func startNode(t *testing.T, dir string, opts ...nodeOption) *node {
	t.Helper()
	n := &node{
		t:          t,
		dataDir:    filepath.Join(dir, "data"),
		keyFile:    filepath.Join(dir, "root.key"),
		configFile: filepath.Join(dir, "cofferd.yaml"),
		logFile:    filepath.Join(dir, "cofferd.log"),
	}
	for _, o := range opts {
		o(&n.opts)
	}
	if _, err := os.Stat(n.keyFile); errors.Is(err, os.ErrNotExist) && n.opts.onSealed == nil {
		if out, err := exec.Command(bin.cofferd, "keygen", n.keyFile).CombinedOutput(); err != nil {
			t.Fatalf("cofferd keygen: %v\n%s", err, out)
		}
	}
	if n.opts.onSealed != nil {
		out, err := exec.Command(bin.cofferd, "operator", "init", "--data-dir", n.dataDir, "--shares", "5", "--threshold", "3").CombinedOutput()
		if err != nil {
			t.Fatalf("cofferd operator init: %v\n%s", err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if _, share, ok := strings.Cut(line, ": "); ok && strings.HasPrefix(line, "share ") {
				n.shares = append(n.shares, share)
			}
		}
		if len(n.shares) != 5 {
			t.Fatalf("cofferd operator init printed %d shares, want 5:\n%s", len(n.shares), out)
		}
	}
	t.Cleanup(func() {
		if n.running() {
			n.stop()
		}
		if t.Failed() {
			t.Logf("cofferd log %s, without health checks:\n%s", n.logFile, tail(withoutHealthChecks(n.readLog()), 40))
		}
	})
	// A free port can be taken by someone else between our probe and the
	// child's bind; try again with new ports when that is why it failed.
	for attempt := 1; ; attempt++ {
		n.grpcAddr, n.raftAddr, n.awsAddr = testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t)
		n.writeConfig()
		err := n.launch()
		if err == nil {
			return n
		}
		if attempt < 3 && strings.Contains(string(n.readLog()), "address already in use") {
			t.Logf("retrying with other ports: %v", err)
			continue
		}
		t.Fatal(err)
	}
}

func (n *node) writeConfig() {
	n.t.Helper()
	var b strings.Builder
	q := strconv.Quote
	fmt.Fprintf(&b, "node_id: e2e-1\n")
	fmt.Fprintf(&b, "data_dir: %s\n", q(n.dataDir))
	fmt.Fprintf(&b, "grpc_addr: %s\n", q(n.grpcAddr))
	fmt.Fprintf(&b, "aws_addr: %s\n", q(n.awsAddr))
	fmt.Fprintf(&b, "region: %s\n", testRegion)
	fmt.Fprintf(&b, "account_id: %s\n", q(testAccount))
	if n.opts.onSealed != nil {
		fmt.Fprintf(&b, "seal:\n  type: shamir\n")
	} else {
		fmt.Fprintf(&b, "seal:\n  type: file\n  key_file: %s\n", q(n.keyFile))
	}
	fmt.Fprintf(&b, "raft:\n  bind_addr: %s\n  bootstrap: true\n", q(n.raftAddr))
	// A lone voter elects itself after one heartbeat timeout; keep it short.
	fmt.Fprintf(&b, "  heartbeat_timeout: 300ms\n  election_timeout: 300ms\n  leader_lease_timeout: 150ms\n")
	if n.opts.snapshotThreshold > 0 {
		fmt.Fprintf(&b, "  snapshot_threshold: %d\n  snapshot_interval: %s\n", n.opts.snapshotThreshold, n.opts.snapshotInterval)
	}
	fmt.Fprintf(&b, "log_level: debug\nlog_format: json\n")
	// Short intervals so that last-accessed dates are observable in a test.
	flush := 200 * time.Millisecond
	if n.opts.accessFlushInterval > 0 {
		flush = n.opts.accessFlushInterval
	}
	fmt.Fprintf(&b, "maintenance_interval: 200ms\naccess_flush_interval: %s\n", flush)
	if err := os.WriteFile(n.configFile, []byte(b.String()), 0o600); err != nil {
		n.t.Fatal(err)
	}
}

// launch starts the process and waits until it serves. On failure the
// process is gone and the error says why.
func (n *node) launch() error {
	n.t.Helper()
	logf, err := os.OpenFile(n.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin.cofferd, "server", "--metrics-addr", "", "--config", n.configFile)
	// Fixed root credentials, as a test suite would set them.
	cmd.Env = append(os.Environ(), "COFFER_ROOT_ACCESS_KEY_ID="+rootAccessKeyID, "COFFER_ROOT_SECRET_ACCESS_KEY="+rootSecretAccessKey)
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Start()
	logf.Close() // the child has its own descriptor
	if err != nil {
		return fmt.Errorf("start cofferd: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status is read from cmd.ProcessState
		close(exited)
	}()
	n.proc, n.exited = cmd, exited

	conn, err := grpc.NewClient(n.grpcAddr, append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect quickly while the node is still binding its port.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 500 * time.Millisecond,
		}, MinConnectTimeout: 5 * time.Second}),
		grpc.WithChainUnaryInterceptor(defaultDeadline),
	}, rootSigner().DialOptions()...)...)
	if err != nil {
		n.kill()
		return fmt.Errorf("grpc client: %w", err)
	}
	n.conn, n.sm = conn, cofferv1.NewSecretsManagerServiceClient(conn)

	health := healthpb.NewHealthClient(conn)
	unsealed := n.opts.onSealed == nil
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-exited:
			conn.Close()
			n.conn = nil
			return fmt.Errorf("cofferd exited with %v before serving; log:\n%s", cmd.ProcessState, tail(n.readLog(), 20))
		default:
		}
		if !unsealed {
			if st, err := cofferv1.NewSealServiceClient(conn).SealStatus(n.t.Context(), &cofferv1.SealStatusRequest{}); err == nil && st.GetSealed() {
				unsealed = true
				n.opts.onSealed(n)
			}
		}
		// Both the server's and the service's health entries must say SERVING.
		status, err := servingStatus(health, "", cofferv1.SecretsManagerService_ServiceDesc.ServiceName)
		if err == nil && status == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if time.Now().After(deadline) {
			n.kill()
			return fmt.Errorf("cofferd not SERVING after %v (last health answer %v, %v)", startTimeout, status, err)
		}
		<-tick.C
	}
}

// servingStatus returns SERVING when every named service reports it, and
// otherwise the first other status.
func servingStatus(health healthpb.HealthClient, services ...string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	for _, svc := range services {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		cancel()
		if err != nil {
			return healthpb.HealthCheckResponse_UNKNOWN, err
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return resp.GetStatus(), fmt.Errorf("service %q is %v", svc, resp.GetStatus())
		}
	}
	return healthpb.HealthCheckResponse_SERVING, nil
}

// defaultDeadline bounds every test RPC that has no deadline of its own.
func defaultDeadline(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rpcTimeout)
		defer cancel()
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (n *node) running() bool {
	if n.exited == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for the process to exit, which must be
// cleanly, with status 0.
func (n *node) stop() {
	n.t.Helper()
	if n.conn != nil {
		n.conn.Close()
		n.conn = nil
	}
	if err := n.proc.Process.Signal(syscall.SIGTERM); err != nil {
		n.t.Errorf("SIGTERM cofferd: %v", err)
	}
	select {
	case <-n.exited:
	case <-time.After(stopTimeout):
		n.kill()
		n.t.Errorf("cofferd did not exit within %v of SIGTERM; killed it", stopTimeout)
		return
	}
	if code := n.proc.ProcessState.ExitCode(); code != 0 {
		n.t.Errorf("cofferd exited with %v after SIGTERM, want status 0; log:\n%s", n.proc.ProcessState, tail(n.readLog(), 20))
	}
}

// kill ends the process at once and waits for it.
func (n *node) kill() {
	if n.conn != nil {
		n.conn.Close()
		n.conn = nil
	}
	_ = n.proc.Process.Kill()
	<-n.exited
}

// start starts the stopped node again with the same config, data
// directory, root key and ports.
func (n *node) start() {
	n.t.Helper()
	if err := n.launch(); err != nil {
		n.t.Fatalf("start: %v", err)
	}
}

// restart stops the node and starts it again.
func (n *node) restart() {
	n.t.Helper()
	n.stop()
	n.start()
}

// readLog returns everything the node has written to stdout and stderr.
func (n *node) readLog() []byte {
	b, err := os.ReadFile(n.logFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		n.t.Errorf("read log: %v", err)
	}
	return b
}

// withoutHealthChecks drops the log lines of startNode's health polling.
func withoutHealthChecks(log []byte) []byte {
	var out []byte
	for _, line := range bytes.SplitAfter(log, []byte("\n")) {
		if !bytes.Contains(line, []byte("/grpc.health.v1.Health/Check")) {
			out = append(out, line...)
		}
	}
	return out
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cli runs the coffer binary against the node and returns what it printed
// and its exit status.
func (n *node) cli(t *testing.T, args ...string) (stdout, stderr string, exit int) {
	t.Helper()
	return runCLI(t, append([]string{"--endpoint", n.grpcAddr}, args...)...)
}

// runCLI runs the coffer binary with args exactly as given.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, exit int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.coffer, args...)
	cmd.Env = append(os.Environ(), "COFFER_ACCESS_KEY_ID="+rootAccessKeyID, "COFFER_SECRET_ACCESS_KEY="+rootSecretAccessKey)
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

// must returns v, failing the test (when the returned func is called with
// it) if err is not nil: must(sm.GetSecretValue(ctx, req))(t).
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v (AWS type %q)", err, server.TypeOf(err))
		}
		return v
	}
}

// wantType reports an error unless err carries the AWS error type want.
func wantType(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Errorf("call succeeded, want %s", want)
		return
	}
	if got := server.TypeOf(err); got != want {
		t.Errorf("error %v has AWS type %q, want %q", err, got, want)
	}
}

// newToken returns a random UUID, the usual ClientRequestToken.
func newToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// randHex returns n random bytes in hex.
func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func ptr[T any](v T) *T { return &v }

// utcMidnight is the start of t's day in UTC, the granularity of
// LastAccessedDate.
func utcMidnight(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// The root principal's access key every test node is started with.
const (
	rootAccessKeyID     = "AKIAE2ETESTROOT00001"
	rootSecretAccessKey = "e2e/test/root/secret/access/key/0000000001"
)

// rootSigner signs gRPC calls as the root principal.
func rootSigner() *grpcsig.Credentials {
	return &grpcsig.Credentials{AccessKeyID: rootAccessKeyID, SecretAccessKey: rootSecretAccessKey, Region: testRegion}
}
