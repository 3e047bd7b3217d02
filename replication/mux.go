package replication

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
)

// handshakeTimeout bounds the TLS handshake of an accepted connection, so a
// client that connects and stalls holds a goroutine and a socket for this
// long at most, and never the accept loop.
const handshakeTimeout = 10 * time.Second

// Dialer opens node-to-node TCP connections. Tests replace it to cut links
// (partitions); the default is a net.Dialer.
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

func defaultDialer(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// Mux is a node's cluster port: a TCP listener doing the TLS handshake
// (ServerConfig) on each accepted connection (in its own goroutine, with a
// handshake deadline, so a slow client can't block accept), then handing it
// to the Raft stream layer when the negotiated protocol is ALPNRaft and to
// the gRPC listener when it is "h2". Connections with another or no
// protocol are closed.
type Mux struct {
	ln               net.Listener
	advertise        *net.TCPAddr
	tls              *ClusterTLS
	serverTLS        *tls.Config
	handshakeTimeout time.Duration

	raft *muxListener
	grpc *muxListener

	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup

	mu          sync.Mutex
	handshaking map[net.Conn]struct{} // accepted, not yet handed over

	// cluster, when set, is this node's cluster id and the logger for
	// refused connections (CheckClusterID).
	cluster atomic.Pointer[clusterCheck]
}

type clusterCheck struct {
	local func() string
	log   *slog.Logger
}

// CheckClusterID makes Raft connections (ALPNRaft, both ways) start with
// an exchange of cluster ids: local returns this node's ("" while it has
// none). A connection between nodes holding different ids is closed, and
// both sides log it, naming both ids. Without it, this port sends an empty
// id and accepts any.
func (m *Mux) CheckClusterID(local func() string, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	m.cluster.Store(&clusterCheck{local: local, log: log})
}

// localClusterID is this node's cluster id as the exchange sends it.
func (m *Mux) localClusterID() (string, *slog.Logger) {
	c := m.cluster.Load()
	if c == nil {
		return "", slog.Default()
	}
	return c.local(), c.log
}

// ListenCluster listens on bindAddr and serves the cluster port.
// advertiseAddr is the address peers dial; "" means the bound address. The
// advertised host must not be unspecified (0.0.0.0 or ::): peers could not
// dial it.
func ListenCluster(bindAddr, advertiseAddr string, t *ClusterTLS) (*Mux, error) {
	return listenCluster(bindAddr, advertiseAddr, t, handshakeTimeout)
}

func listenCluster(bindAddr, advertiseAddr string, t *ClusterTLS, hsTimeout time.Duration) (*Mux, error) {
	if t == nil {
		return nil, errors.New("cluster port: TLS material is required")
	}
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster port: listen on %s: %w", bindAddr, err)
	}
	if advertiseAddr == "" {
		advertiseAddr = ln.Addr().String()
	}
	adv, err := net.ResolveTCPAddr("tcp", advertiseAddr)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("cluster port: advertise address %q: %w", advertiseAddr, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() || adv.Port == 0 {
		ln.Close()
		return nil, fmt.Errorf("cluster port: advertise address %q must be a reachable host:port (set an advertise address when binding to all interfaces)", advertiseAddr)
	}
	m := &Mux{
		ln:               ln,
		advertise:        adv,
		tls:              t,
		serverTLS:        t.ServerConfig(),
		handshakeTimeout: hsTimeout,
		closed:           make(chan struct{}),
		handshaking:      make(map[net.Conn]struct{}),
	}
	m.raft = newMuxListener(m, "raft")
	m.grpc = newMuxListener(m, "grpc")
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

// Addr returns the advertised address (a *net.TCPAddr).
func (m *Mux) Addr() net.Addr { return m.advertise }

// RaftLayer returns the raft.StreamLayer of this port: Accept returns
// ALPNRaft connections; Dial dials through dial (nil means a net.Dialer)
// and does the TLS client handshake with ClientConfig(ALPNRaft); Addr is
// the advertised address. Closing it stops only the Raft side.
func (m *Mux) RaftLayer(dial Dialer) raft.StreamLayer {
	if dial == nil {
		dial = defaultDialer
	}
	return &raftLayer{muxListener: m.raft, tls: m.tls, dial: dial}
}

// GRPCListener returns a net.Listener of the "h2" connections, already
// TLS-terminated, for grpc.Server.Serve with no transport credentials.
// Closing it stops only the gRPC side.
func (m *Mux) GRPCListener() net.Listener { return m.grpc }

// Close closes the TCP listener and both sub-listeners (their Accept
// returns an error wrapping net.ErrClosed) and drops connections still in
// their handshake. Connections already handed over belong to their
// consumers and stay open.
func (m *Mux) Close() error {
	m.closeOnce.Do(func() {
		close(m.closed)
		m.closeErr = m.ln.Close()
		m.mu.Lock()
		for c := range m.handshaking {
			c.Close()
		}
		m.mu.Unlock()
		m.wg.Wait()
	})
	return m.closeErr
}

func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	var backoff time.Duration
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, and keep serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			slog.Warn("cluster port: accept failed", "addr", m.advertise.String(), "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-m.closed:
				return
			}
			continue
		}
		backoff = 0
		if !m.track(conn) {
			conn.Close()
			return
		}
		m.wg.Add(1)
		go m.handshake(conn)
	}
}

// track records conn as handshaking; it reports false once the mux is
// closed, so Close never misses a connection.
func (m *Mux) track(conn net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.closed:
		return false
	default:
	}
	m.handshaking[conn] = struct{}{}
	return true
}

func (m *Mux) untrack(conn net.Conn) {
	m.mu.Lock()
	delete(m.handshaking, conn)
	m.mu.Unlock()
}

func (m *Mux) handshake(conn net.Conn) {
	defer m.wg.Done()
	tc := tls.Server(conn, m.serverTLS)
	_ = conn.SetDeadline(time.Now().Add(m.handshakeTimeout))
	err := tc.Handshake()
	// Untracked before it can be handed over: from then on Close must not
	// touch it (deliver closes it instead if the mux is closing).
	m.untrack(conn)
	if err != nil {
		slog.Debug("cluster port: TLS handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
		conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	var dst *muxListener
	switch proto := tc.ConnectionState().NegotiatedProtocol; proto {
	case ALPNRaft:
		local, log := m.localClusterID()
		if remote, err := exchangeClusterIDs(tc, local, m.handshakeTimeout); err != nil {
			if errors.Is(err, ErrClusterMismatch) {
				log.Error("refused a Raft connection from a node of another cluster: it is not a node of this region, though it has this region's certificates",
					"remote", conn.RemoteAddr().String(), "local_cluster_id", local, "remote_cluster_id", remote)
			} else {
				log.Debug("cluster port: cluster id exchange failed", "remote", conn.RemoteAddr().String(), "err", err)
			}
			tc.Close()
			return
		}
		dst = m.raft
	case alpnRaftLegacy:
		dst = m.raft
	case "h2":
		dst = m.grpc
	default:
		slog.Debug("cluster port: no supported protocol negotiated", "remote", conn.RemoteAddr().String(), "alpn", proto)
		tc.Close()
		return
	}
	dst.deliver(tc)
}

// muxListener is one protocol's side of the cluster port.
type muxListener struct {
	mux       *Mux
	name      string
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

var _ net.Listener = (*muxListener)(nil)

func newMuxListener(m *Mux, name string) *muxListener {
	return &muxListener{mux: m, name: name, conns: make(chan net.Conn), done: make(chan struct{})}
}

// deliver hands c to Accept, or closes it if this side or the mux closes
// first.
func (l *muxListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	case <-l.mux.closed:
		c.Close()
	}
}

// Accept waits for the next connection that negotiated this side's
// protocol.
func (l *muxListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
	case <-l.mux.closed:
	}
	return nil, fmt.Errorf("cluster port %s listener: %w", l.name, net.ErrClosed)
}

// Close stops this side only; the port and the other side keep serving.
func (l *muxListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

// Addr is the port's advertised address.
func (l *muxListener) Addr() net.Addr { return l.mux.advertise }

// raftLayer is the Raft side of the cluster port as a raft.StreamLayer.
type raftLayer struct {
	*muxListener
	tls  *ClusterTLS
	dial Dialer
}

var _ raft.StreamLayer = (*raftLayer)(nil)

// Dial opens a Raft connection to a peer's cluster port and, when the peer
// speaks ALPNRaft, exchanges cluster ids: a peer of another cluster is
// refused (ErrClusterMismatch), and the refusal logged.
func (r *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := dialTLS(ctx, r.dial, string(address), r.tls.ClientConfig(ALPNRaft, alpnRaftLegacy))
	if err != nil {
		return nil, err
	}
	if conn.(*tls.Conn).ConnectionState().NegotiatedProtocol != ALPNRaft {
		return conn, nil
	}
	local, log := r.mux.localClusterID()
	remote, err := exchangeClusterIDs(conn, local, timeout)
	if err != nil {
		conn.Close()
		if errors.Is(err, ErrClusterMismatch) {
			log.Error("refused a Raft connection to a node of another cluster: it is not a node of this region, though it has this region's certificates",
				"peer", string(address), "local_cluster_id", local, "remote_cluster_id", remote)
		}
		return nil, fmt.Errorf("raft connection to %s: %w", address, err)
	}
	return conn, nil
}

// dialTLS dials addr through dial and completes a TLS handshake that must
// negotiate one of cfg's protocols.
func dialTLS(ctx context.Context, dial Dialer, addr string, cfg *tls.Config) (net.Conn, error) {
	conn, err := dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("dial cluster port %s: %w", addr, err)
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS handshake with cluster port %s: %w", addr, err)
	}
	if got := tc.ConnectionState().NegotiatedProtocol; !slices.Contains(cfg.NextProtos, got) {
		tc.Close()
		return nil, fmt.Errorf("cluster port %s negotiated protocol %q, want one of %q", addr, got, cfg.NextProtos)
	}
	return tc, nil
}

// DialCluster returns a gRPC client for a peer's cluster port, with mutual
// TLS under the cluster CA, connecting through dial (nil means a
// net.Dialer), with opts added. Like grpc.NewClient it does not connect
// until first use.
func DialCluster(addr string, t *ClusterTLS, dial Dialer, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if dial == nil {
		dial = defaultDialer
	}
	// passthrough hands addr to the dialer unresolved: the Dialer decides
	// how a peer is reached, and tests cut links there.
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(t.GRPCCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return dial(ctx, a) }),
	}, opts...)
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster gRPC client for %s: %w", addr, err)
	}
	return cc, nil
}
