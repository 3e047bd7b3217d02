package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cofferhq/coffer/node"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/audit"
	"github.com/cofferhq/coffer/server/sigv4"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// dialerFrom dials from a loopback address of its own, so that one test
// can be many sources (Linux routes all of 127.0.0.0/8 to loopback).
func dialerFrom(ip string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return d.DialContext
}

func grpcFrom(t *testing.T, ip, addr, token string) *grpc.ClientConn {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return dialerFrom(ip)(ctx, "tcp", a) })}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerCreds(token)))
	}
	return dial(t, addr, opts...)
}

// awsFrom posts AWS JSON requests from ip, signed with creds (unsigned
// when creds is nil); it returns the status and the error type.
func awsFrom(t *testing.T, ip, addr string) func(method, target, body string, creds *sigv4.Credentials) (int, string) {
	client := &http.Client{Transport: &http.Transport{DialContext: dialerFrom(ip), MaxIdleConnsPerHost: 8}, Timeout: time.Minute}
	t.Cleanup(client.CloseIdleConnections)
	return func(method, target, body string, creds *sigv4.Credentials) (int, string) {
		req, _ := http.NewRequest(method, "http://"+addr+"/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", target)
		if creds != nil {
			if err := sigv4.Sign(req, []byte(body), *creds, "us-east-1", "secretsmanager", time.Now()); err != nil {
				t.Error(err)
				return 0, ""
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType")
	}
}

// tally counts outcomes by name, concurrently.
type tally struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *tally) add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[k]++
}

func (c *tally) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

func (c *tally) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.n)
}

// TestFloodsLeaveReadsAndDiskAlone floods a real node, over gRPC and the
// AWS protocol, from many goroutines and sources: requests with wrong
// credentials, without credentials, malformed ones, and requests of a
// principal with no rights at all. Meanwhile a legitimate reader on each
// protocol, from its own address, reads a secret. Every one of its reads
// succeeds; the sources that fail to authenticate are throttled before
// their requests are read; refusals are recorded once per kind and
// interval with a count, so the audit directory stays within its
// retention bound; and the node is still serving when it is over.
func TestFloodsLeaveReadsAndDiskAlone(t *testing.T) {
	dir := t.TempDir()
	opts := clustertest.SingleNodeOptions(t, dir)
	opts.RootAccessKeyID, opts.RootSecretAccessKey = rootID, rootSecret
	opts.AWSAddr = "127.0.0.1:0"
	opts.AuditPath = filepath.Join(dir, "audit.log")
	opts.AuditMaxBytes = 32 << 10
	opts.AuditSync = true
	opts.AuditRetention = audit.Retention{MaxFiles: 3, DeleteUnshipped: true}
	opts.AuditSampleInterval = 500 * time.Millisecond
	opts.Limits = node.Limits{AuthFailuresPerSecond: 5, AuthFailureBurst: 20, ConnectionsPerSource: 32}
	n, _ := startReady(t, opts)
	defer n.Stop()
	ctx := t.Context()

	root := asKey(t, n.Addr(), rootID+":"+rootSecret)
	v := "the value the flood must not stop"
	if _, err := cofferv1.NewSecretsManagerServiceClient(root).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "app/db", SecretString: &v}); err != nil {
		t.Fatal(err)
	}
	iam := cofferv1.NewIAMServiceClient(root)
	readerID, readerSecret := principalWithPolicy(t, iam, "reader", readOnly("arn:aws:secretsmanager:*:*:secret:app/*"))
	nobodyID, nobodySecret := principalWithPolicy(t, iam, "nobody", "")

	var flooding sync.WaitGroup
	floods := &tally{}
	const workers, perWorker = 4, 150
	flood := func(name string, one func() string) {
		for range workers {
			flooding.Add(1)
			go func() {
				defer flooding.Done()
				for range perWorker {
					floods.add(name + ":" + one())
				}
			}()
		}
	}
	grpcGet := func(conn *grpc.ClientConn) func() string {
		sm := cofferv1.NewSecretsManagerServiceClient(conn)
		return func() string {
			_, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"})
			return server.TypeOf(err)
		}
	}
	flood("grpc-bad-key", grpcGet(grpcFrom(t, "127.0.0.2", n.Addr(), "AKIANOSUCHKEY0000000:wrong")))
	flood("grpc-no-creds", grpcGet(grpcFrom(t, "127.0.0.3", n.Addr(), "")))
	nobodyConn := grpcFrom(t, "127.0.0.4", n.Addr(), nobodyID+":"+nobodySecret)
	flood("grpc-nobody-get", grpcGet(nobodyConn))
	flood("grpc-nobody-list", func() string {
		resp, err := cofferv1.NewSecretsManagerServiceClient(nobodyConn).ListSecrets(ctx, &cofferv1.ListSecretsRequest{})
		if err == nil && len(resp.GetSecretList()) > 0 {
			return "listed-what-it-may-not"
		}
		return server.TypeOf(err)
	})
	badSig := awsFrom(t, "127.0.0.5", n.AWSAddr())
	flood("aws-bad-signature", func() string {
		_, typ := badSig(http.MethodPost, "secretsmanager.GetSecretValue", `{"SecretId":"app/db"}`, &sigv4.Credentials{AccessKeyID: readerID, SecretAccessKey: "wrong"})
		return typ
	})
	garbage := awsFrom(t, "127.0.0.6", n.AWSAddr())
	flood("aws-garbage", func() string {
		_, typ := garbage(http.MethodGet, "", strings.Repeat("x", 1000), nil)
		return typ
	})
	nobodyAWS := awsFrom(t, "127.0.0.7", n.AWSAddr())
	flood("aws-nobody", func() string {
		_, typ := nobodyAWS(http.MethodPost, "secretsmanager.GetSecretValue", `{"SecretId":"app/db"}`, &sigv4.Credentials{AccessKeyID: nobodyID, SecretAccessKey: nobodySecret})
		return typ
	})
	done := make(chan struct{})
	go func() { flooding.Wait(); close(done) }()

	// The legitimate readers, each from its own address, until the flood ends.
	reads := &tally{}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		sm := cofferv1.NewSecretsManagerServiceClient(grpcFrom(t, "127.0.0.1", n.Addr(), readerID+":"+readerSecret))
		for {
			select {
			case <-done:
				return
			default:
			}
			got, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"})
			if err != nil || got.GetSecretString() != v {
				reads.add(fmt.Sprintf("grpc-failed:%v", err))
				continue
			}
			reads.add("grpc-ok")
		}
	}()
	go func() {
		defer readers.Done()
		post := awsFrom(t, "127.0.0.8", n.AWSAddr())
		creds := &sigv4.Credentials{AccessKeyID: readerID, SecretAccessKey: readerSecret}
		for {
			select {
			case <-done:
				return
			default:
			}
			if code, typ := post(http.MethodPost, "secretsmanager.GetSecretValue", `{"SecretId":"app/db"}`, creds); code != http.StatusOK {
				reads.add(fmt.Sprintf("aws-failed:%d %s", code, typ))
				continue
			}
			reads.add("aws-ok")
		}
	}()
	readers.Wait()
	t.Logf("flood outcomes: %v", floods)
	t.Logf("legitimate reads: %v", reads)

	if reads.get("grpc-ok") == 0 || reads.get("aws-ok") == 0 || len(reads.n) != 2 {
		t.Fatalf("legitimate reads during the flood: %v; want every one to succeed, on both protocols", reads)
	}
	for _, name := range []string{"grpc-bad-key", "grpc-no-creds", "aws-bad-signature", "aws-garbage"} {
		if floods.get(name+":"+server.TypeThrottling) == 0 {
			t.Errorf("%s was never throttled: %v", name, floods)
		}
	}
	for _, name := range []string{"grpc-nobody-get", "aws-nobody"} {
		if got := floods.get(name + ":" + server.TypeAccessDeniedException); got != workers*perWorker {
			t.Errorf("%s: %d AccessDenied of %d: %v", name, got, workers*perWorker, floods)
		}
	}
	if got := floods.get("grpc-nobody-list:"); got != workers*perWorker {
		t.Errorf("grpc-nobody-list: %d empty lists of %d: %v", got, workers*perWorker, floods)
	}

	// The audit directory stays within retention: the active file and
	// MaxFiles rotated ones, each at most MaxBytes.
	bound := int64(opts.AuditRetention.MaxFiles+1) * opts.AuditMaxBytes
	wait.Until(t, 30*time.Second, func() error {
		size, err := auditSize(opts.AuditPath)
		if err != nil {
			return err
		}
		if size > bound {
			return fmt.Errorf("audit files take %d bytes, bound %d", size, bound)
		}
		return nil
	})
	// Refusals were summarized, not recorded one by one.
	wait.True(t, 30*time.Second, "a refusal summary in the audit log", func() bool { return hasSummary(t, opts.AuditPath) })

	// Still serving.
	got, err := cofferv1.NewSecretsManagerServiceClient(root).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"})
	if err != nil || got.GetSecretString() != v {
		t.Fatalf("read after the flood: %v", err)
	}
}

func auditSize(path string) (int64, error) {
	files, err := audit.Files(path)
	if err != nil {
		return 0, err
	}
	var size int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			continue // deleted by retention meanwhile
		}
		size += st.Size()
	}
	return size, nil
}

// hasSummary reports whether the audit files hold a refusal summary.
func hasSummary(t *testing.T, path string) bool {
	files, err := audit.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var rec struct {
				Params map[string]string `json:"params"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Params["suppressed"] != "" {
				return true
			}
		}
	}
	return false
}
