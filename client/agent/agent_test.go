package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/client/agent"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

const token = "ssrf-token-for-tests"

// startAgent runs an agent on a loopback port against node 0 of c.
func startAgent(t *testing.T, c *clustertest.Cluster, cfg agent.Config, ccfg client.Config) string {
	t.Helper()
	return startAgentAt(t, c.Node(0).Addr(), cfg, ccfg)
}

// startAgentAt runs an agent on a loopback port against the node at addr
// (which may be down).
func startAgentAt(t *testing.T, addr string, cfg agent.Config, ccfg client.Config) string {
	t.Helper()
	ccfg.Regions = []client.Region{{Name: clustertest.DefaultRegion, Endpoints: []string{addr}}}
	ccfg.Credentials = client.Credentials{AccessKeyID: clustertest.RootAccessKeyID, SecretAccessKey: clustertest.RootSecretAccessKey}
	cl, err := client.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	cfg.Token = token
	a, err := agent.New(cl, cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + l.Addr().String()
}

type answer struct {
	status int
	header http.Header
	body   string
	json   map[string]any
}

func do(t *testing.T, method, url string, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	_ = json.Unmarshal(b, &a.json)
	return a
}

func createSecret(t *testing.T, c *clustertest.Cluster, name, value string) string {
	t.Helper()
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	out, err := c.Client(0).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, SecretString: &value})
	if err != nil {
		t.Fatal(err)
	}
	return out.GetVersionId()
}

func putSecret(t *testing.T, c *clustertest.Cluster, name, value string) string {
	t.Helper()
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	out, err := c.Client(0).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, SecretString: &value})
	if err != nil {
		t.Fatal(err)
	}
	return out.GetVersionId()
}

// TestAgentBehaviours checks the documented behaviours of
// aws-secretsmanager-agent one by one, over HTTP.
func TestAgentBehaviours(t *testing.T) {
	c := clustertest.Start(t, 1)
	v1 := createSecret(t, c, "app/db", `{"user":"app","password":"one"}`)
	v2 := putSecret(t, c, "app/db", `{"user":"app","password":"two"}`)
	base := startAgent(t, c, agent.Config{MaxConn: 4}, client.Config{Watch: true})
	tok := []string{"X-Aws-Parameters-Secrets-Token", token}

	t.Run("ping", func(t *testing.T) {
		if a := do(t, "GET", base+"/ping", tok...); a.status != 200 || a.body != "healthy" {
			t.Fatalf("/ping: %d %q", a.status, a.body)
		}
	})
	// As aws-secretsmanager-agent's: a health check carries no token and
	// may come through a proxy, but is still a GET.
	t.Run("ping needs no token and ignores X-Forwarded-For", func(t *testing.T) {
		for name, hdr := range map[string][]string{
			"no token":        nil,
			"wrong token":     {"X-Aws-Parameters-Secrets-Token", "wrong"},
			"X-Forwarded-For": {"X-Forwarded-For", "203.0.113.9"},
		} {
			if a := do(t, "GET", base+"/ping", hdr...); a.status != 200 || a.body != "healthy" {
				t.Fatalf("/ping with %s: %d %q, want 200 healthy", name, a.status, a.body)
			}
		}
		if a := do(t, "POST", base+"/ping"); a.status != 405 {
			t.Fatalf("POST /ping: %d %q, want 405", a.status, a.body)
		}
		if a := do(t, "GET", base+"/pingx"); a.status != 403 {
			t.Fatalf("GET /pingx without a token: %d %q, want 403", a.status, a.body)
		}
	})
	t.Run("query route returns GetSecretValue JSON", func(t *testing.T) {
		a := do(t, "GET", base+"/secretsmanager/get?secretId=app/db", tok...)
		if a.status != 200 || a.json["SecretString"] != `{"user":"app","password":"two"}` || a.json["Name"] != "app/db" || a.json["VersionId"] != v2 ||
			!strings.HasPrefix(fmt.Sprint(a.json["ARN"]), "arn:aws:secretsmanager:") || fmt.Sprint(a.json["VersionStages"]) != "[AWSCURRENT]" || a.json["CreatedDate"] == nil {
			t.Fatalf("GET /secretsmanager/get: %d %s", a.status, a.body)
		}
	})
	t.Run("path route", func(t *testing.T) {
		a := do(t, "GET", base+"/v1/app/db", tok...)
		if a.status != 200 || a.json["VersionId"] != v2 {
			t.Fatalf("GET /v1/app/db: %d %s", a.status, a.body)
		}
	})
	t.Run("versionStage and versionId", func(t *testing.T) {
		if a := do(t, "GET", base+"/secretsmanager/get?secretId=app/db&versionStage=AWSPREVIOUS", tok...); a.status != 200 || a.json["VersionId"] != v1 {
			t.Fatalf("versionStage=AWSPREVIOUS: %d %s", a.status, a.body)
		}
		if a := do(t, "GET", base+"/v1/app/db?versionId="+v1, tok...); a.status != 200 || a.json["VersionId"] != v1 {
			t.Fatalf("versionId: %d %s", a.status, a.body)
		}
	})
	t.Run("refreshNow", func(t *testing.T) {
		if a := do(t, "GET", base+"/secretsmanager/get?secretId=app/db&refreshNow=true", tok...); a.status != 200 || a.json["VersionId"] != v2 {
			t.Fatalf("refreshNow=true: %d %s", a.status, a.body)
		}
		if a := do(t, "GET", base+"/secretsmanager/get?secretId=app/db&refreshNow=maybe", tok...); a.status != 400 {
			t.Fatalf("refreshNow=maybe: %d %s, want 400", a.status, a.body)
		}
	})
	t.Run("the other token header", func(t *testing.T) {
		if a := do(t, "GET", base+"/v1/app/db", "X-Vault-Token", token); a.status != 200 {
			t.Fatalf("X-Vault-Token: %d %s", a.status, a.body)
		}
	})
	t.Run("missing token is 403", func(t *testing.T) {
		if a := do(t, "GET", base+"/secretsmanager/get?secretId=app/db"); a.status != 403 || a.json["SecretString"] != nil {
			t.Fatalf("no token: %d %s", a.status, a.body)
		}
	})
	t.Run("bad token is 403", func(t *testing.T) {
		if a := do(t, "GET", base+"/v1/app/db", "X-Aws-Parameters-Secrets-Token", "wrong"); a.status != 403 || a.json["SecretString"] != nil {
			t.Fatalf("bad token: %d %s", a.status, a.body)
		}
	})
	t.Run("X-Forwarded-For is 400", func(t *testing.T) {
		if a := do(t, "GET", base+"/v1/app/db", append(tok, "X-Forwarded-For", "203.0.113.9")...); a.status != 400 || a.json["SecretString"] != nil {
			t.Fatalf("X-Forwarded-For: %d %s", a.status, a.body)
		}
	})
	t.Run("non-GET is 405", func(t *testing.T) {
		for _, m := range []string{"POST", "PUT", "DELETE"} {
			if a := do(t, m, base+"/v1/app/db", tok...); a.status != 405 {
				t.Fatalf("%s: %d %s", m, a.status, a.body)
			}
		}
	})
	t.Run("missing secretId is 400", func(t *testing.T) {
		if a := do(t, "GET", base+"/secretsmanager/get", tok...); a.status != 400 {
			t.Fatalf("no secretId: %d %s", a.status, a.body)
		}
	})
	t.Run("unknown secret is 400 ResourceNotFoundException", func(t *testing.T) {
		if a := do(t, "GET", base+"/v1/app/none", tok...); a.status != 400 || a.json["__type"] != "ResourceNotFoundException" {
			t.Fatalf("unknown secret: %d %s", a.status, a.body)
		}
	})
	t.Run("over max connections is 429", func(t *testing.T) {
		var idle []net.Conn
		for range 4 {
			conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			idle = append(idle, conn)
		}
		wait.Until(t, 10*time.Second, func() error {
			if a := do(t, "GET", base+"/v1/app/db", tok...); a.status != 429 {
				return fmt.Errorf("with 4 idle connections open: %d", a.status)
			}
			return nil
		})
		// The health check keeps PingHeadroom (2) connections beyond the
		// limit: with 4 idle ones it answers, with 6 it is refused too.
		if a := do(t, "GET", base+"/ping"); a.status != 200 {
			t.Fatalf("/ping with 4 idle connections open (limit 4, headroom 2): %d %q, want 200", a.status, a.body)
		}
		for range agent.PingHeadroom {
			conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			idle = append(idle, conn)
		}
		wait.Until(t, 10*time.Second, func() error {
			if a := do(t, "GET", base+"/ping"); a.status != 429 {
				return fmt.Errorf("/ping with 6 idle connections open: %d", a.status)
			}
			return nil
		})
		for _, c := range idle {
			c.Close()
		}
		wait.Until(t, 10*time.Second, func() error {
			if a := do(t, "GET", base+"/v1/app/db", tok...); a.status != 200 {
				return fmt.Errorf("after closing them: %d", a.status)
			}
			return nil
		})
	})
}

// TestToken: the token comes from the first variable set, or from the
// file a file:// value names; none set is an error.
func TestToken(t *testing.T) {
	env := map[string]string{}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if _, err := agent.Token(lookup, agent.DefaultTokenEnv); err == nil {
		t.Fatal("no variable set: no error")
	}
	env["AWS_SESSION_TOKEN"] = "from-env"
	if v, err := agent.Token(lookup, agent.DefaultTokenEnv); err != nil || v != "from-env" {
		t.Fatalf("env: %q %v", v, err)
	}
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env["AWS_TOKEN"] = "file://" + f
	if v, err := agent.Token(lookup, agent.DefaultTokenEnv); err != nil || v != "from-file" {
		t.Fatalf("file: %q %v", v, err)
	}
}

// TestAgentLastGoodValueAndWatchLatency: a change reaches the agent's
// answer through the watch (the TTL is an hour); the latency from the
// write's commit to the agent answering the new version is measured;
// with the node down the last good value is served with its age.
func TestAgentLastGoodValueAndWatchLatency(t *testing.T) {
	c := clustertest.Start(t, 1)
	createSecret(t, c, "app/db", "v0")
	base := startAgent(t, c, agent.Config{}, client.Config{Watch: true, CacheTTL: time.Hour,
		Retry: client.Retry{MaxAttempts: 2, BaseDelay: 10 * time.Millisecond}, CallTimeout: time.Second})
	tok := []string{"X-Aws-Parameters-Secrets-Token", token}
	if a := do(t, "GET", base+"/v1/app/db", tok...); a.status != 200 {
		t.Fatalf("first read: %d %s", a.status, a.body)
	}
	const rounds = 90 // with the first version, under the versions quota (100)
	var lat []time.Duration
	for i := range rounds {
		v := putSecret(t, c, "app/db", fmt.Sprint("v", i+1))
		committed := time.Now()
		for {
			a := do(t, "GET", base+"/v1/app/db", tok...)
			if a.status != 200 {
				t.Fatalf("read: %d %s", a.status, a.body)
			}
			if a.json["VersionId"] == v {
				lat = append(lat, time.Since(committed))
				break
			}
			if time.Since(committed) > clustertest.ConvergeTimeout {
				t.Fatalf("round %d: the agent never answered version %s", i, v)
			}
		}
	}
	slices.Sort(lat)
	t.Logf("commit → agent answer over %d changes: p50 %v, p99 %v, max %v", rounds, lat[rounds/2], lat[rounds*99/100-1], lat[rounds-1])

	c.Stop(0)
	a := do(t, "GET", base+"/secretsmanager/get?secretId=app/db&refreshNow=true", tok...)
	if a.status != 200 || a.json["SecretString"] != fmt.Sprint("v", rounds) || a.header.Get(agent.CacheAgeHeader) == "" {
		t.Fatalf("with the node down: %d %s (age header %q)", a.status, a.body, a.header.Get(agent.CacheAgeHeader))
	}
	if a := do(t, "GET", base+"/v1/app/other", tok...); a.status != 502 {
		t.Fatalf("uncached secret with the node down: %d %s, want 502", a.status, a.body)
	}
}
