package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/replication/region"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/audit"
	"github.com/cofferhq/coffer/server/rotation"
	"github.com/cofferhq/coffer/server/rotation/rotators"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/storage/kms"
)

// Options configures a node.
type Options struct {
	// DataDir holds state.db and raft/.
	DataDir string
	// GRPCAddr is the client API listen address (":0" picks a port).
	GRPCAddr string
	// GRPCTLS, when set, serves the client API over TLS.
	GRPCTLS *tls.Config
	// AWSAddr is the AWS Secrets Manager protocol listen address; empty
	// turns it off.
	AWSAddr string
	// AWSTLS, when set, serves the AWS API over HTTPS.
	AWSTLS *tls.Config
	// InsecurePlaintext lets an API listen in plaintext on an address off
	// loopback (CheckListener); the node then warns in its log at start
	// and every PlaintextWarnEvery (0: DefaultPlaintextWarnEvery).
	InsecurePlaintext  bool
	PlaintextWarnEvery time.Duration
	// Service configures the API service (ARN parts, intervals).
	Service server.Config
	// Raft configures the Raft node; Dir defaults to DataDir/raft and
	// APIAddr to the API listener's address.
	Raft replication.Config
	// RootKey is the region's root key, released by the seal.
	RootKey []byte
	// SealType names the seal that released RootKey (file, shamir,
	// pkcs11), for the coffer_seal_info metric; "" leaves it out.
	SealType string
	// SealService, when set, is served on the gRPC API behind
	// authentication (seal status, rekey); cmd/cofferd provides it.
	SealService cofferv1.SealServiceServer
	// Logger receives the node's logs.
	Logger *slog.Logger

	// AllowAnonymous lets gRPC calls without credentials through (cofferd
	// dev only). Otherwise every call must authenticate.
	AllowAnonymous bool
	// RootAccessKeyID and RootSecretAccessKey, when set, are the root
	// principal's access key on a region's first start (fixed credentials
	// for test suites); otherwise new ones are made.
	RootAccessKeyID     string
	RootSecretAccessKey string
	// OnRootCredentials is called by the leader of a region with no
	// principal with the root access key it is about to create — the only
	// copy of the secret — before the root principal is proposed. It must
	// keep the key durably; an error stops the node's start-up
	// (WaitReady returns it) and nothing is proposed.
	OnRootCredentials func(accessKeyID, secretAccessKey string) error

	// CertIdentities maps verified gRPC client certificates to principals
	// (GRPCTLS must then ask for client certificates); nil maps none.
	CertIdentities *server.CertIdentities
	// AuditPath is this node's audit log; empty writes none. AuditMaxBytes
	// is its rotation size (0: the audit package's default); AuditSync
	// fsyncs each record before the request is answered.
	AuditPath     string
	AuditMaxBytes int64
	AuditSync     bool
	// AuditRetention says which rotated audit files are deleted (only
	// shipped ones unless it says otherwise); AuditMinFreeBytes is the free
	// space the audit volume keeps back (0: the audit package's default,
	// negative: none).
	AuditRetention    audit.Retention
	AuditMinFreeBytes int64
	// AuditSampleInterval is the interval of the refusal sampler
	// (server.RefusalSampler): 0 means its default, negative records every
	// refusal in full.
	AuditSampleInterval time.Duration
	// Rotation tunes the rotation engine; its clock is always the
	// service's (Service.Clock).
	Rotation rotation.Config
	// Rotators returns the built-in rotators, called once with the
	// service they call back into; nil means rotators.Builtin (PostgreSQL
	// and MySQL, single-user and alternating users).
	Rotators func(api rotation.SecretsAPI) map[string]rotation.Function
	// Region configures cross-region replication; a zero BindAddr turns
	// it off (a region on its own).
	Region RegionOptions
	// Limits bound what callers can make the node do (connections, calls,
	// timeouts, failed authentications); zero fields take DefaultLimits.
	Limits Limits
	// MetricsAddr is the listener of /metrics and the health endpoints;
	// empty turns it off. MetricsTLS, when set, serves it over HTTPS (it
	// is needed off loopback, as for the APIs).
	MetricsAddr string
	MetricsTLS  *tls.Config
	// RequestLogSample logs one request line in this many at Info (0: none;
	// the rest at Debug): server.RequestLog.
	RequestLogSample int
}

// RegionOptions configures the node's cross-region part (replication/region).
type RegionOptions struct {
	// BindAddr is the region replication port; AdvertiseAddr what other
	// regions dial ("" means the bound address).
	BindAddr, AdvertiseAddr string
	// CAPEM is the region's cluster CA certificate, handed to peers when
	// pairing.
	CAPEM []byte
	// WAN is the WAN gossip pool (BindAddr "" disables it).
	WAN replication.MembershipConfig
	// Dial replaces the dialer to other regions (tests cut links with it).
	Dial replication.Dialer
	// Heartbeat and ContactWindow tune reachability; zero takes defaults.
	Heartbeat, ContactWindow time.Duration
}

// Node is a running Coffer node.
type Node struct {
	opts   Options
	log    *slog.Logger
	store  *storage.Store
	raft   *replication.Node
	svc    *server.Service
	iam    *server.IAM
	keys   *server.Keys
	audit  *auditSink
	gate   *server.Gate
	rot    *rotation.Engine
	grpc   *grpc.Server
	health *health.Server
	// dispatch answers unary calls paired regions forward here.
	dispatch *server.Dispatcher
	lis      net.Listener
	// apiAddr is the API address other nodes and clients are told
	// (Raft.APIAddr: advertised, else the listener's).
	apiAddr string
	aws     *http.Server
	awsLis  net.Listener
	region  *region.Manager
	ops     ops

	readiness readiness
	ready     chan struct{}
	serving   atomic.Bool   // ready, and not stopping
	failed    chan struct{} // closed with readyErr set when the node cannot become ready
	readyErr  error
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	stopOnce  sync.Once
}

// Start starts a node. It returns once its listeners are up; Ready closes
// when it serves requests (see waitReady); until then both APIs answer
// ServiceUnavailable. An API listener off loopback without TLS is refused
// (ErrPlaintextListener) unless InsecurePlaintext is set.
func Start(opts Options) (*Node, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := CheckListener("gRPC", opts.GRPCAddr, opts.GRPCTLS != nil, opts.InsecurePlaintext); err != nil {
		return nil, err
	}
	if opts.AWSAddr != "" {
		if err := CheckListener("AWS", opts.AWSAddr, opts.AWSTLS != nil, opts.InsecurePlaintext); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	opts.Limits = opts.Limits.withDefaults()
	n := &Node{opts: opts, log: opts.Logger, ready: make(chan struct{}), failed: make(chan struct{})}
	n.initOps()
	var err error
	// The root key's one copy in this process, in locked memory (the
	// caller wipes its own after Start).
	root, err := kms.NewLockedKey(opts.RootKey, opts.Service.MemoryLock)
	if err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	if !root.Locked() {
		n.log.Warn("the root key is not locked in memory and may be swapped to disk; raise RLIMIT_MEMLOCK (LimitMEMLOCK in the systemd unit, --ulimit memlock for docker)")
	}
	if n.store, err = storage.Open(filepath.Join(opts.DataDir, "state.db")); err != nil {
		return nil, err
	}
	// A snapshot is installed (a Raft snapshot, an operator's restore, the
	// catch-up at start) only if this region's root key opens its keyring.
	n.store.SetKeyringCheck(func(rec *storagev1.Keyring) error {
		return root.Use(func(key []byte) error { return kms.CheckKeyring(key, rec) })
	})
	if n.lis, err = net.Listen("tcp", opts.GRPCAddr); err != nil {
		_ = n.store.Close()
		return nil, fmt.Errorf("listen on %s: %w", opts.GRPCAddr, err)
	}
	rc := opts.Raft
	if rc.Dir == "" {
		rc.Dir = filepath.Join(opts.DataDir, "raft")
	}
	if rc.APIAddr == "" {
		rc.APIAddr = n.lis.Addr().String()
	}
	n.apiAddr = rc.APIAddr
	if rc.Region == "" {
		rc.Region = opts.Service.Region
	}
	if rc.RegionAddr == "" {
		rc.RegionAddr = opts.Region.AdvertiseAddr
		if rc.RegionAddr == "" {
			rc.RegionAddr = opts.Region.BindAddr
		}
	}
	if rc.Logger == nil {
		rc.Logger = opts.Logger
	}
	if rc.DivergedMarker == "" {
		rc.DivergedMarker = filepath.Join(opts.DataDir, "diverged")
	}
	rc.OnDiverged = func(bool) { n.updateServing() }
	if rc.Observer == nil {
		rc.Observer = n.ops.metrics
	}
	if n.raft, err = replication.Start(rc, n.store); err != nil {
		_ = n.lis.Close()
		_ = n.store.Close()
		return nil, err
	}
	if n.svc, err = server.New(opts.Service, n.raft, n.store, root, opts.Logger); err != nil {
		n.shutdownParts()
		return nil, err
	}
	if opts.Rotators == nil {
		opts.Rotators = rotators.Builtin
	}
	n.svc.SetRotators(opts.Rotators(n.svc))
	rotCfg := opts.Rotation
	rotCfg.Now = n.svc.Now
	rotCfg.Observer = n.ops.metrics
	n.rot = rotation.NewEngine(rotCfg, n.svc.RotationBackend(), n.svc, n.svc.ResolveRotationFunction, opts.Logger.With("component", "rotation"))
	gopts := opts.Limits.grpcOptions()
	if opts.GRPCTLS != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(opts.GRPCTLS)))
	}
	n.iam = server.NewIAM(n.svc, n.store)
	n.keys = server.NewKeys(n.svc)
	if opts.AllowAnonymous {
		// Calls without credentials come in as the anonymous principal,
		// which then has full access; elsewhere that name grants nothing.
		n.iam.Authorizer().AllowAnonymous()
	}
	gate := &server.Gate{Authz: n.iam.Authorizer(), Node: rc.NodeID, Log: opts.Logger,
		Limit:  server.NewSourceLimiter(opts.Limits.AuthFailuresPerSecond, opts.Limits.AuthFailureBurst),
		Sample: server.NewRefusalSampler(opts.AuditSampleInterval),
		Region: opts.Service.Region, Ready: n.readiness.check, Metrics: n.ops.metrics,
		RequestLog: server.NewRequestLog(opts.RequestLogSample)}
	if opts.AuditPath != "" {
		n.audit = &auditSink{
			cfg: audit.Config{Path: opts.AuditPath, MaxBytes: opts.AuditMaxBytes, Node: rc.NodeID, Sync: opts.AuditSync,
				Retention: opts.AuditRetention, MinFreeBytes: opts.AuditMinFreeBytes},
			key:     func() ([]byte, error) { return n.svc.DerivedKey(auditPurpose) },
			observe: n.ops.metrics,
		}
		gate.Audit = n.audit
	}
	// Linearizable requests are decided on the state they are served from.
	gate.ReadPoint = n.svc.ReadPoint
	n.gate = gate
	admin := server.NewAdmin(n.raft, opts.Service.Region, rc.NodeID)
	admin.SetSnapshotTimeout(opts.Limits.SnapshotTimeout)
	if n.audit != nil {
		admin.SetAuditHash(n.audit.Hash)
	}
	if opts.Region.BindAddr != "" {
		if n.region, err = region.Start(region.Config{
			Region: opts.Service.Region, NodeID: rc.NodeID, BindAddr: opts.Region.BindAddr, AdvertiseAddr: opts.Region.AdvertiseAddr,
			APIAddr: n.apiAddr, TLS: rc.TLS, CAPEM: opts.Region.CAPEM, WAN: opts.Region.WAN, Dial: opts.Region.Dial,
			Heartbeat: opts.Region.Heartbeat, ContactWindow: opts.Region.ContactWindow, Logger: opts.Logger,
			RegionAddrs: n.lanRegionAddrs,
		}, n.svc, n.store, n.raft); err != nil {
			n.shutdownParts()
			return nil, err
		}
		n.region.SetShipObserver(n.ops.metrics)
	}
	api := server.Services{
		Secrets:  n.svc,
		Admin:    admin,
		IAM:      n.iam,
		Rotation: server.NewRotation(n.svc),
		Region:   server.NewRegionAPI(n.svc, regionView{m: n.region, n: n}),
		Watch:    server.NewWatchAPI(n.svc),
		Keys:     n.keys,
		Seal:     opts.SealService,
	}
	auth := server.NewGRPCAuth(server.GRPCAuthConfig{
		IAM: n.iam, Certs: opts.CertIdentities, AllowAnonymous: opts.AllowAnonymous, Region: opts.Service.Region, Log: opts.Logger,
	})
	// One gRPC endpoint serves every paired region: a unary call for
	// another region is forwarded over the region link (forwardGRPC), and
	// calls forwarded here are answered by the same handlers (dispatch).
	n.dispatch = server.NewGRPCDispatcher(api, opts.Logger, n.divergenceGuard(auth), gate)
	if n.region != nil {
		n.region.SetGRPCHandler(n.answerForwardedGRPC)
	}
	gopts = append(gopts, grpc.ChainUnaryInterceptor(n.forwardGRPC))
	n.grpc, n.health = server.NewGRPCServer(api, opts.Logger, n.divergenceGuard(auth), gate, gopts...)
	if opts.AWSAddr != "" {
		if err := n.startAWS(); err != nil {
			n.shutdownParts()
			return nil, err
		}
	}
	if err := n.startOps(); err != nil {
		n.stopAWS()
		n.shutdownParts()
		return nil, err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.grpc.Serve(server.LimitConnections(n.lis, opts.Limits.ConnectionsPerSource)); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Error("grpc server stopped", "err", err)
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if plain := n.plaintextListeners(); len(plain) > 0 {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.warnPlaintext(ctx, plain)
		}()
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		gate.Sample.Run(ctx, gate) // the last summaries are written before the log closes
	}()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.waitReady(ctx); err != nil {
			n.readyErr = err
			close(n.failed)
			return
		}
		n.serving.Store(true)
		n.updateServing()
		close(n.ready)
		n.log.Info("node ready", "node_id", rc.NodeID, "region", opts.Service.Region, "grpc_addr", n.Addr(),
			"cluster_addr", n.raft.ClusterAddr(), "applied_index", n.store.AppliedIndex())
		if n.audit != nil {
			if _, err := n.audit.open(); err != nil {
				n.log.Error("audit log cannot be opened; every request will fail until it can", "path", opts.AuditPath, "err", err)
			}
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.purgeSessions(ctx)
		}()
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.rot.Run(ctx)
		}()
		n.svc.Run(ctx)
	}()
	return n, nil
}

// purgeSessions removes expired temporary credentials, on the leader, at
// the maintenance interval.
func (n *Node) purgeSessions(ctx context.Context) {
	every := n.opts.Service.MaintenanceInterval
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.iam.PurgeSessions(ctx)
		}
	}
}

// IAM is the node's IAM service (credential lookups for other protocols).
func (n *Node) IAM() *server.IAM { return n.iam }

// Ready is closed once the node serves requests.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// WaitReady blocks until the node serves requests or ctx ends.
func (n *Node) WaitReady(ctx context.Context) error {
	select {
	case <-n.ready:
		return nil
	case <-n.failed:
		return n.readyErr
	case <-ctx.Done():
		return fmt.Errorf("node not ready: %w", ctx.Err())
	}
}

// Addr is the client API's address.
func (n *Node) Addr() string { return n.lis.Addr().String() }

// Raft is the node's Raft member.
func (n *Node) Raft() *replication.Node { return n.raft }

// Service is the node's API service.
func (n *Node) Service() *server.Service { return n.svc }

// Region is the node's cross-region part, or nil when it has none.
func (n *Node) Region() *region.Manager { return n.region }

// Store is the node's state database.
func (n *Node) Store() *storage.Store { return n.store }

// Stop stops the node cleanly: the API stops taking requests, background
// work flushes, Raft leaves and shuts down, the database closes.
func (n *Node) Stop() error {
	var err error
	n.stopOnce.Do(func() {
		n.raft.Stopping()
		n.serving.Store(false)
		server.SetServing(n.health, false)
		n.stopAWS()
		stopped := make(chan struct{})
		go func() { n.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			n.grpc.Stop()
		}
		n.cancel()
		n.stopOps()
		n.wg.Wait()
		err = n.shutdownParts()
	})
	return err
}

func (n *Node) shutdownParts() error {
	var errs []error
	if n.region != nil {
		n.region.Stop()
	}
	if n.raft != nil {
		errs = append(errs, n.raft.Shutdown())
	}
	if n.lis != nil {
		_ = n.lis.Close()
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	if n.audit != nil {
		errs = append(errs, n.audit.Close())
	}
	return errors.Join(errs...)
}

// lanRegionAddrs lists the region replication addresses the region's alive
// nodes gossip in the LAN pool.
func (n *Node) lanRegionAddrs() []string {
	var out []string
	for _, m := range n.raft.Members() {
		if m.Status == replication.MemberAlive && m.Meta.RegionAddr != "" && m.Meta.Region == n.opts.Service.Region {
			out = append(out, m.Meta.RegionAddr)
		}
	}
	return out
}

// regionView adapts the region manager (or its absence) and the node's
// Raft view to what the region API needs.
type regionView struct {
	m *region.Manager
	n *Node
}

// Leader is the region leader's node id and API address (from the LAN
// pool; this node's own address when it leads).
func (v regionView) Leader() (id, apiAddr string) {
	id = v.n.raft.Leader()
	if id == "" {
		return "", ""
	}
	if v.n.raft.IsLeader() {
		return id, v.n.apiAddr
	}
	for _, m := range v.n.raft.Members() {
		if m.Meta.NodeID == id && m.Status == replication.MemberAlive {
			return id, m.Meta.APIAddr
		}
	}
	return id, ""
}

func (v regionView) LocalCA() []byte {
	if v.m == nil {
		return nil
	}
	return v.m.LocalCA()
}

func (v regionView) LocalAddresses() []string {
	if v.m == nil {
		return nil
	}
	return v.m.LocalAddresses()
}

func (v regionView) WANRegions() []server.WANRegion {
	if v.m == nil {
		return nil
	}
	var out []server.WANRegion
	for _, r := range v.m.Regions() {
		out = append(out, server.WANRegion{Region: r.Region, Leader: r.Leader, Alive: r.Alive})
	}
	return out
}

func (v regionView) Reachable(name string) bool { return v.m != nil && v.m.Reachable(name) }
