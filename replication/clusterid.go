package replication

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
)

// A region's cluster id is chosen at random by its first leader
// (InitCluster, first one wins) and kept in its state, so every node that
// has applied it, or installed a snapshot carrying it, holds it. Two nodes
// holding different ids belong to different regions that only look alike
// (formed from one configuration, one CA and one gossip key): they refuse
// Raft connections and cluster RPCs from each other, and a leader never
// adds a member gossiping another id. A node without an id yet (a fresh
// node waiting to be added) accepts any.

// ErrClusterMismatch: the peer holds another cluster id than this node.
var ErrClusterMismatch = errors.New("the peer belongs to another cluster")

const (
	// clusterIDHeader carries the caller's cluster id on every cluster RPC.
	clusterIDHeader = "x-coffer-cluster-id"
	// reasonClusterMismatch marks a cluster RPC refused for another id.
	reasonClusterMismatch = "CLUSTER_MISMATCH"
	// clusterIDMagic starts the cluster id exchange on a Raft connection.
	clusterIDMagic = "CCID"
)

// newClusterID returns a random cluster id: 32 hex digits.
func newClusterID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("replication: crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// sameCluster reports whether nodes holding ids a and b may talk: unless
// both hold one, and they differ.
func sameCluster(a, b string) bool { return a == "" || b == "" || a == b }

func mismatch(local, remote string) error {
	return fmt.Errorf("%w: this node holds cluster id %s, the peer %s", ErrClusterMismatch, local, remote)
}

// exchangeClusterIDs sends local's cluster id on a fresh Raft connection
// and reads the peer's (both sides write, then read), within timeout. It
// returns the peer's id, and ErrClusterMismatch when the two differ.
func exchangeClusterIDs(conn net.Conn, local string, timeout time.Duration) (string, error) {
	if len(local) > 255 {
		return "", fmt.Errorf("cluster id %q is too long", local)
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	hello := append([]byte(clusterIDMagic), byte(len(local)))
	if _, err := conn.Write(append(hello, local...)); err != nil {
		return "", fmt.Errorf("send cluster id: %w", err)
	}
	var hdr [len(clusterIDMagic) + 1]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return "", fmt.Errorf("read the peer's cluster id: %w", err)
	}
	if string(hdr[:len(clusterIDMagic)]) != clusterIDMagic {
		return "", errors.New("the peer sent no cluster id")
	}
	remote := make([]byte, hdr[len(clusterIDMagic)])
	if _, err := io.ReadFull(conn, remote); err != nil {
		return "", fmt.Errorf("read the peer's cluster id: %w", err)
	}
	if !sameCluster(local, string(remote)) {
		return string(remote), mismatch(local, string(remote))
	}
	return string(remote), nil
}

// clusterIDCallOption adds this node's cluster id to every cluster RPC it
// makes, for the callee to check.
func clusterIDCallOptions(local func() string) []grpc.DialOption {
	add := func(ctx context.Context) context.Context {
		return metadata.AppendToOutgoingContext(ctx, clusterIDHeader, local())
	}
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(add(ctx), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(add(ctx), desc, cc, method, opts...)
		}),
	}
}

// clusterIDGuard refuses cluster RPCs from nodes of another cluster.
type clusterIDGuard struct {
	local func() string
	log   *slog.Logger
}

func (g clusterIDGuard) check(ctx context.Context, method string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	remote := ""
	if v := md.Get(clusterIDHeader); len(v) > 0 {
		remote = v[0]
	}
	local := g.local()
	if sameCluster(local, remote) {
		return nil
	}
	g.log.Error("refused a cluster RPC from a node of another cluster: it is not a node of this region, though it has this region's certificates",
		"method", method, "local_cluster_id", local, "remote_cluster_id", remote)
	st := status.New(codes.FailedPrecondition, mismatch(local, remote).Error())
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reasonClusterMismatch, Domain: statusDomain,
		Metadata: map[string]string{"local_cluster_id": local, "remote_cluster_id": remote}}); err == nil {
		st = d
	}
	return st.Err()
}

func (g clusterIDGuard) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := g.check(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if err := g.check(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return handler(srv, ss)
		}),
	}
}

// ClusterID is the cluster id in this node's state, or "" before it has
// one.
func (n *Node) ClusterID() string { return n.store.ClusterID() }

// ensureClusterID gives the region its cluster id when this node leads a
// region that has none (a new region, or one formed before cluster ids
// existed), once per term. Two leaders proposing in turn is harmless: the
// first InitCluster applied wins.
func (n *Node) ensureClusterID(ctx context.Context) {
	if !n.IsLeader() || n.store.ClusterID() != "" {
		return
	}
	term := n.raft.CurrentTerm()
	if n.idProposedTerm == term {
		return
	}
	n.idProposedTerm = term
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	cmd := &raftv1.Command{Header: &raftv1.Header{Time: timestamppb.Now()},
		Op: &raftv1.Command_InitCluster{InitCluster: &raftv1.InitCluster{ClusterId: newClusterID()}}}
	if _, err := n.Apply(ctx, cmd); err != nil {
		n.log.Warn("could not give the region a cluster id; will try again in the next term", "err", err)
		return
	}
	n.log.Info("the region has its cluster id", "cluster_id", n.store.ClusterID())
}
