package replication

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/test/wait"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// pollUntil polls cond until it holds or timeout passes.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	wait.True(t, timeout, what, cond)
}

// testPKI is a cluster CA that issues node material on demand.
type testPKI struct {
	t  *testing.T
	ca *CA
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := NewCA("coffer test cluster CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{t: t, ca: ca}
}

func (p *testPKI) node(id string) *ClusterTLS {
	p.t.Helper()
	m, _, _, err := p.ca.IssueNode(id, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		p.t.Fatal(err)
	}
	return m
}

func listenTestMux(t *testing.T, material *ClusterTLS) *Mux {
	t.Helper()
	m, err := ListenCluster("127.0.0.1:0", "", material)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// serveTestHealth serves the gRPC health service on m's gRPC side.
func serveTestHealth(t *testing.T, m *Mux) {
	t.Helper()
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(m.GRPCListener())
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
}

func checkHealth(addr string, material *ClusterTLS) error {
	cc, err := DialCluster(addr, material, nil)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health status %v", resp.Status)
	}
	return nil
}

// acceptResult is one Accept call's outcome.
type acceptResult struct {
	conn net.Conn
	err  error
}

func acceptAsync(l net.Listener) <-chan acceptResult {
	ch := make(chan acceptResult, 1)
	go func() {
		c, err := l.Accept()
		ch <- acceptResult{c, err}
	}()
	return ch
}

func TestMuxServesRaftAndGRPCOnOnePort(t *testing.T) {
	pki := newTestPKI(t)
	server := listenTestMux(t, pki.node("n1"))
	if a, ok := server.Addr().(*net.TCPAddr); !ok || a.Port == 0 || !a.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("Addr() = %#v, want the bound 127.0.0.1 port", server.Addr())
	}
	serveTestHealth(t, server)
	client := listenTestMux(t, pki.node("n2"))

	// Raft: n2 dials n1 and n1's stream layer gets an authenticated
	// connection carrying n2's bytes.
	accepted := acceptAsync(server.RaftLayer(nil))
	conn, err := client.RaftLayer(nil).Dial(raft.ServerAddress(server.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	var got acceptResult
	select {
	case got = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("raft layer accepted nothing")
	}
	if got.err != nil {
		t.Fatal(got.err)
	}
	defer got.conn.Close()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(got.conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v; want ping", buf, err)
	}
	st := got.conn.(*tls.Conn).ConnectionState()
	if st.NegotiatedProtocol != ALPNRaft || len(st.PeerCertificates) == 0 || st.PeerCertificates[0].Subject.CommonName != "n2" {
		t.Errorf("server side: protocol %q, peer %v; want %q from n2", st.NegotiatedProtocol, st.PeerCertificates, ALPNRaft)
	}

	// gRPC on the same port.
	if err := checkHealth(server.Addr().String(), pki.node("n3")); err != nil {
		t.Fatalf("gRPC health over the cluster port: %v", err)
	}
}

func TestMuxRejectsUntrustedClients(t *testing.T) {
	pki := newTestPKI(t)
	server := listenTestMux(t, pki.node("n1"))
	serveTestHealth(t, server)
	addr := server.Addr().String()
	raftSide := server.RaftLayer(nil)
	accepted := acceptAsync(raftSide)

	// Another CA with the same name: the client really presents its
	// certificate, and the server must refuse it on the signature.
	other := (&testPKI{t: t, ca: func() *CA {
		ca, err := NewCA("coffer test cluster CA", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}()}).node("intruder")
	foreignClient := &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{other.Cert},
		RootCAs: pki.node("x").CA, ServerName: "coffer-cluster", NextProtos: []string{ALPNRaft},
	}
	noCertClient := &tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: foreignClient.RootCAs,
		ServerName: "coffer-cluster", NextProtos: []string{ALPNRaft},
	}
	for name, cfg := range map[string]*tls.Config{"foreign CA": foreignClient, "no certificate": noCertClient} {
		t.Run(name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", addr, cfg)
			if err != nil {
				return // refused during the handshake
			}
			defer conn.Close()
			// TLS 1.3 finishes the client's handshake before the server
			// has judged the client certificate; the refusal arrives as
			// an alert on the first read.
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			if err == nil || isTimeout(err) {
				t.Fatalf("read after handshake: err = %v, want the server to refuse the client", err)
			}
		})
	}

	// The foreign node's own gRPC client is refused as well: it does not
	// trust our server either, and our server does not trust it.
	if err := checkHealth(addr, other); err == nil {
		t.Error("gRPC health from a foreign-CA client succeeded")
	}

	// Wrong or missing ALPN never reaches a consumer.
	for _, protos := range [][]string{{"http/1.1"}, nil} {
		cfg := pki.node("n5").ClientConfig("")
		cfg.NextProtos = protos
		conn, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
			if err == nil {
				t.Errorf("ALPN %v: connection stayed usable", protos)
			}
		}
	}

	// None of the refused connections was handed to Raft: the first
	// connection Raft accepts is the trusted one.
	good, err := server.RaftLayer(nil).Dial(raft.ServerAddress(addr), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if _, err := good.Write([]byte("good")); err != nil {
		t.Fatal(err)
	}
	r := <-accepted
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.conn.Close()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(r.conn, buf); err != nil || string(buf) != "good" {
		t.Fatalf("first accepted Raft connection carried %q, %v; want the trusted client's", buf, err)
	}
}

func TestMuxPlaintextAndStalledClients(t *testing.T) {
	pki := newTestPKI(t)
	// A handshake deadline far beyond the dial timeout below: if a stalled
	// client held up the accept loop, the trusted dial would time out.
	m, err := listenCluster("127.0.0.1:0", "", pki.node("n1"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	addr := m.Addr().String()
	accepted := acceptAsync(m.RaftLayer(nil))

	stalled, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	plain, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}

	good, err := m.RaftLayer(nil).Dial(raft.ServerAddress(addr), 5*time.Second)
	if err != nil {
		t.Fatalf("trusted dial behind a stalled client: %v", err)
	}
	defer good.Close()
	if r := <-accepted; r.err != nil {
		t.Fatal(r.err)
	} else {
		r.conn.Close()
	}
	expectClosedByServer(t, "plaintext", plain)

	// A stalled client is dropped when the handshake deadline passes.
	short, err := listenCluster("127.0.0.1:0", "", pki.node("n1"), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	silent, err := net.Dial("tcp", short.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	expectClosedByServer(t, "stalled", silent)
}

// expectClosedByServer reads c to the end and fails if the server leaves it
// open or answers with anything but a TLS alert.
func expectClosedByServer(t *testing.T, name string, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	data, err := io.ReadAll(c)
	if isTimeout(err) {
		t.Errorf("%s client still open after 10s", name)
	}
	if bytes.Contains(data, []byte("HTTP")) {
		t.Errorf("%s client got %q", name, data)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestMuxCloseUnblocksAccept(t *testing.T) {
	pki := newTestPKI(t)
	m, err := ListenCluster("127.0.0.1:0", "", pki.node("n1"))
	if err != nil {
		t.Fatal(err)
	}
	raftAccept := acceptAsync(m.RaftLayer(nil))
	grpcAccept := acceptAsync(m.GRPCListener())
	// A connection stuck in its handshake is dropped by Close too.
	stalled, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]<-chan acceptResult{"raft": raftAccept, "grpc": grpcAccept} {
		select {
		case r := <-ch:
			if !errors.Is(r.err, net.ErrClosed) {
				t.Errorf("%s Accept after Close: %v, want net.ErrClosed", name, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s Accept still blocked after Close", name)
		}
	}
	_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := stalled.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("handshaking connection after Close: read err = %v, want closed", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", m.Addr().String(), time.Second); err == nil {
		t.Error("port still accepts after Close")
	}
}

func TestMuxSidesCloseIndependently(t *testing.T) {
	pki := newTestPKI(t)
	m := listenTestMux(t, pki.node("n1"))
	if err := m.GRPCListener().Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GRPCListener().Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on closed gRPC side: %v", err)
	}
	accepted := acceptAsync(m.RaftLayer(nil))
	c, err := m.RaftLayer(nil).Dial(raft.ServerAddress(m.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatalf("raft side after closing the gRPC side: %v", err)
	}
	c.Close()
	if r := <-accepted; r.err != nil {
		t.Fatal(r.err)
	} else {
		r.conn.Close()
	}
}

func TestListenClusterAdvertiseAddress(t *testing.T) {
	pki := newTestPKI(t)
	material := pki.node("n1")
	if m, err := ListenCluster("0.0.0.0:0", "", material); err == nil {
		m.Close()
		t.Error("binding all interfaces with no advertise address succeeded")
	}
	m, err := ListenCluster("0.0.0.0:0", "127.0.0.1:7401", material)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := m.Addr().String(); got != "127.0.0.1:7401" {
		t.Errorf("Addr() = %s, want the advertised 127.0.0.1:7401", got)
	}
}

func TestRaftLayerDialerCutsLinks(t *testing.T) {
	pki := newTestPKI(t)
	m := listenTestMux(t, pki.node("n1"))
	errCut := errors.New("link cut")
	cut := func(context.Context, string) (net.Conn, error) { return nil, errCut }
	if _, err := m.RaftLayer(cut).Dial(raft.ServerAddress(m.Addr().String()), time.Second); !errors.Is(err, errCut) {
		t.Errorf("Dial through a cut link: %v, want %v", err, errCut)
	}
}

// countingFSM counts applied commands.
type countingFSM struct{ applied atomic.Int64 }

func (f *countingFSM) Apply(*raft.Log) interface{} { return f.applied.Add(1) }

func (f *countingFSM) Snapshot() (raft.FSMSnapshot, error) {
	return countSnapshot(f.applied.Load()), nil
}

func (f *countingFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var n int64
	if err := binary.Read(rc, binary.BigEndian, &n); err != nil {
		return err
	}
	f.applied.Store(n)
	return nil
}

type countSnapshot int64

func (s countSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := binary.Write(sink, binary.BigEndian, int64(s)); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (countSnapshot) Release() {}

// raftPeer is one in-memory Raft server on a real cluster port.
type raftPeer struct {
	t         *testing.T
	id        string
	mux       *Mux
	transport *raft.NetworkTransport
	fsm       *countingFSM
	raft      *raft.Raft
	stopped   bool
}

// newRaftPeer opens the cluster port; start runs Raft on it.
func newRaftPeer(t *testing.T, pki *testPKI, id string) *raftPeer {
	t.Helper()
	mux, err := ListenCluster("127.0.0.1:0", "", pki.node(id))
	if err != nil {
		t.Fatal(err)
	}
	p := &raftPeer{t: t, id: id, mux: mux, fsm: &countingFSM{}}
	p.transport = raft.NewNetworkTransport(mux.RaftLayer(nil), 3, 10*time.Second, io.Discard)
	t.Cleanup(p.stop)
	return p
}

func (p *raftPeer) server(s raft.ServerSuffrage) raft.Server {
	return raft.Server{ID: raft.ServerID(p.id), Address: p.transport.LocalAddr(), Suffrage: s}
}

// start runs Raft, bootstrapping boot first when it has servers.
func (p *raftPeer) start(boot raft.Configuration) {
	p.t.Helper()
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(p.id)
	rc.HeartbeatTimeout = 300 * time.Millisecond
	rc.ElectionTimeout = 300 * time.Millisecond
	rc.LeaderLeaseTimeout = 150 * time.Millisecond
	rc.CommitTimeout = 5 * time.Millisecond
	rc.Logger = hclog.NewNullLogger()
	logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
	if len(boot.Servers) > 0 {
		if err := raft.BootstrapCluster(rc, logs, logs, snaps, p.transport, boot); err != nil {
			p.t.Fatal(err)
		}
	}
	r, err := raft.NewRaft(rc, p.fsm, logs, logs, snaps, p.transport)
	if err != nil {
		p.t.Fatal(err)
	}
	p.raft = r
}

func (p *raftPeer) stop() {
	if p.stopped {
		return
	}
	p.stopped = true
	if p.raft != nil {
		if err := p.raft.Shutdown().Error(); err != nil {
			p.t.Errorf("%s: raft shutdown: %v", p.id, err)
		}
	}
	_ = p.transport.Close()
	_ = p.mux.Close()
}

func (p *raftPeer) configuration() []raft.Server {
	p.t.Helper()
	f := p.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		p.t.Fatal(err)
	}
	return f.Configuration().Servers
}

func TestRaftClusterOverMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	peers := []*raftPeer{newRaftPeer(t, pki, "n1"), newRaftPeer(t, pki, "n2"), newRaftPeer(t, pki, "n3")}
	var boot raft.Configuration
	for _, p := range peers {
		boot.Servers = append(boot.Servers, p.server(raft.Voter))
	}
	peers[0].start(boot)
	peers[1].start(raft.Configuration{})
	peers[2].start(raft.Configuration{})

	leader := peers[0]
	pollUntil(t, 20*time.Second, "n1 to lead", func() bool { return leader.raft.State() == raft.Leader })
	futures := make([]raft.ApplyFuture, 100)
	for i := range futures {
		futures[i] = leader.raft.Apply([]byte(fmt.Sprintf("entry %d", i)), 10*time.Second)
	}
	for i, f := range futures {
		if err := f.Error(); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
	for _, p := range peers {
		pollUntil(t, 20*time.Second, p.id+" to apply 100 entries", func() bool { return p.fsm.applied.Load() == 100 })
	}
	for _, p := range peers[1:] {
		if _, id := p.raft.LeaderWithID(); id != "n1" {
			t.Errorf("%s sees leader %q, want n1", p.id, id)
		}
		if n := len(p.configuration()); n != 3 {
			t.Errorf("%s knows %d servers, want 3", p.id, n)
		}
	}
}
