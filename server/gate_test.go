package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/replication"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeCluster is an admin Cluster that counts the snapshots it streams and
// restores.
type fakeCluster struct {
	Cluster
	mu              sync.Mutex
	saves, restores int
}

func (c *fakeCluster) SaveSnapshot(_ context.Context, w io.Writer, begin func(replication.SnapshotInfo)) error {
	c.mu.Lock()
	c.saves++
	c.mu.Unlock()
	begin(replication.SnapshotInfo{Size: 4, Index: 1})
	_, err := w.Write([]byte("snap"))
	return err
}

func (c *fakeCluster) RestoreSnapshot(_ context.Context, _ int64, r io.Reader) (uint64, error) {
	c.mu.Lock()
	c.restores++
	c.mu.Unlock()
	_, err := io.Copy(io.Discard, r)
	return 1, err
}

func (c *fakeCluster) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.saves, c.restores
}

// startGated serves svc and an AdminService over cluster through gate, as
// root for every caller.
func startGated(t *testing.T, svc *Service, gate *Gate, cluster Cluster) *grpc.ClientConn {
	t.Helper()
	auth := func(context.Context, string, proto.Message) (Identity, error) {
		return Identity{Principal: RootPrincipal}, nil
	}
	gs, _ := NewGRPCServer(Services{Secrets: svc}, slog.New(slog.NewTextHandler(io.Discard, nil)), auth, gate)
	cofferv1.RegisterAdminServiceServer(gs, NewAdmin(cluster, "us-east-1", "n1"))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestBrokenAuditLogRefusesRequestsBeforeTheyAct(t *testing.T) {
	svc, _ := newTestService(t)
	ctx := context.Background()
	v := "first"
	created, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "app/db", ClientRequestToken: tokA, SecretString: &v})
	if err != nil {
		t.Fatal(err)
	}
	log := &fakeAudit{}
	cluster := &fakeCluster{}
	conn := startGated(t, svc, &Gate{Audit: log, Node: "n1", Log: quiet}, cluster)
	sm, admin := cofferv1.NewSecretsManagerServiceClient(conn), cofferv1.NewAdminServiceClient(conn)

	log.set(true, errors.New("no space left on device")) // broken, and the probe fails too
	next := "second"
	_, err = sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "app/db", ClientRequestToken: tokB, SecretString: &next})
	if TypeOf(err) != TypeInternalServiceError {
		t.Fatalf("PutSecretValue with a broken audit log = %v, want InternalServiceError", err)
	}
	versions, err := svc.ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: created.GetArn()})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(versions.GetVersions()); n != 1 {
		t.Errorf("the refused write committed: %d versions", n)
	}

	save, err := admin.SaveSnapshot(ctx, &cofferv1.SaveSnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := save.Recv(); TypeOf(err) != TypeInternalServiceError {
		t.Fatalf("SaveSnapshot with a broken audit log: first message %v, error %v; want InternalServiceError", m, err)
	}
	restore, err := admin.RestoreSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = restore.Send(&cofferv1.RestoreSnapshotRequest{Part: &cofferv1.RestoreSnapshotRequest_Size{Size: 4}})
	_ = restore.Send(&cofferv1.RestoreSnapshotRequest{Part: &cofferv1.RestoreSnapshotRequest_Chunk{Chunk: []byte("snap")}})
	if _, err := restore.CloseAndRecv(); TypeOf(err) != TypeInternalServiceError {
		t.Fatalf("RestoreSnapshot with a broken audit log = %v, want InternalServiceError", err)
	}
	if saves, restores := cluster.counts(); saves != 0 || restores != 0 {
		t.Errorf("the cluster streamed %d snapshots and restored %d with a broken audit log", saves, restores)
	}

	// The log still reports itself broken, but the refusal record goes in
	// (the probe a real log heals by): the request is refused, and its
	// record says why.
	log.set(false, errors.New("no space left on device"))
	_, err = sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "app/db", ClientRequestToken: tokB, SecretString: &next})
	if TypeOf(err) != TypeInternalServiceError {
		t.Fatalf("PutSecretValue with an unhealthy log = %v", err)
	}
	recs := log.written()
	if len(recs) != 1 || recs[0].Operation != "PutSecretValue" || recs[0].Decision != "deny" || recs[0].Outcome != "error" ||
		recs[0].ErrorType != TypeInternalServiceError || recs[0].Principal != RootPrincipal {
		t.Fatalf("records %+v, want one refused PutSecretValue", recs)
	}

	log.set(false, nil)
	if _, err := sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "app/db", ClientRequestToken: tokB, SecretString: &next}); err != nil {
		t.Fatalf("PutSecretValue with a healthy log: %v", err)
	}
	m, err := admin.SaveSnapshot(ctx, &cofferv1.SaveSnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := m.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("SaveSnapshot with a healthy log: %v", err)
			}
			break
		}
	}
	if saves, _ := cluster.counts(); saves != 1 {
		t.Errorf("%d snapshots streamed with a healthy log, want 1", saves)
	}
}

func TestPanicsAreAudited(t *testing.T) {
	log := &fakeAudit{}
	gate := &Gate{Audit: log, Node: "n1", Log: quiet}
	auth := func(context.Context, string, proto.Message) (Identity, error) { return Identity{Principal: "ops"}, nil }
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))

	unary := unaryInterceptor(discard, auth, gate)
	info := &grpc.UnaryServerInfo{FullMethod: "/coffer.v1.SecretsManagerService/GetSecretValue"}
	resp, err := unary(context.Background(), &cofferv1.GetSecretValueRequest{SecretId: "app/db"}, info, func(context.Context, any) (any, error) {
		panic("boom")
	})
	if resp != nil || apiType(err) != TypeInternalServiceError {
		t.Fatalf("a panicking unary call = %v, %v; want InternalServiceError", resp, err)
	}

	stream := streamInterceptor(discard, auth, gate)
	sinfo := &grpc.StreamServerInfo{FullMethod: "/coffer.v1.AdminService/SaveSnapshot", IsServerStream: true}
	err = stream(nil, ctxStream{ctx: context.Background()}, sinfo, func(any, grpc.ServerStream) error { panic("boom") })
	if apiType(err) != TypeInternalServiceError {
		t.Fatalf("a panicking stream = %v, want InternalServiceError", err)
	}

	recs := log.written()
	if len(recs) != 2 {
		t.Fatalf("%d records for two panicking requests: %+v", len(recs), recs)
	}
	for i, op := range []string{"GetSecretValue", "SaveSnapshot"} {
		if r := recs[i]; r.Operation != op || r.Principal != "ops" || r.Outcome != "error" || r.ErrorType != TypeInternalServiceError || r.RequestID == "" {
			t.Errorf("record of the panicking %s: %+v", op, r)
		}
	}
}

// ctxStream is a grpc.ServerStream with only a context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }

func TestBatchGetSecretValueAuditNamesTheSecrets(t *testing.T) {
	svc, store := newTestService(t)
	ctx := context.Background()
	var arns, versions []string
	for _, name := range []string{"app/a", "app/b"} {
		v := "value of " + name
		out, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, SecretString: &v})
		if err != nil {
			t.Fatal(err)
		}
		arns, versions = append(arns, out.GetArn()), append(versions, out.GetVersionId())
	}
	log := &fakeAudit{}
	gate := &Gate{Authz: NewIAM(svc, store).Authorizer(), Audit: log, Node: "n1", Log: quiet}
	req := &cofferv1.BatchGetSecretValueRequest{SecretIdList: []string{"app/a", arns[1], "app/missing"}}
	call := Call{Protocol: "grpc", Operation: "BatchGetSecretValue", Action: "secretsmanager:BatchGetSecretValue",
		Caller: Caller{Principal: RootPrincipal}, Request: req}
	ctx, x, err := gate.Begin(WithConsistency(ctx, Consistency{}), call)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Serve(func() (proto.Message, error) { return svc.BatchGetSecretValue(ctx, req) }); err != nil {
		t.Fatal(err)
	}
	recs := log.written()
	if len(recs) != 1 {
		t.Fatalf("records %+v", recs)
	}
	got := recs[0].Secrets
	if len(got) != 3 || got[0].ARN != arns[0] || got[0].VersionID != versions[0] || got[1].ARN != arns[1] || got[1].VersionID != versions[1] ||
		got[2].ARN != "app/missing" || got[2].ErrorType != TypeResourceNotFound || got[2].VersionID != "" {
		t.Errorf("the batch read is recorded as %+v, want both values read (ARN and version) and the missing one", got)
	}
}

func TestAdminAuditHash(t *testing.T) {
	admin := NewAdmin(&fakeCluster{}, "us-east-1", "n1")
	ctx := context.Background()
	if _, err := admin.AuditHash(ctx, &cofferv1.AuditHashRequest{Value: []byte("v")}); apiType(err) != TypeInvalidRequest {
		t.Fatalf("AuditHash on a node without an audit log = %v, want InvalidRequest", err)
	}
	admin.SetAuditHash(func(v string) (string, error) { return "hmac-sha256:" + v + "!", nil })
	resp, err := admin.AuditHash(ctx, &cofferv1.AuditHashRequest{Value: []byte("v")})
	if err != nil || resp.GetHash() != "hmac-sha256:v!" {
		t.Fatalf("AuditHash = %v, %v", resp, err)
	}
	admin.SetAuditHash(func(string) (string, error) { return "", errKeyringNotReady })
	if _, err := admin.AuditHash(ctx, &cofferv1.AuditHashRequest{Value: []byte("v")}); apiType(err) != TypeServiceUnavailable {
		t.Fatalf("AuditHash before the keyring exists = %v, want ServiceUnavailable", err)
	}
	// Its own record keeps only the value's hash.
	p := auditParams(&cofferv1.AuditHashRequest{Value: []byte("the-canary")}, func(v string) string { return "hashed" })
	if p["value"] != "hashed" {
		t.Errorf("AuditHash's params %v, want the value hashed", p)
	}
}
