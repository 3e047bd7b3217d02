package inject_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/client/inject"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

func TestParseRef(t *testing.T) {
	for in, want := range map[string]inject.Ref{
		"prod/db":                      {SecretID: "prod/db"},
		"prod/db:password":             {SecretID: "prod/db", JSONKey: "password"},
		"prod/db:password:AWSPREVIOUS": {SecretID: "prod/db", JSONKey: "password", Stage: "AWSPREVIOUS"},
		"prod/db::AWSPENDING":          {SecretID: "prod/db", Stage: "AWSPENDING"},
		"prod/db:password:" + strings.Repeat("a", 32):                         {SecretID: "prod/db", JSONKey: "password", VersionID: strings.Repeat("a", 32)},
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf": {SecretID: "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf"},
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf:password:AWSCURRENT:": {
			SecretID: "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf", JSONKey: "password", Stage: "AWSCURRENT"},
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf:password::v-1": {
			SecretID: "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf", JSONKey: "password", VersionID: "v-1"},
	} {
		got, err := inject.ParseRef(in)
		if err != nil || got != want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ":key", "a:b:c:d", "arn:aws:s3:::bucket", "arn:aws:secretsmanager:r:a:secret"} {
		if _, err := inject.ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) accepted", bad)
		}
	}
	if _, err := inject.ParseEnv("1BAD=prod/db"); err == nil {
		t.Error("ParseEnv accepted a bad variable name")
	}
	if tpl, err := inject.ParseTemplate("in.tpl:out.conf:0640"); err != nil || tpl.Mode != 0o640 {
		t.Errorf("ParseTemplate: %+v %v", tpl, err)
	}
}

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

func env(t *testing.T, specs ...string) []inject.EnvRef {
	t.Helper()
	var out []inject.EnvRef
	for _, s := range specs {
		e, err := inject.ParseEnv(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// TestExec runs real commands against a real node: injection of whole
// values and JSON keys, a missing key refused before anything starts, the
// child's exit code, templates written with their mode, signal forwarding,
// and restart on change.
func TestExec(t *testing.T) {
	c := clustertest.Start(t, 1)
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	sm := c.Client(0)
	for name, v := range map[string]string{"prod/db": `{"user":"app","password":"s3cret","port":5432}`, "prod/token": "tok-1"} {
		if _, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, SecretString: &v}); err != nil {
			t.Fatal(err)
		}
	}
	kick := make(chan struct{}, 1)
	cl, err := client.New(client.Config{
		Regions:     []client.Region{{Name: clustertest.DefaultRegion, Endpoints: []string{c.Node(0).Addr()}}},
		Credentials: client.Credentials{AccessKeyID: clustertest.RootAccessKeyID, SecretAccessKey: clustertest.RootSecretAccessKey},
		Watch:       true,
		OnChange: func(client.Change) {
			select {
			case kick <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	bg := context.Background()

	t.Run("injection and exit code", func(t *testing.T) {
		out := &syncBuffer{}
		code, err := inject.Run(bg, cl, nil, inject.Config{
			Env:     env(t, "DB_PASSWORD=prod/db:password", "DB_PORT=prod/db:port", "TOKEN=prod/token", "DB=prod/db"),
			Command: []string{"sh", "-c", `echo "$DB_PASSWORD|$DB_PORT|$TOKEN|$DB"; exit 7`}, Stdout: out, Stderr: out,
		})
		if err != nil || code != 7 {
			t.Fatalf("code %d, err %v", code, err)
		}
		if got, want := out.String(), `s3cret|5432|tok-1|{"user":"app","password":"s3cret","port":5432}`+"\n"; got != want {
			t.Fatalf("child printed %q, want %q", got, want)
		}
	})
	t.Run("missing key", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "ran")
		_, err := inject.Run(bg, cl, nil, inject.Config{Env: env(t, "X=prod/db:nope"), Command: []string{"touch", marker}})
		if !errors.Is(err, inject.ErrMissingKey) || !strings.Contains(err.Error(), "X") {
			t.Fatalf("missing key: %v", err)
		}
		if _, serr := os.Stat(marker); serr == nil {
			t.Fatal("the command ran despite the missing key")
		}
		out := &syncBuffer{}
		if code, err := inject.Run(bg, cl, nil, inject.Config{Env: env(t, "X=prod/db:nope"), AllowMissing: true,
			Command: []string{"sh", "-c", `echo "[$X]"`}, Stdout: out}); err != nil || code != 0 || out.String() != "[]\n" {
			t.Fatalf("allowed missing key: %d %v %q", code, err, out.String())
		}
		if _, err := inject.Run(bg, cl, nil, inject.Config{Env: env(t, "X=prod/none"), Command: []string{"true"}}); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("missing secret: %v", err)
		}
	})
	t.Run("template", func(t *testing.T) {
		dir := t.TempDir()
		in, out := filepath.Join(dir, "db.conf.tpl"), filepath.Join(dir, "db.conf")
		if err := os.WriteFile(in, []byte(`user={{secret "prod/db:user"}} password={{.DB_PASSWORD}}`+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		printed := &syncBuffer{}
		code, err := inject.Run(bg, cl, nil, inject.Config{Env: env(t, "DB_PASSWORD=prod/db:password"),
			Templates: []inject.Template{{In: in, Out: out, Mode: 0o640}}, Command: []string{"cat", out}, Stdout: printed})
		if err != nil || code != 0 || printed.String() != "user=app password=s3cret\n" {
			t.Fatalf("template: %d %v %q", code, err, printed.String())
		}
		if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o640 {
			t.Fatalf("rendered file mode: %v %v", st.Mode(), err)
		}
	})
	t.Run("signal forwarding", func(t *testing.T) {
		out := &syncBuffer{}
		done := make(chan int, 1)
		go func() {
			code, err := inject.Run(bg, cl, nil, inject.Config{Env: env(t, "T=prod/token"),
				Command: []string{"sh", "-c", `trap 'echo got-usr1; exit 3' USR1; echo ready; while true; do sleep 0.05; done`}, Stdout: out})
			if err != nil {
				t.Error(err)
			}
			done <- code
		}()
		wait.Until(t, 20*time.Second, func() error {
			if !strings.Contains(out.String(), "ready") {
				return errors.New("child not ready")
			}
			return nil
		})
		if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		if code := <-done; code != 3 || !strings.Contains(out.String(), "got-usr1") {
			t.Fatalf("after SIGUSR1: code %d, output %q", code, out.String())
		}
	})
	t.Run("restart on change", func(t *testing.T) {
		out := &syncBuffer{}
		rctx, rcancel := context.WithCancel(bg)
		done := make(chan int, 1)
		go func() {
			code, err := inject.Run(rctx, cl, kick, inject.Config{Env: env(t, "T=prod/token"), RestartOnChange: true, Grace: 5 * time.Second,
				Command: []string{"sh", "-c", `echo "start $T"; trap 'echo "stop $T"; exit 0' TERM; while true; do sleep 0.05; done`}, Stdout: out})
			if err != nil {
				t.Error(err)
			}
			done <- code
		}()
		wait.Until(t, 20*time.Second, func() error {
			if !strings.Contains(out.String(), "start tok-1") {
				return errors.New("child not started")
			}
			return nil
		})
		v := "tok-2"
		if _, err := sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "prod/token", SecretString: &v}); err != nil {
			t.Fatal(err)
		}
		wait.Until(t, clustertest.ConvergeTimeout, func() error {
			if !strings.Contains(out.String(), "start tok-2") {
				return fmt.Errorf("not restarted: %q", out.String())
			}
			return nil
		})
		rcancel()
		<-done
		if got := out.String(); !strings.HasPrefix(got, "start tok-1\nstop tok-1\nstart tok-2\n") {
			t.Fatalf("restart sequence %q", got)
		}
	})
}
