package replication

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// muxWithClusterID is a cluster port whose node holds cluster id id.
func muxWithClusterID(t *testing.T, pki *testPKI, name, id string) (*Mux, *logBuffer) {
	t.Helper()
	m := listenTestMux(t, pki.node(name))
	logs := &logBuffer{}
	m.CheckClusterID(func() string { return id }, logs.logger())
	return m, logs
}

// A Raft connection between nodes holding different cluster ids is
// refused on both sides, and both log it naming both ids; a node without an
// id yet, or one of the same cluster, is accepted; so is a node of an older
// build that speaks coffer-raft/1 and exchanges nothing.
func TestRaftConnectionsCheckTheClusterID(t *testing.T) {
	pki := newTestPKI(t)
	server, serverLogs := muxWithClusterID(t, pki, "n1", "aaaa")
	addr := raft.ServerAddress(server.Addr().String())
	accepted := make(chan []byte, 8)
	go func() {
		for {
			c, err := server.RaftLayer(nil).Accept()
			if err != nil {
				return
			}
			b := make([]byte, 4)
			_, _ = io.ReadFull(c, b)
			accepted <- b
			c.Close()
		}
	}()
	dial := func(id string) error {
		client, _ := muxWithClusterID(t, pki, "n2", id)
		conn, err := client.RaftLayer(nil).Dial(addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("ping")); err != nil {
			return err
		}
		select {
		case got := <-accepted:
			if string(got) != "ping" {
				t.Errorf("the server read %q, want ping", got)
			}
		case <-time.After(10 * time.Second):
			t.Error("the server's Raft side accepted nothing")
		}
		return nil
	}
	for _, id := range []string{"aaaa", ""} {
		if err := dial(id); err != nil {
			t.Errorf("dial with cluster id %q: %v", id, err)
		}
	}

	client, clientLogs := muxWithClusterID(t, pki, "n3", "bbbb")
	_, err := client.RaftLayer(nil).Dial(addr, 5*time.Second)
	if !errors.Is(err, ErrClusterMismatch) || !strings.Contains(err.Error(), "bbbb") || !strings.Contains(err.Error(), "aaaa") {
		t.Fatalf("dial from another cluster: %v, want ErrClusterMismatch naming both ids", err)
	}
	for side, logs := range map[string]*logBuffer{"server": serverLogs, "client": clientLogs} {
		pollUntil(t, 10*time.Second, "the "+side+" to log the refusal", func() bool {
			l := logs.String()
			return strings.Contains(l, "level=ERROR") && strings.Contains(l, "another cluster") &&
				strings.Contains(l, "aaaa") && strings.Contains(l, "bbbb")
		})
	}

	// An older build: coffer-raft/1, no exchange.
	legacy := pki.node("old").ClientConfig(alpnRaftLegacy)
	conn, err := tls.Dial("tcp", string(addr), legacy)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-accepted:
		if string(got) != "ping" {
			t.Errorf("legacy connection: the server read %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Error("a coffer-raft/1 connection was not handed to Raft")
	}
}

// A cluster RPC from a node of another cluster is refused with a typed
// error; the same id or none passes.
func TestClusterRPCsCheckTheClusterID(t *testing.T) {
	pki := newTestPKI(t)
	m := listenTestMux(t, pki.node("n1"))
	logs := &logBuffer{}
	srv := grpc.NewServer(clusterIDGuard{local: func() string { return "aaaa" }, log: logs.logger()}.serverOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(m.GRPCListener()) }()
	t.Cleanup(srv.Stop)

	call := func(id string) error {
		cc, err := DialCluster(m.Addr().String(), pki.node("n2"), nil, clusterIDCallOptions(func() string { return id })...)
		if err != nil {
			return err
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return fromStatus(err)
		}
		return nil
	}
	for _, id := range []string{"aaaa", ""} {
		if err := call(id); err != nil {
			t.Errorf("call with cluster id %q: %v", id, err)
		}
	}
	err := call("bbbb")
	if !errors.Is(err, ErrClusterMismatch) || !strings.Contains(err.Error(), "bbbb") {
		t.Fatalf("call from another cluster: %v, want ErrClusterMismatch", err)
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "remote_cluster_id=bbbb") || !strings.Contains(l, "local_cluster_id=aaaa") {
		t.Errorf("refusal log %q", l)
	}
}

// Autopilot does not add a member that gossips another cluster id, and
// says so once.
func TestAutopilotRefusesAnotherCluster(t *testing.T) {
	logs := &logBuffer{}
	a := &Autopilot{log: logs.logger(), clusterID: func() string { return "aaaa" }, refused: map[raft.ServerID]string{}}
	for range 3 {
		if a.sameCluster("n4", "bbbb") {
			t.Fatal("a member of another cluster passed")
		}
	}
	if !a.sameCluster("n5", "") || !a.sameCluster("n6", "aaaa") {
		t.Fatal("a member of this cluster, or one without an id, was refused")
	}
	if got := strings.Count(logs.String(), "refusing to add a member of another cluster"); got != 1 {
		t.Fatalf("refusal logged %d times, want once:\n%s", got, logs.String())
	}
}
