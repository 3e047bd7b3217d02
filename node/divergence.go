package node

import (
	"context"
	"strings"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"google.golang.org/protobuf/proto"
)

// A node a consistency check marked diverged (replication.Node.Diverged)
// serves no client requests: its state is not its region's, so neither
// its reads nor its authentication can be trusted. Both APIs answer
// ServiceUnavailable, naming the reason, before authenticating; gRPC
// health says NOT_SERVING. Only the AdminService still answers, so an
// operator can see the mark (cluster status) and clear it (cluster check).

// refuseDiverged is the error every client request gets while this node is
// marked diverged, or nil.
func (n *Node) refuseDiverged() error {
	d := n.raft.Diverged()
	if d == nil {
		return nil
	}
	return &server.APIError{Type: server.TypeServiceUnavailable, Message: "This node serves no requests: " + d.Error() +
		". Send requests to another node of the region. An operator resyncs this node by wiping its data directory" +
		" (it then restores from a snapshot), or resyncs it and runs `coffer cluster check`; see docs/OPERATIONS.md."}
}

// divergenceGuard refuses gRPC calls other than the AdminService's while
// the node is marked diverged, before auth runs.
func (n *Node) divergenceGuard(auth server.GRPCAuth) server.GRPCAuth {
	admin := "/" + cofferv1.AdminService_ServiceDesc.ServiceName + "/"
	return func(ctx context.Context, fullMethod string, req proto.Message) (server.Identity, error) {
		if !strings.HasPrefix(fullMethod, admin) {
			if err := n.refuseDiverged(); err != nil {
				return server.Identity{}, err
			}
		}
		return auth(ctx, fullMethod, req)
	}
}

// updateServing sets gRPC health: SERVING once the node is ready and while
// it is not marked diverged.
func (n *Node) updateServing() {
	if n.health == nil {
		return
	}
	server.SetServing(n.health, n.serving.Load() && n.raft.Diverged() == nil)
}
