package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Regions is what the region API needs from cross-region replication:
// this region's trust material and addresses, and the WAN view.
type Regions interface {
	// LocalCA is this region's cluster CA certificate, PEM.
	LocalCA() []byte
	// LocalAddresses are this region's region replication addresses.
	LocalAddresses() []string
	// WANRegions lists the regions seen in the WAN pool (this one too).
	WANRegions() []WANRegion
	// Reachable reports whether a region can be reached now: alive in the
	// WAN pool or answering shipments. Only the region leader ships, so only
	// its answer counts (see RegionAPI.onLeader).
	Reachable(region string) bool
	// Leader is this region's Raft leader: its node id and client API
	// address ("" when unknown).
	Leader() (id, apiAddr string)
}

// MetaLeaderAPIAddress is the ErrorInfo metadata key under which a follower
// refusing a leader-only region operation names the leader's API address
// (the CLI calls it there).
const MetaLeaderAPIAddress = "leader_api_address"

// WANRegion is one region as the WAN pool shows it.
type WANRegion struct {
	Region string
	// Leader is the node id gossiping itself as the region's leader.
	Leader string
	// Alive counts the region's alive nodes.
	Alive int
}

// RegionAPI implements coffer.v1.RegionService.
type RegionAPI struct {
	cofferv1.UnimplementedRegionServiceServer
	svc     *Service
	regions Regions
	now     func() time.Time
}

// NewRegionAPI builds the region API over svc and the WAN view.
func NewRegionAPI(svc *Service, regions Regions) *RegionAPI {
	return &RegionAPI{svc: svc, regions: regions, now: time.Now}
}

var _ cofferv1.RegionServiceServer = (*RegionAPI)(nil)

// onLeader refuses, on a node that does not lead the region, the
// operations whose answer depends on which regions are reachable: only the
// leader ships, so only the leader hears from every paired region, and a
// follower's view could call a healthy primary region unreachable. The
// refusal (FailedPrecondition) names the leader and, in ErrorInfo metadata
// MetaLeaderAPIAddress, its API address.
func (a *RegionAPI) onLeader() error {
	if a.svc.rep.IsLeader() {
		return nil
	}
	id, addr := a.regions.Leader()
	if id == "" || addr == "" {
		return apiErr(TypeServiceUnavailable, "Region %s has no known leader to judge other regions' reachability; retry shortly.", a.svc.Region())
	}
	e := apiErr(TypePreconditionNotMet,
		"Region %s judges other regions' reachability on its leader, and this node is not the leader: call the leader %s at %s.",
		a.svc.Region(), id, addr)
	e.Metadata = map[string]string{MetaLeaderAPIAddress: addr, "leader": id}
	return e
}

// ListRegions implements the RegionService operation. It answers on the
// region leader only (onLeader): health and lag are the leader's view.
func (a *RegionAPI) ListRegions(ctx context.Context, _ *cofferv1.ListRegionsRequest) (*cofferv1.ListRegionsResponse, error) {
	if err := a.onLeader(); err != nil {
		return nil, err
	}
	if err := a.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	byName := map[string]*cofferv1.RegionInfo{}
	get := func(name string) *cofferv1.RegionInfo {
		if r, ok := byName[name]; ok {
			return r
		}
		r := &cofferv1.RegionInfo{Region: name, Local: name == a.svc.Region()}
		byName[name] = r
		return r
	}
	get(a.svc.Region())
	for _, w := range a.regions.WANRegions() {
		r := get(w.Region)
		r.Leader, r.AliveNodes = w.Leader, int32(w.Alive)
	}
	peers, err := a.svc.state.RegionPeers()
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		get(p.GetRegion()).Paired = true
	}
	now := a.now()
	for name, r := range byName {
		r.Healthy = r.Local || a.regions.Reachable(name)
		if r.Local || !r.Paired {
			continue
		}
		st, err := a.svc.state.FeedStatus(name)
		if err != nil {
			return nil, err
		}
		r.PendingChanges = st.Pending
		if st.Pending > 0 {
			r.OldestPending = timestamppb.New(st.Oldest)
			r.LagSeconds = max(now.Sub(st.Oldest).Seconds(), 0)
		}
	}
	resp := &cofferv1.ListRegionsResponse{}
	for _, r := range byName {
		resp.Regions = append(resp.Regions, r)
	}
	slices.SortFunc(resp.Regions, func(x, y *cofferv1.RegionInfo) int {
		switch {
		case x.Region < y.Region:
			return -1
		case x.Region > y.Region:
			return 1
		}
		return 0
	})
	return resp, nil
}

func (a *RegionAPI) offer() (*cofferv1.PairingOffer, error) {
	pub, err := a.svc.PairingPublicKey()
	if err != nil {
		return nil, err
	}
	return &cofferv1.PairingOffer{
		Region: a.svc.Region(), CaPem: a.regions.LocalCA(), PublicKey: pub, Addresses: a.regions.LocalAddresses(),
	}, nil
}

// GetPairingOffer implements the RegionService operation.
func (a *RegionAPI) GetPairingOffer(context.Context, *cofferv1.GetPairingOfferRequest) (*cofferv1.GetPairingOfferResponse, error) {
	o, err := a.offer()
	if err != nil {
		return nil, err
	}
	return &cofferv1.GetPairingOfferResponse{Offer: o}, nil
}

// PairRegion implements the RegionService operation: it records the peer's
// CA (trusted only on region replication connections), public key and
// addresses, and answers with this region's offer. Both regions must be
// told (coffer region pair does both), each by a caller authenticated there.
func (a *RegionAPI) PairRegion(ctx context.Context, req *cofferv1.PairRegionRequest) (*cofferv1.PairRegionResponse, error) {
	p := req.GetPeer()
	switch {
	case !idPattern.MatchString(p.GetRegion()):
		return nil, apiErr(TypeInvalidParameter, "Invalid region: %q.", p.GetRegion())
	case p.GetRegion() == a.svc.Region():
		return nil, apiErr(TypeInvalidParameter, "A region can't be paired with itself.")
	case len(p.GetPublicKey()) != 32:
		return nil, apiErr(TypeInvalidParameter, "The pairing public key must be 32 bytes (X25519).")
	case len(p.GetAddresses()) == 0:
		return nil, apiErr(TypeInvalidParameter, "The offer lists no region replication address.")
	}
	ca := parseCAPEM(p.GetCaPem())
	if ca == nil {
		return nil, apiErr(TypeInvalidParameter, "The offer's CA is not a PEM CA certificate.")
	}
	// The operator pins the peer by its CA's fingerprint, read out of band
	// (coffer region info on the peer): an offer swapped on its way would
	// otherwise make this region trust the swapper's CA.
	want := NormalizeFingerprint(req.GetPeerCaSha256())
	if want == "" {
		return nil, apiErr(TypeInvalidParameter, "peer_ca_sha256 is required: the SHA-256 fingerprint of %s's cluster CA certificate, as `coffer region info` prints it there.", p.GetRegion())
	}
	if got := fingerprint(ca); got != want {
		return nil, apiErr(TypeInvalidParameter, "The offer's CA certificate has SHA-256 fingerprint %s, not %s: refusing to pair with %s.", got, want, p.GetRegion())
	}
	// Each region's CA must be its own: the replication port accepts a
	// certificate from any paired region's CA and then checks it against the
	// CA of the region a batch claims, so a CA shared with this region or
	// another peer would let one region ship as another.
	if own := parseCAPEM(a.regions.LocalCA()); own != nil && sameKey(own, ca) {
		return nil, apiErr(TypeInvalidParameter, "The offer's CA is this region's own CA; each region needs its own cluster CA.")
	}
	peers, err := a.svc.state.RegionPeers()
	if err != nil {
		return nil, err
	}
	for _, other := range peers {
		if other.GetRegion() == p.GetRegion() {
			continue // a re-pairing replaces the region's own record
		}
		if oc := parseCAPEM(other.GetCaPem()); oc != nil && sameKey(oc, ca) {
			return nil, apiErr(TypeInvalidParameter, "The offer's CA is also the CA of paired region %s; each region needs its own cluster CA.", other.GetRegion())
		}
	}
	if err := a.svc.PairRegion(ctx, &storagev1.RegionPeer{
		Region: p.GetRegion(), CaPem: p.GetCaPem(), PublicKey: p.GetPublicKey(), Addresses: p.GetAddresses(),
		PairedDate: timestamppb.New(a.svc.now()), AcceptOverwrite: req.GetAcceptOverwrite(),
	}); err != nil {
		return nil, err
	}
	a.svc.log.Info("region paired", "peer_region", p.GetRegion(), "addresses", p.GetAddresses(), "accept_overwrite", req.GetAcceptOverwrite())
	o, err := a.offer()
	if err != nil {
		return nil, err
	}
	return &cofferv1.PairRegionResponse{Offer: o}, nil
}

// CAFingerprint is the hex SHA-256 of the DER encoding of the first
// certificate in caPEM: what pairing pins a peer region by.
func CAFingerprint(caPEM []byte) (string, error) {
	block, _ := pem.Decode(caPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", errors.New("no PEM certificate")
	}
	sum := sha256.Sum256(block.Bytes)
	return hex.EncodeToString(sum[:]), nil
}

// NormalizeFingerprint accepts a SHA-256 fingerprint as people copy it —
// hex in either case, with or without colons (openssl prints
// "AB:CD:…") — and returns it lower-case without colons.
func NormalizeFingerprint(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// parseCAPEM parses a PEM CA certificate; nil when b is not one.
func parseCAPEM(b []byte) *x509.Certificate {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !c.IsCA {
		return nil
	}
	return c
}

// sameKey: two CA certificates with the same public key sign for each
// other (a re-issued certificate of the same CA is the same CA).
func sameKey(a, b *x509.Certificate) bool {
	return bytes.Equal(a.RawSubjectPublicKeyInfo, b.RawSubjectPublicKeyInfo)
}

// SetPairingOptions implements the RegionService operation: it changes
// whether region's shipped records may replace this region's primary
// secrets (accept_overwrite). It is audited like every call; the change is
// logged too.
func (a *RegionAPI) SetPairingOptions(ctx context.Context, req *cofferv1.SetPairingOptionsRequest) (*cofferv1.SetPairingOptionsResponse, error) {
	region := req.GetRegion()
	if !idPattern.MatchString(region) {
		return nil, apiErr(TypeInvalidParameter, "Invalid region: %q.", region)
	}
	if err := a.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	if !a.svc.paired(region) {
		return nil, apiErr(TypeResourceNotFound, "Region %s is not paired with %s.", region, a.svc.Region())
	}
	if err := a.svc.SetPairingOptions(ctx, region, req.GetAcceptOverwrite()); err != nil {
		return nil, err
	}
	a.svc.log.Info("pairing options changed", "peer_region", region, "accept_overwrite", req.GetAcceptOverwrite())
	return &cofferv1.SetPairingOptionsResponse{}, nil
}

// UnpairRegion implements the RegionService operation: the region's record
// and feed position are forgotten, so its certificates are refused, nothing
// more is shipped to it, and the changes kept for it are released. Pairing
// it again sends full copies of the secrets that still list it.
func (a *RegionAPI) UnpairRegion(ctx context.Context, req *cofferv1.UnpairRegionRequest) (*cofferv1.UnpairRegionResponse, error) {
	region := req.GetRegion()
	if !idPattern.MatchString(region) {
		return nil, apiErr(TypeInvalidParameter, "Invalid region: %q.", region)
	}
	if err := a.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	if !a.svc.paired(region) {
		return nil, apiErr(TypeResourceNotFound, "Region %s is not paired with %s.", region, a.svc.Region())
	}
	st, err := a.svc.state.FeedStatus(region)
	if err != nil {
		return nil, err
	}
	if err := a.svc.UnpairRegion(ctx, region); err != nil {
		return nil, err
	}
	resp := &cofferv1.UnpairRegionResponse{DroppedChanges: st.Pending}
	err = a.svc.state.Secrets(func(sec *storagev1.Secret) bool {
		if !sec.GetReplica() && slices.ContainsFunc(sec.GetReplicas(), func(r *storagev1.ReplicaRegionConfig) bool { return r.GetRegion() == region }) {
			resp.FailedSecrets++
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	a.svc.log.Info("region unpaired", "peer_region", region, "dropped_changes", resp.GetDroppedChanges(), "failed_secrets", resp.GetFailedSecrets())
	return resp, nil
}

// PromoteRegion implements the RegionService operation. It runs, dry run
// included, on the region leader only (onLeader): which primary regions are
// unreachable is the leader's view, the one node that ships to them.
func (a *RegionAPI) PromoteRegion(ctx context.Context, req *cofferv1.PromoteRegionRequest) (*cofferv1.PromoteRegionResponse, error) {
	if req.GetRegion() != a.svc.Region() {
		return nil, apiErr(TypeInvalidParameter, "Promotion runs in the region being promoted: this is %s, not %s.", a.svc.Region(), req.GetRegion())
	}
	from := req.GetFromRegion()
	switch {
	case from != "" && !idPattern.MatchString(from):
		return nil, apiErr(TypeInvalidParameter, "Invalid from_region: %q.", from)
	case from == "" && (req.GetPlanned() || req.GetMinAppliedSeq() > 0):
		return nil, apiErr(TypeInvalidParameter, "A planned promotion, or one with min_applied_seq, names the region it takes over from (from_region).")
	}
	if err := a.onLeader(); err != nil {
		return nil, err
	}
	if err := a.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	if min := req.GetMinAppliedSeq(); min > 0 {
		// The switchover's guarantee: everything from's region accepted is
		// applied here before anything is promoted.
		if got := a.svc.state.ReplicaPosition(from); got < min {
			return nil, apiErr(TypeServiceUnavailable, "Region %s has applied %s's changes through position %d, not yet %d; retry shortly.", a.svc.Region(), from, got, min)
		}
	}
	// A planned promotion takes over from a region that is reachable (a
	// switchover, or the failover of a fenced region): the operator, not
	// reachability, decides.
	reachable := a.regions.Reachable
	if req.GetPlanned() {
		reachable = func(r string) bool { return r != from }
	}
	cands, err := a.svc.PromoteCandidates(reachable)
	if err != nil {
		return nil, err
	}
	if from != "" {
		cands = slices.DeleteFunc(cands, func(s *storagev1.Secret) bool { return s.GetPrimaryRegion() != from })
	}
	resp := &cofferv1.PromoteRegionResponse{DryRun: req.GetDryRun()}
	for _, c := range cands {
		resp.Promoted = append(resp.Promoted, &cofferv1.PromotedSecret{Arn: c.GetArn(), Name: c.GetName(), OldPrimaryRegion: c.GetPrimaryRegion()})
	}
	if req.GetDryRun() {
		return resp, nil
	}
	// A failure part way leaves the ones before it promoted; running the
	// command again promotes the rest (the promoted are no longer replicas).
	if _, err := a.svc.PromoteRegionReplicas(ctx, cands); err != nil {
		return nil, err
	}
	return resp, nil
}
