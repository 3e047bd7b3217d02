package server

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"slices"
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
	// WAN pool or answering shipments.
	Reachable(region string) bool
}

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

// ListRegions implements the RegionService operation.
func (a *RegionAPI) ListRegions(ctx context.Context, _ *cofferv1.ListRegionsRequest) (*cofferv1.ListRegionsResponse, error) {
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
	if !validCAPEM(p.GetCaPem()) {
		return nil, apiErr(TypeInvalidParameter, "The offer's CA is not a PEM CA certificate.")
	}
	if err := a.svc.PairRegion(ctx, &storagev1.RegionPeer{
		Region: p.GetRegion(), CaPem: p.GetCaPem(), PublicKey: p.GetPublicKey(), Addresses: p.GetAddresses(),
		PairedDate: timestamppb.New(a.svc.now()),
	}); err != nil {
		return nil, err
	}
	a.svc.log.Info("region paired", "peer_region", p.GetRegion(), "addresses", p.GetAddresses())
	o, err := a.offer()
	if err != nil {
		return nil, err
	}
	return &cofferv1.PairRegionResponse{Offer: o}, nil
}

func validCAPEM(b []byte) bool {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return false
	}
	c, err := x509.ParseCertificate(block.Bytes)
	return err == nil && c.IsCA
}

// PromoteRegion implements the RegionService operation.
func (a *RegionAPI) PromoteRegion(ctx context.Context, req *cofferv1.PromoteRegionRequest) (*cofferv1.PromoteRegionResponse, error) {
	if req.GetRegion() != a.svc.Region() {
		return nil, apiErr(TypeInvalidParameter, "Promotion runs in the region being promoted: this is %s, not %s.", a.svc.Region(), req.GetRegion())
	}
	if err := a.svc.readPoint(ctx); err != nil {
		return nil, err
	}
	cands, err := a.svc.PromoteCandidates(a.regions.Reachable)
	if err != nil {
		return nil, err
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
