package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

type regionClient = cofferv1.RegionServiceClient

func callRegion[Req, Resp any](l *leaf, rpc func(regionClient, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	return invoke(l, cofferv1.NewRegionServiceClient, rpc, req)
}

// metaLeaderAPIAddress is the ErrorInfo metadata key under which a
// follower names its region leader's API address (server.MetaLeaderAPIAddress).
const metaLeaderAPIAddress = "leader_api_address"

// callRegionLeader calls a region operation that only the region leader
// answers (reachability is the leader's view): a follower refuses with
// FailedPrecondition naming the leader's API address, and the call is made
// once more there, with the same credentials and TLS settings.
func callRegionLeader[Req, Resp any](l *leaf, rpc func(regionClient, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	resp, err := callRegion(l, rpc, req)
	st, ok := status.FromError(err)
	if err == nil || !ok || st.Code() != codes.FailedPrecondition {
		return resp, err
	}
	info := errorInfo(st)
	addr := info.GetMetadata()[metaLeaderAPIAddress]
	if addr == "" || addr == l.inv.opts.endpoint {
		return resp, err
	}
	if l.inv.conn != nil {
		_ = l.inv.conn.Close()
		l.inv.conn = nil
	}
	l.inv.opts.endpoint = addr
	return callRegion(l, rpc, req)
}

func runRegionList(l *leaf, args []string) error {
	if _, err := l.parse(args); err != nil {
		return err
	}
	resp, err := callRegionLeader(l, regionClient.ListRegions, &cofferv1.ListRegionsRequest{})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.row("REGION", "LOCAL", "PAIRED", "LEADER", "NODES", "HEALTH", "PENDING", "LAG")
		for _, r := range resp.GetRegions() {
			health := "unreachable"
			if r.GetHealthy() {
				health = "healthy"
			}
			lag := ""
			if !r.GetLocal() && r.GetPaired() {
				lag = strconv.FormatFloat(r.GetLagSeconds(), 'f', 3, 64) + "s"
			}
			nodes := ""
			if r.GetAliveNodes() > 0 {
				nodes = strconv.Itoa(int(r.GetAliveNodes()))
			}
			pending := ""
			if !r.GetLocal() && r.GetPaired() {
				pending = strconv.FormatUint(r.GetPendingChanges(), 10)
			}
			t.row(r.GetRegion(), formatBool(r.GetLocal()), formatBool(r.GetPaired()), r.GetLeader(), nodes, health, pending, lag)
		}
	})
}

// runRegionPair pairs the region at --endpoint with the one at
// --peer-endpoint: each call is authenticated in its own region, so
// pairing needs an administrator of both.
func runRegionPair(l *leaf, args []string) error {
	var (
		peerEndpoint = l.fs.String("peer-endpoint", "", "the other region's API `HOST:PORT` (required)")
		peerProfile  = l.fs.String("peer-profile", "", "credentials `PROFILE` for the other region")
		peerCreds    = l.fs.String("peer-credentials-file", "", "credentials `FILE` for the other region (default: --credentials-file)")
		peerCA       = l.fs.String("peer-ca-file", "", "CA `FILE` to verify the other region's API over TLS")
		peerTLS      = l.fs.Bool("peer-tls", false, "use TLS to the other region's API")
	)
	if _, err := l.parse(args); err != nil {
		return err
	}
	if *peerEndpoint == "" {
		return l.usageErrorf("--peer-endpoint is required")
	}
	po := l.inv.opts
	po.endpoint, po.tls, po.caFile = *peerEndpoint, *peerTLS, *peerCA
	po.accessKeyID, po.secretAccessKey = "", "" // the environment's key is for --endpoint's region
	po.profile = *peerProfile
	if *peerCreds != "" {
		po.credentialsFile = *peerCreds
	}
	peerConn, err := po.dial()
	if err != nil {
		return err
	}
	defer peerConn.Close()
	peer := cofferv1.NewRegionServiceClient(peerConn)

	offer, err := callRegion(l, regionClient.GetPairingOffer, &cofferv1.GetPairingOfferRequest{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(l.inv.ctx, l.inv.opts.timeout)
	defer cancel()
	ans, err := peer.PairRegion(ctx, &cofferv1.PairRegionRequest{Peer: offer.GetOffer()})
	if err != nil {
		return fmt.Errorf("pair at %s: %w", *peerEndpoint, err)
	}
	resp, err := callRegion(l, regionClient.PairRegion, &cofferv1.PairRegionRequest{Peer: ans.GetOffer()})
	if err != nil {
		return err
	}
	return l.printLine(resp, fmt.Sprintf("paired %s with %s (replication addresses %s)",
		offer.GetOffer().GetRegion(), ans.GetOffer().GetRegion(), strings.Join(ans.GetOffer().GetAddresses(), ", ")))
}

func runRegionPromote(l *leaf, args []string) error {
	dryRun := l.fs.Bool("dry-run", false, "list the replicas that would be promoted; change nothing")
	pos, err := l.parse(args, "REGION")
	if err != nil {
		return err
	}
	resp, err := callRegionLeader(l, regionClient.PromoteRegion, &cofferv1.PromoteRegionRequest{Region: pos[0], DryRun: *dryRun})
	if err != nil {
		return err
	}
	if l.inv.opts.output == outputTable {
		verb := "promoted"
		if *dryRun {
			verb = "would promote"
		}
		fmt.Fprintf(l.inv.stdout, "%s %d replica(s) in %s\n", verb, len(resp.GetPromoted()), pos[0])
	}
	return l.print(resp, func(t *table) {
		t.row("NAME", "OLD PRIMARY", "ARN")
		for _, p := range resp.GetPromoted() {
			t.row(p.GetName(), p.GetOldPrimaryRegion(), p.GetArn())
		}
	})
}

func runRegionUnpair(l *leaf, args []string) error {
	pos, err := l.parse(args, "REGION")
	if err != nil {
		return err
	}
	resp, err := callRegion(l, regionClient.UnpairRegion, &cofferv1.UnpairRegionRequest{Region: pos[0]})
	if err != nil {
		return err
	}
	return l.printLine(resp, fmt.Sprintf("unpaired %s: %d unacknowledged change(s) dropped; %d secret(s) still list it as a replica region (Failed until paired again or removed)",
		pos[0], resp.GetDroppedChanges(), resp.GetFailedSecrets()))
}

// parseReplicaRegions reads REGION or REGION=KMS_KEY_ID arguments.
func parseReplicaRegions(vals []string) []*cofferv1.ReplicaRegion {
	out := make([]*cofferv1.ReplicaRegion, 0, len(vals))
	for _, v := range vals {
		region, key, _ := strings.Cut(v, "=")
		out = append(out, &cofferv1.ReplicaRegion{Region: region, KmsKeyId: key})
	}
	return out
}

func runReplicate(l *leaf, args []string) error {
	force := l.fs.Bool("force-overwrite-replica", false, "replace a same-named secret in a replica region")
	pos, err := l.parse(args, "ID", "REGION[=KMS_KEY]...")
	if err != nil {
		return err
	}
	resp, err := call(l, client.ReplicateSecretToRegions, &cofferv1.ReplicateSecretToRegionsRequest{
		SecretId: pos[0], AddReplicaRegions: parseReplicaRegions(pos[1:]), ForceOverwriteReplicaSecret: *force,
	})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("ARN", resp.GetArn())
		t.fieldLines("ReplicationStatus", replicationLines(resp.GetReplicationStatus()))
	})
}

func runRemoveRegions(l *leaf, args []string) error {
	pos, err := l.parse(args, "ID", "REGION...")
	if err != nil {
		return err
	}
	resp, err := call(l, client.RemoveRegionsFromReplication, &cofferv1.RemoveRegionsFromReplicationRequest{
		SecretId: pos[0], RemoveReplicaRegions: pos[1:],
	})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("ARN", resp.GetArn())
		t.fieldLines("ReplicationStatus", replicationLines(resp.GetReplicationStatus()))
	})
}

func runStopReplication(l *leaf, args []string) error {
	pos, err := l.parse(args, "ID")
	if err != nil {
		return err
	}
	resp, err := call(l, client.StopReplicationToReplica, &cofferv1.StopReplicationToReplicaRequest{SecretId: pos[0]})
	if err != nil {
		return err
	}
	return l.printLine(resp, "promoted "+cell(resp.GetArn())+" to a standalone primary")
}
