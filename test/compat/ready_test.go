package compat

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	cserver "github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
	"github.com/cofferhq/coffer/test/testkit"
	"github.com/cofferhq/coffer/test/wait"
)

// regionNode is one cofferd process of a two-node region sharing a CA, a
// gossip key and a root key.
type regionNode struct {
	id, grpcAddr, awsAddr, raftAddr, gossipAddr, dataDir, logFile string
}

// answers records what every HTTP attempt of a client got: the status and
// X-Amzn-ErrorType, "connect error" when there was no answer.
type answers struct {
	mu  sync.Mutex
	got []string
}

func (a *answers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.got = append(a.got, "connect error")
		return nil, err
	}
	a.got = append(a.got, fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType")))
	return resp, nil
}

func (a *answers) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.got...)
}

// TestClientsStartingWithTheNode: a node that has joined nothing yet (no
// leader) answers every client — aws-sdk-go-v2, the aws CLIs and gRPC —
// ServiceUnavailable (HTTP 503 with Retry-After, gRPC Unavailable), never an
// authentication error for the root key it does not have yet. Clients
// started then, which retry 503, succeed once the region forms and the
// node has caught up, having seen nothing but 503s before.
func TestClientsStartingWithTheNode(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, cofferdBin, "ca", "create", filepath.Join(dir, "region"))
	mustRun(t, cofferdBin, "keygen", filepath.Join(dir, "root.key"))
	a, b := newRegionNode(t, dir, "a"), newRegionNode(t, dir, "b")
	startRegionNode(t, dir, a, false, b.gossipAddr)
	s := &server{endpoint: "http://" + a.awsAddr, grpcAddr: a.grpcAddr}

	// Not ready: every client gets 503 / Unavailable, whatever it sends.
	var sdkAnswers answers
	sdk := secretsmanager.New(secretsmanager.Options{
		Region: region, Credentials: credentials.NewStaticCredentialsProvider(accessKeyID, secretAccessKey, ""),
		BaseEndpoint: aws.String(s.endpoint), Retryer: aws.NopRetryer{}, HTTPClient: &http.Client{Transport: &sdkAnswers, Timeout: 30 * time.Second},
	})
	wait.True(t, 60*time.Second, "node a to answer on its AWS port", func() bool {
		_, err := sdk.ListSecrets(t.Context(), &secretsmanager.ListSecretsInput{})
		return err != nil && !strings.Contains(err.Error(), "connect")
	})
	_, err := sdk.ListSecrets(t.Context(), &secretsmanager.ListSecretsInput{})
	var ae smithy.APIError
	var re *smithyhttp.ResponseError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ServiceUnavailable" || !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusServiceUnavailable {
		t.Fatalf("SDK before ready: %v; want 503 ServiceUnavailable", err)
	}
	if re.Response.Header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q", re.Response.Header.Get("Retry-After"))
	}
	for _, c := range awsCLIs(t) {
		c.fails(t, s, "ServiceUnavailable", "list-secrets")
	}
	signed := &grpcsig.Credentials{AccessKeyID: accessKeyID, SecretAccessKey: secretAccessKey, Region: region}
	conn, err := grpc.NewClient(a.grpcAddr, append(signed.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	grpcClient := cofferv1.NewSecretsManagerServiceClient(conn)
	if _, err := grpcClient.ListSecrets(t.Context(), &cofferv1.ListSecretsRequest{}); status.Code(err) != codes.Unavailable || cserver.TypeOf(err) != cserver.TypeServiceUnavailable {
		t.Fatalf("gRPC before ready: %v; want Unavailable (ServiceUnavailable)", err)
	}

	// Clients that start now retry until the node is ready.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var retrying answers
	patient := secretsmanager.New(secretsmanager.Options{
		Region: region, Credentials: credentials.NewStaticCredentialsProvider(accessKeyID, secretAccessKey, ""),
		BaseEndpoint: aws.String(s.endpoint), HTTPClient: &http.Client{Transport: &retrying, Timeout: 30 * time.Second},
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts, o.MaxBackoff = 200, 500*time.Millisecond }),
	})
	sdkDone := make(chan error, 1)
	go func() {
		_, err := patient.ListSecrets(ctx, &secretsmanager.ListSecretsInput{})
		sdkDone <- err
	}()
	type cliResult struct {
		name   string
		stderr string
		code   int
	}
	clis := awsCLIs(t)
	cliDone := make(chan cliResult, len(clis))
	for _, c := range clis {
		go func() {
			_, stderr, code := c.runEnv(t, s, []string{"AWS_MAX_ATTEMPTS=30"}, "list-secrets")
			cliDone <- cliResult{c.name, stderr, code}
		}()
	}
	var grpcErrs []string
	grpcDone := make(chan struct{})
	go func() {
		defer close(grpcDone)
		// A client retrying Unavailable every 100ms, as a service would.
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			_, err := grpcClient.ListSecrets(ctx, &cofferv1.ListSecretsRequest{})
			if err == nil {
				return
			}
			grpcErrs = append(grpcErrs, status.Code(err).String()+" "+cserver.TypeOf(err))
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	startRegionNode(t, dir, b, true, "")
	if err := <-sdkDone; err != nil {
		t.Fatalf("SDK client started with the node: %v (answers %v)", err, retrying.list())
	}
	for _, got := range retrying.list() {
		if got != "503 ServiceUnavailable" && got != "200 " {
			t.Fatalf("the retrying SDK client got %q; answers %v", got, retrying.list())
		}
	}
	if got := retrying.list(); len(got) < 2 || got[0] != "503 ServiceUnavailable" {
		t.Fatalf("answers %v: want 503s, then success", got)
	}
	for range clis {
		r := <-cliDone
		if r.code != 0 {
			t.Fatalf("%s started with the node: exit %d: %s", r.name, r.code, r.stderr)
		}
	}
	<-grpcDone
	if ctx.Err() != nil {
		t.Fatalf("gRPC client never succeeded: %v", grpcErrs)
	}
	for _, e := range grpcErrs {
		if e != "Unavailable ServiceUnavailable" {
			t.Fatalf("the gRPC client got %q before the node was ready; all: %v", e, grpcErrs)
		}
	}
}

func mustRun(t *testing.T, bin string, args ...string) {
	t.Helper()
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
	}
}

func newRegionNode(t *testing.T, dir, id string) *regionNode {
	t.Helper()
	mustRun(t, cofferdBin, "ca", "issue", "--ca-dir", filepath.Join(dir, "region"), "--node-id", id, "--host", testkit.Host,
		"--out-dir", filepath.Join(dir, id, "tls"))
	return &regionNode{id: id, grpcAddr: testkit.FreeAddr(t), awsAddr: testkit.FreeAddr(t), raftAddr: testkit.FreeAddr(t),
		gossipAddr: testkit.FreeGossipAddr(t), dataDir: filepath.Join(dir, id, "data"), logFile: filepath.Join(dir, id, "cofferd.log")}
}

// startRegionNode starts n as a node of the region in dir; it bootstraps
// the region, or joins the node gossiping at join.
func startRegionNode(t *testing.T, dir string, n *regionNode, bootstrap bool, join string) {
	t.Helper()
	tlsDir := filepath.Join(dir, n.id, "tls")
	args := []string{"server", "--metrics-addr", "", "--node-id", n.id, "--data-dir", n.dataDir, "--seal-key-file", filepath.Join(dir, "root.key"),
		"--grpc-addr", n.grpcAddr, "--aws-addr", n.awsAddr, "--raft-addr", n.raftAddr, "--gossip-addr", n.gossipAddr,
		"--cluster-ca-file", filepath.Join(tlsDir, "ca.crt"), "--cluster-cert-file", filepath.Join(tlsDir, "node.crt"),
		"--cluster-key-file", filepath.Join(tlsDir, "node.key"), "--gossip-key-file", filepath.Join(dir, "region", "gossip.key"),
		"--region", region, "--account-id", account, "--log-format", "json", fmt.Sprintf("--bootstrap=%v", bootstrap)}
	if join != "" {
		args = append(args, "--join", join)
	}
	logf, err := os.Create(n.logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cofferdBin, args...)
	cmd.Env = append(os.Environ(), "COFFER_ROOT_ACCESS_KEY_ID="+accessKeyID, "COFFER_ROOT_SECRET_ACCESS_KEY="+secretAccessKey)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(n.logFile)
			t.Logf("cofferd %s log:\n%s", n.id, tail(b, 30))
		}
	})
}
