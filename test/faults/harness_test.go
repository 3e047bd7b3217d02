package faults

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
	"github.com/cofferhq/coffer/test/wait"
)

const (
	usEast = "us-east-1"
	euWest = "eu-west-1"
	// healTimeout bounds the wait for a deployment to serve again after a
	// fault is undone (elections, catch-up, a restart from disk); generous
	// because other suites share the two cores.
	healTimeout = 3 * time.Minute
	// rpcTimeout bounds one client call.
	rpcTimeout = 3 * time.Second
)

// dep is the deployment every test shares; TestMain brings it up.
var dep *deployment

func TestMain(m *testing.M) {
	if os.Getenv("COFFER_FAULTS") == "" {
		fmt.Println("test/faults: skipped; set COFFER_FAULTS=1 (make test-faults) to run the fault-injection suite on docker")
		os.Exit(0)
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "test/faults: COFFER_FAULTS is set but `docker info` fails: %v\n%s", err, out)
		os.Exit(1)
	}
	d, err := up()
	if err != nil {
		fmt.Fprintln(os.Stderr, "test/faults: bring up the deployment:", err)
		if d != nil && os.Getenv("COFFER_FAULTS_KEEP") == "" {
			d.down()
		}
		os.Exit(1)
	}
	dep = d
	code := m.Run()
	if code != 0 {
		d.dumpLogs()
	}
	if os.Getenv("COFFER_FAULTS_KEEP") == "" {
		d.down()
	}
	os.Exit(code)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// deployment is the compose project of deploy/compose as the suite runs it.
type deployment struct {
	project, netPrefix, portPrefix string
	compose                        string // deploy/compose
	out                            string // its out/<project>: CAs, credentials
	env                            []string
	regions                        map[string]*region
}

type region struct {
	name  string
	nodes []*node
}

// node is one container and the clients the suite holds to it.
type node struct {
	region, name, container string
	// regionIP and wanIP are its static addresses on the region and WAN
	// networks (it is put back at them after a partition).
	regionIP, wanIP string
	grpcAddr        string
	sm              cofferv1.SecretsManagerServiceClient
	admin           cofferv1.AdminServiceClient
	regions         cofferv1.RegionServiceClient
	aws             *secretsmanager.Client
}

func (n *node) String() string { return n.name }

// up runs deploy/compose/up.sh (build, keys, six nodes, pairing) under the
// suite's project name and connects the clients.
func up() (*deployment, error) {
	root, err := filepath.Abs("../..")
	if err != nil {
		return nil, err
	}
	d := &deployment{
		project:    envOr("COFFER_FAULTS_PROJECT", "cofferfaults"),
		netPrefix:  envOr("COFFER_FAULTS_NET", "10.239"),
		portPrefix: envOr("COFFER_FAULTS_PORT_PREFIX", "284"),
		compose:    filepath.Join(root, "deploy", "compose"),
		regions:    map[string]*region{},
	}
	d.out = filepath.Join(d.compose, "out", d.project)
	d.env = append(os.Environ(), "COMPOSE_PROJECT_NAME="+d.project, "COFFER_IMAGE="+d.project+"/cofferd:dev",
		"COFFER_NET="+d.netPrefix, "COFFER_PORT_PREFIX="+d.portPrefix)
	// A deployment left by an earlier run (COFFER_FAULTS_KEEP) is reused
	// only when it is whole; up.sh itself is idempotent.
	cmd := exec.Command(filepath.Join(d.compose, "up.sh"))
	cmd.Env, cmd.Stdout, cmd.Stderr = d.env, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return d, fmt.Errorf("up.sh: %w", err)
	}
	for ri, rn := range []string{usEast, euWest} {
		r := &region{name: rn}
		d.regions[rn] = r
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(filepath.Join(d.out, rn+"-ca.crt"))
		if err != nil {
			return d, err
		}
		pool.AppendCertsFromPEM(ca)
		id, secret, err := readCredentials(filepath.Join(d.out, rn+".credentials"))
		if err != nil {
			return d, err
		}
		for i := 1; i <= 3; i++ {
			name := fmt.Sprintf("%s%d", rn[:2], i)
			n := &node{
				region: rn, name: name, container: d.project + "_" + name + "_1",
				regionIP: fmt.Sprintf("%s.%d.1%d", d.netPrefix, ri+1, i),
				wanIP:    fmt.Sprintf("%s.3.%d%d", d.netPrefix, ri+1, i),
				grpcAddr: fmt.Sprintf("127.0.0.1:%s%d%d", d.portPrefix, ri+1, i),
			}
			creds := &grpcsig.Credentials{AccessKeyID: id, SecretAccessKey: secret, Region: rn}
			conn, err := grpc.NewClient(n.grpcAddr, append(creds.DialOptions(),
				grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))...)
			if err != nil {
				return d, err
			}
			n.sm, n.admin, n.regions = cofferv1.NewSecretsManagerServiceClient(conn), cofferv1.NewAdminServiceClient(conn), cofferv1.NewRegionServiceClient(conn)
			n.aws = secretsmanager.New(secretsmanager.Options{
				Region:       rn,
				BaseEndpoint: aws.String(fmt.Sprintf("https://127.0.0.1:%s%d%d", d.portPrefix, ri+8, i)),
				Credentials:  awscreds.NewStaticCredentialsProvider(id, secret, ""),
				HTTPClient: &http.Client{Transport: &http.Transport{
					TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 4,
				}},
				// The history records each attempt as it was: no silent retries.
				Retryer: aws.NopRetryer{},
			})
			r.nodes = append(r.nodes, n)
		}
	}
	return d, nil
}

func readCredentials(path string) (id, secret string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	if id == "" || secret == "" {
		return "", "", fmt.Errorf("%s holds no access key", path)
	}
	return id, secret, sc.Err()
}

func (d *deployment) down() {
	cmd := exec.Command(filepath.Join(d.compose, "down.sh"))
	cmd.Env, cmd.Stdout, cmd.Stderr = d.env, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "test/faults: down.sh:", err)
	}
	_ = exec.Command("docker", "image", "rm", d.project+"/cofferd:dev").Run()
}

// dumpLogs prints the last lines of every node's log (a failed run).
func (d *deployment) dumpLogs() {
	for _, r := range d.all() {
		out, _ := exec.Command("docker", "logs", "--tail", "40", r.container).CombinedOutput()
		fmt.Fprintf(os.Stderr, "---- %s (last lines)\n%s\n", r.name, out)
	}
}

func (d *deployment) all() []*node {
	return append(append([]*node(nil), d.regions[usEast].nodes...), d.regions[euWest].nodes...)
}

func (d *deployment) network(name string) string { return d.project + "_" + name }

// docker runs the docker CLI; the error carries its output.
func docker(args ...string) error {
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func mustDocker(t testing.TB, args ...string) {
	t.Helper()
	if err := docker(args...); err != nil {
		t.Fatal(err)
	}
}

// kill is a power loss: SIGKILL, no chance to flush anything. It returns
// once every container has stopped (docker kill returns once the signal
// is sent): a call sent after that cannot reach the dead process.
func (d *deployment) kill(t testing.TB, ns ...*node) {
	t.Helper()
	args := []string{"kill", "--signal", "KILL"}
	for _, n := range ns {
		args = append(args, n.container)
	}
	mustDocker(t, args...)
	for _, n := range ns {
		if out, err := exec.Command("docker", "wait", n.container).CombinedOutput(); err != nil {
			t.Fatalf("docker wait %s: %v: %s", n.container, err, out)
		}
	}
}

func (d *deployment) start(t testing.TB, ns ...*node) {
	t.Helper()
	args := []string{"start"}
	for _, n := range ns {
		args = append(args, n.container)
	}
	mustDocker(t, args...)
}

// isolate disconnects n from its region's network and the WAN: its peers
// cannot reach it nor it them, while the host's clients still reach its
// published ports (on the separate client network).
func (d *deployment) isolate(t testing.TB, n *node) {
	t.Helper()
	mustDocker(t, "network", "disconnect", d.network(n.region), n.container)
	mustDocker(t, "network", "disconnect", d.network("wan"), n.container)
}

// cutLAN disconnects n from its region's network only.
func (d *deployment) cutLAN(t testing.TB, n *node) {
	t.Helper()
	mustDocker(t, "network", "disconnect", d.network(n.region), n.container)
}

// cutWAN disconnects every node of region r from the WAN network.
func (d *deployment) cutWAN(t testing.TB, r *region) {
	t.Helper()
	for _, n := range r.nodes {
		mustDocker(t, "network", "disconnect", d.network("wan"), n.container)
	}
}

// reconnect puts n back on the networks it is missing, at its addresses.
func (d *deployment) reconnect(n *node) error {
	var errs []error
	for _, c := range []struct{ net, ip string }{{d.network(n.region), n.regionIP}, {d.network("wan"), n.wanIP}} {
		if err := docker("network", "connect", "--ip", c.ip, c.net, n.container); err != nil && !strings.Contains(err.Error(), "already exists") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// restore undoes every fault (unpause, reconnect, start) and waits until
// both regions serve linearizable reads on every node.
func (d *deployment) restore(t testing.TB) {
	t.Helper()
	for _, n := range d.all() {
		_ = docker("unpause", n.container) // an error: it was not paused
		if err := d.reconnect(n); err != nil {
			t.Error(err)
		}
		if err := docker("start", n.container); err != nil {
			t.Error(err)
		}
	}
	d.waitHealthy(t)
}

// waitHealthy waits until every node of both regions answers a
// linearizable read (it has a leader and has caught up with it).
func (d *deployment) waitHealthy(t testing.TB) {
	t.Helper()
	wait.Until(t, healTimeout, func() error {
		for _, n := range d.all() {
			ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
			_, err := n.sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{MaxResults: proto32(1)})
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %s", n, describe(err))
			}
		}
		return nil
	})
}

func proto32(v int32) *int32 { return &v }

// leader is region r's leader as the leader itself reports it.
func (d *deployment) leader(t testing.TB, r *region) *node {
	t.Helper()
	var found *node
	wait.Until(t, healTimeout, func() error {
		var err error
		found, err = d.currentLeader(r, nil)
		return err
	})
	return found
}

// currentLeader asks the nodes of r (but skip) who leads and returns the
// one that says it does itself.
func (d *deployment) currentLeader(r *region, skip map[*node]bool) (*node, error) {
	for _, n := range r.nodes {
		if skip[n] {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		st, err := n.admin.ClusterStatus(ctx, &cofferv1.ClusterStatusRequest{})
		cancel()
		if err != nil || st.GetLeaderId() != n.name {
			continue
		}
		return n, nil
	}
	return nil, fmt.Errorf("no node of %s says it leads", r.name)
}

func (r *region) others(n *node) []*node {
	var out []*node
	for _, m := range r.nodes {
		if m != n {
			out = append(out, m)
		}
	}
	return out
}

// describe renders an RPC or SDK error with its AWS type.
func describe(err error) string {
	if err == nil {
		return "<nil>"
	}
	if ty := server.TypeOf(err); ty != "" {
		return fmt.Sprintf("%s (%v)", ty, err)
	}
	return err.Error()
}

// stale asks a node for its own state, without going to the leader.
func stale(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, server.ConsistencyHeader, "stale")
}
