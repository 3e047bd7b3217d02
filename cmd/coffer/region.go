package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
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
// pairing needs an administrator of both. The peer is pinned by the
// fingerprint of its CA, which its operator read out of band (coffer region
// info there): an offer that does not match is refused before either region
// records anything. Both links must be TLS or loopback; --insecure does not
// apply.
func runRegionPair(l *leaf, args []string) error {
	var (
		peerEndpoint = l.fs.String("peer-endpoint", "", "the other region's API `HOST:PORT` (required)")
		peerCASHA256 = l.fs.String("peer-ca-sha256", "", "SHA-256 fingerprint (`HEX`) of the other region's cluster CA, as coffer region info prints it there (required)")
		peerProfile  = l.fs.String("peer-profile", "", "credentials `PROFILE` for the other region")
		peerCreds    = l.fs.String("peer-credentials-file", "", "credentials `FILE` for the other region (default: --credentials-file)")
		peerCA       = l.fs.String("peer-ca-file", "", "CA `FILE` to verify the other region's API over TLS")
		peerTLS      = l.fs.Bool("peer-tls", false, "use TLS to the other region's API")
		peerRegion   = l.fs.String("peer-region", "", "region `NAME` calls to the other region are signed for (default: the one its node names)")
		accept       = l.fs.Bool("accept-overwrite", false, "let each region's ForceOverwriteReplicaSecret replace the other's primary secrets")
	)
	if _, err := l.parse(args); err != nil {
		return err
	}
	want := server.NormalizeFingerprint(*peerCASHA256)
	switch {
	case *peerEndpoint == "":
		return l.usageErrorf("--peer-endpoint is required")
	case want == "":
		return l.usageErrorf("--peer-ca-sha256 is required: the SHA-256 fingerprint of the other region's cluster CA, as `coffer region info` prints it there (or `cofferd ca create` printed it)")
	case len(want) != 64 || strings.Trim(want, "0123456789abcdef") != "":
		return l.usageErrorf("--peer-ca-sha256 %q: want 64 hex digits (a SHA-256 fingerprint)", *peerCASHA256)
	}
	po := l.inv.opts
	po.endpoint, po.tls, po.caFile, po.region = *peerEndpoint, *peerTLS, *peerCA, *peerRegion
	po.accessKeyID, po.secretAccessKey, po.sessionToken = "", "", "" // the environment's key is for --endpoint's region
	po.profile = *peerProfile
	if *peerCreds != "" {
		po.credentialsFile = *peerCreds
	}
	for _, o := range []options{l.inv.opts, po} {
		if !o.secure() && !loopbackEndpoint(o.endpoint) {
			return l.usageErrorf("pairing over plaintext to %s is refused: a swapped offer would make the region trust another CA; "+
				"use TLS (--tls/--ca-file for --endpoint, --peer-tls/--peer-ca-file for --peer-endpoint), plaintext is only for loopback", o.endpoint)
		}
	}
	peerConn, err := po.dial()
	if err != nil {
		return err
	}
	defer peerConn.Close()
	peer := cofferv1.NewRegionServiceClient(peerConn)
	ctx, cancel := context.WithTimeout(l.inv.ctx, l.inv.opts.timeout)
	defer cancel()

	// The peer's offer is checked before anything is recorded on either side.
	peerOffer, err := peer.GetPairingOffer(ctx, &cofferv1.GetPairingOfferRequest{})
	if err != nil {
		return fmt.Errorf("pairing offer of %s: %w", *peerEndpoint, err)
	}
	if err := checkFingerprint(peerOffer.GetOffer(), want, *peerEndpoint); err != nil {
		return err
	}
	offer, err := callRegion(l, regionClient.GetPairingOffer, &cofferv1.GetPairingOfferRequest{})
	if err != nil {
		return err
	}
	// This region's offer came over the link to --endpoint (TLS or
	// loopback); the peer pins it by its own fingerprint.
	own, err := offerFingerprint(offer.GetOffer(), l.inv.opts.endpoint)
	if err != nil {
		return err
	}
	ans, err := peer.PairRegion(ctx, &cofferv1.PairRegionRequest{Peer: offer.GetOffer(), PeerCaSha256: own, AcceptOverwrite: *accept})
	if err != nil {
		return fmt.Errorf("pair at %s: %w", *peerEndpoint, err)
	}
	if err := checkFingerprint(ans.GetOffer(), want, *peerEndpoint); err != nil {
		return err
	}
	resp, err := callRegion(l, regionClient.PairRegion, &cofferv1.PairRegionRequest{Peer: ans.GetOffer(), PeerCaSha256: want, AcceptOverwrite: *accept})
	if err != nil {
		return err
	}
	return l.printLine(resp, fmt.Sprintf("paired %s with %s (CA SHA-256 %s; replication addresses %s)",
		offer.GetOffer().GetRegion(), ans.GetOffer().GetRegion(), want, strings.Join(ans.GetOffer().GetAddresses(), ", ")))
}

// errFingerprintMismatch: the peer's offer names a CA other than the one
// the operator pinned.
var errFingerprintMismatch = errors.New("the other region's CA does not have the fingerprint given with --peer-ca-sha256; refusing to pair (check the value with coffer region info on that region; someone may be in the middle)")

// offerFingerprint is the fingerprint of the CA in a pairing offer; a node
// without a region replication port offers none.
func offerFingerprint(o *cofferv1.PairingOffer, endpoint string) (string, error) {
	if len(o.GetCaPem()) == 0 {
		return "", fmt.Errorf("%s has no region replication port configured (regions.bind_addr, --region-addr), so its region cannot pair", endpoint)
	}
	fp, err := server.CAFingerprint(o.GetCaPem())
	if err != nil {
		return "", fmt.Errorf("pairing offer of %s: %w", endpoint, err)
	}
	return fp, nil
}

// checkFingerprint refuses an offer whose CA is not the one pinned.
func checkFingerprint(o *cofferv1.PairingOffer, want, endpoint string) error {
	got, err := offerFingerprint(o, endpoint)
	if err != nil {
		return err
	}
	if got != want {
		return &exitError{code: exitDenied, msg: fmt.Sprintf("%v: %s answered with CA SHA-256 %s, not %s", errFingerprintMismatch, endpoint, got, want)}
	}
	return nil
}

// runRegionInfo prints what another region's operator needs to pair with
// this one: its name, its CA's fingerprint (for --peer-ca-sha256) and its
// replication addresses.
func runRegionInfo(l *leaf, args []string) error {
	if _, err := l.parse(args); err != nil {
		return err
	}
	resp, err := callRegion(l, regionClient.GetPairingOffer, &cofferv1.GetPairingOfferRequest{})
	if err != nil {
		return err
	}
	o := resp.GetOffer()
	fp, err := offerFingerprint(o, l.inv.opts.endpoint)
	if err != nil {
		return err
	}
	if l.inv.opts.output == outputJSON {
		b, err := json.MarshalIndent(map[string]any{"region": o.GetRegion(), "caSha256": fp, "addresses": o.GetAddresses()}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(l.inv.stdout, "%s\n", b)
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("Region", o.GetRegion())
		t.field("CA SHA-256", fp)
		t.fieldLines("Replication addresses", o.GetAddresses())
	})
}

func runRegionPromote(l *leaf, args []string) error {
	dryRun := l.fs.Bool("dry-run", false, "list the replicas that would be promoted; change nothing")
	from := l.fs.String("from", "", "only the replicas whose primary is `REGION`")
	planned := l.fs.Bool("planned", false, "promote --from's replicas although it is reachable (it is fenced, or being switched over)")
	pos, err := l.parse(args, "REGION")
	if err != nil {
		return err
	}
	if *planned && *from == "" {
		return l.usageErrorf("--planned needs --from REGION")
	}
	resp, err := callRegionLeader(l, regionClient.PromoteRegion, &cofferv1.PromoteRegionRequest{Region: pos[0], DryRun: *dryRun, FromRegion: *from, Planned: *planned})
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

func runRegionSetPairing(l *leaf, args []string) error {
	accept := l.fs.String("accept-overwrite", "", "`true` or `false`: whether REGION's ForceOverwriteReplicaSecret may replace secrets that are primary here (required)")
	pos, err := l.parse(args, "REGION")
	if err != nil {
		return err
	}
	on, perr := strconv.ParseBool(*accept)
	if perr != nil {
		return l.usageErrorf("--accept-overwrite=true or --accept-overwrite=false is required")
	}
	resp, err := callRegion(l, regionClient.SetPairingOptions, &cofferv1.SetPairingOptionsRequest{Region: pos[0], AcceptOverwrite: on})
	if err != nil {
		return err
	}
	return l.printLine(resp, fmt.Sprintf("pairing with %s: accept_overwrite=%v", pos[0], on))
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
