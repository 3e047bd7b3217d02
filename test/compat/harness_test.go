package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cofferhq/coffer/test/testkit"
	"github.com/cofferhq/coffer/test/wait"
)

const (
	accessKeyID     = "AKIACOMPATTESTROOT01"
	secretAccessKey = "compat/test/root/secret/access/key/000001"
	region          = "us-east-1"
	account         = "123456789012"
)

var cofferdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coffer-compat-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cofferdBin = filepath.Join(dir, "cofferd")
	if out, err := exec.Command("go", "build", "-o", cofferdBin, "github.com/cofferhq/coffer/cmd/cofferd").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build cofferd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a real cofferd process with the AWS API on.
type server struct {
	endpoint string // http://host:port of the AWS API
	grpcAddr string // host:port of the gRPC API
	dataDir  string
	logFile  string
}

func startServer(t *testing.T, extraArgs ...string) *server {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "root.key")
	if out, err := exec.Command(cofferdBin, "keygen", key).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v %s", err, out)
	}
	awsAddr := testkit.FreeAddr(t)
	s := &server{endpoint: "http://" + awsAddr, grpcAddr: testkit.FreeAddr(t), dataDir: filepath.Join(dir, "data"), logFile: filepath.Join(dir, "cofferd.log")}
	logf, err := os.Create(s.logFile)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"server", "--bootstrap", "true", "--metrics-addr", "",
		"--node-id", "compat-1", "--data-dir", s.dataDir, "--seal-key-file", key,
		"--grpc-addr", s.grpcAddr, "--raft-addr", testkit.FreeAddr(t), "--aws-addr", awsAddr,
		"--region", region, "--account-id", account, "--log-format", "json"}, extraArgs...)
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
			b, _ := os.ReadFile(s.logFile)
			t.Logf("cofferd log:\n%s", tail(b, 40))
		}
	})
	// Ready once an authenticated call succeeds.
	client := s.sdk(t, accessKeyID, secretAccessKey)
	wait.True(t, 60*time.Second, "cofferd to answer an authenticated call", func() bool {
		select {
		case <-exited:
			b, _ := os.ReadFile(s.logFile)
			t.Fatalf("cofferd exited:\n%s", tail(b, 40))
		default:
		}
		_, err := client.ListSecrets(context.Background(), &secretsmanager.ListSecretsInput{})
		return err == nil
	})
	return s
}

func tail(b []byte, lines int) string {
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// sdk returns an aws-sdk-go-v2 Secrets Manager client for the server; only
// the endpoint differs from a real AWS client.
func (s *server) sdk(t *testing.T, id, secret string) *secretsmanager.Client {
	t.Helper()
	return s.sdkSession(t, id, secret, "")
}

// sdkSession is sdk with temporary credentials: the SDK sends the token as
// X-Amz-Security-Token, exactly as with AWS_SESSION_TOKEN.
func (s *server) sdkSession(t *testing.T, id, secret, token string) *secretsmanager.Client {
	t.Helper()
	return secretsmanager.New(secretsmanager.Options{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, token),
		BaseEndpoint: aws.String(s.endpoint),
		Retryer:      aws.NopRetryer{},
		HTTPClient:   &http.Client{Timeout: 30 * time.Second},
	})
}

// cli is one installed aws CLI.
type cli struct {
	name, path string
}

// awsCLIs returns the aws CLIs on this machine: the one on PATH and
// Debian's (/usr/bin/aws), when they differ. make test installs Debian's.
func awsCLIs(t *testing.T) []cli {
	t.Helper()
	var out []cli
	seen := map[string]bool{}
	add := func(name, path string) {
		if path == "" {
			return
		}
		v, err := exec.Command(path, "--version").CombinedOutput()
		if err != nil {
			return
		}
		ver := strings.Fields(string(v))[0]
		if seen[ver] {
			return
		}
		seen[ver] = true
		out = append(out, cli{name: name + " " + ver, path: path})
	}
	if p, err := exec.LookPath("aws"); err == nil {
		add("PATH", p)
	}
	add("debian", "/usr/bin/aws")
	if len(out) == 0 {
		t.Fatal("no aws CLI installed; make test installs Debian's awscli")
	}
	return out
}

// run runs the CLI against the server and decodes its JSON output.
func (c cli) run(t *testing.T, s *server, args ...string) (map[string]any, string, int) {
	t.Helper()
	return c.runEnv(t, s, nil, args...)
}

// runEnv is run with env added to (and overriding) the CLI's environment.
func (c cli) runEnv(t *testing.T, s *server, env []string, args ...string) (map[string]any, string, int) {
	t.Helper()
	home := t.TempDir()
	full := append([]string{"--endpoint-url", s.endpoint, "--output", "json", "--region", region, "secretsmanager"}, args...)
	cmd := exec.CommandContext(t.Context(), c.path, full...)
	cmd.Env = append(os.Environ(),
		"AWS_ACCESS_KEY_ID="+accessKeyID, "AWS_SECRET_ACCESS_KEY="+secretAccessKey,
		"AWS_CONFIG_FILE="+filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(home, "credentials"),
		"AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true", "HOME="+home, "AWS_MAX_ATTEMPTS=1", "AWS_RETRY_MODE=standard")
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", c.name, args, err)
	}
	var v map[string]any
	if code == 0 && out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &v); err != nil {
			t.Fatalf("%s %v: output is not JSON: %v\n%s", c.name, args, err, out.String())
		}
	}
	return v, errb.String(), code
}

// ok runs the CLI and fails the test unless it succeeded.
func (c cli) ok(t *testing.T, s *server, args ...string) map[string]any {
	t.Helper()
	v, stderr, code := c.run(t, s, args...)
	if code != 0 {
		t.Fatalf("%s %v: exit %d: %s", c.name, args, code, stderr)
	}
	return v
}

// fails runs the CLI and checks it failed with the AWS error type.
func (c cli) fails(t *testing.T, s *server, errType string, args ...string) string {
	t.Helper()
	_, stderr, code := c.run(t, s, args...)
	if code == 0 || !strings.Contains(stderr, "("+errType+")") {
		t.Fatalf("%s %v: exit %d, stderr %q; want an error of type %s", c.name, args, code, stderr, errType)
	}
	return stderr
}
