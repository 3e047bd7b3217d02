package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// fakeRegions answers RegionService as a leader, or, with leaderAddr set,
// refuses as a follower naming the leader the way the server does.
type fakeRegions struct {
	cofferv1.UnimplementedRegionServiceServer
	leaderAddr string

	mu    sync.Mutex
	calls []string
}

func (f *fakeRegions) note(m string) error {
	f.mu.Lock()
	f.calls = append(f.calls, m)
	leaderAddr := f.leaderAddr
	f.mu.Unlock()
	if leaderAddr == "" {
		return nil
	}
	st, _ := status.New(codes.FailedPrecondition, "Region eu-west-1 judges other regions' reachability on its leader").WithDetails(
		&errdetails.ErrorInfo{Reason: "PreconditionNotMetException", Domain: errorDomain, Metadata: map[string]string{metaLeaderAPIAddress: leaderAddr}})
	return st.Err()
}

func (f *fakeRegions) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeRegions) PromoteRegion(_ context.Context, req *cofferv1.PromoteRegionRequest) (*cofferv1.PromoteRegionResponse, error) {
	if err := f.note("PromoteRegion"); err != nil {
		return nil, err
	}
	return &cofferv1.PromoteRegionResponse{DryRun: req.GetDryRun(), Promoted: []*cofferv1.PromotedSecret{{Name: "db", OldPrimaryRegion: "us-east-1", Arn: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf"}}}, nil
}

func (f *fakeRegions) ListRegions(context.Context, *cofferv1.ListRegionsRequest) (*cofferv1.ListRegionsResponse, error) {
	if err := f.note("ListRegions"); err != nil {
		return nil, err
	}
	return &cofferv1.ListRegionsResponse{Regions: []*cofferv1.RegionInfo{{Region: "eu-west-1", Local: true, Healthy: true}}}, nil
}

func (f *fakeRegions) UnpairRegion(_ context.Context, req *cofferv1.UnpairRegionRequest) (*cofferv1.UnpairRegionResponse, error) {
	if err := f.note("UnpairRegion " + req.GetRegion()); err != nil {
		return nil, err
	}
	return &cofferv1.UnpairRegionResponse{DroppedChanges: 12, FailedSecrets: 3}, nil
}

func startFakeRegions(t *testing.T, f cofferv1.RegionServiceServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	cofferv1.RegisterRegionServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestRegionCommandsFollowTheLeader: a follower refuses promote and list,
// naming the leader's API address; coffer asks the leader there, once.
func TestRegionCommandsFollowTheLeader(t *testing.T) {
	leader := &fakeRegions{}
	leaderAddr := startFakeRegions(t, leader)
	follower := &fakeRegions{leaderAddr: leaderAddr}
	followerAddr := startFakeRegions(t, follower)

	r := runCLI(t, "", "--endpoint", followerAddr, "region", "promote", "eu-west-1", "--dry-run")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "would promote 1 replica(s) in eu-west-1") {
		t.Fatalf("stdout %q", r.stdout)
	}
	r = runCLI(t, "", "--endpoint", followerAddr, "region", "list")
	mustSucceed(t, r)
	if got := leader.received(); strings.Join(got, ",") != "PromoteRegion,ListRegions" {
		t.Fatalf("leader received %v", got)
	}
	if got := follower.received(); strings.Join(got, ",") != "PromoteRegion,ListRegions" {
		t.Fatalf("follower received %v", got)
	}

	// A refusal naming the address just called is not followed again.
	loop := &fakeRegions{}
	loopAddr := startFakeRegions(t, loop)
	loop.mu.Lock()
	loop.leaderAddr = loopAddr
	loop.mu.Unlock()
	r = runCLI(t, "", "--endpoint", loopAddr, "region", "list")
	if r.code == 0 || len(loop.received()) != 1 {
		t.Fatalf("exit %d after %v", r.code, loop.received())
	}
}

func (f *fakeRegions) SetPairingOptions(_ context.Context, req *cofferv1.SetPairingOptionsRequest) (*cofferv1.SetPairingOptionsResponse, error) {
	if err := f.note(fmt.Sprintf("SetPairingOptions %s %v", req.GetRegion(), req.GetAcceptOverwrite())); err != nil {
		return nil, err
	}
	return &cofferv1.SetPairingOptionsResponse{}, nil
}

// TestRegionSetPairing (issue 13, item 1): the audited call that gives or
// withdraws a region's consent to overwrite this region's primaries.
func TestRegionSetPairing(t *testing.T) {
	f := &fakeRegions{}
	addr := startFakeRegions(t, f)
	r := runCLI(t, "", "--endpoint", addr, "region", "set-pairing", "us-east-1", "--accept-overwrite=true")
	mustSucceed(t, r)
	if r.stdout != "pairing with us-east-1: accept_overwrite=true\n" || strings.Join(f.received(), ",") != "SetPairingOptions us-east-1 true" {
		t.Fatalf("stdout %q, calls %v", r.stdout, f.received())
	}
	if r := runCLI(t, "", "--endpoint", addr, "region", "set-pairing", "us-east-1"); r.code != exitUsage {
		t.Fatalf("set-pairing without --accept-overwrite: exit %d", r.code)
	}
}

func TestRegionUnpair(t *testing.T) {
	f := &fakeRegions{}
	addr := startFakeRegions(t, f)
	r := runCLI(t, "", "--endpoint", addr, "region", "unpair", "ap-south-1")
	mustSucceed(t, r)
	want := "unpaired ap-south-1: 12 unacknowledged change(s) dropped; 3 secret(s) still list it as a replica region (Failed until paired again or removed)\n"
	if r.stdout != want || strings.Join(f.received(), ",") != "UnpairRegion ap-south-1" {
		t.Fatalf("stdout %q, calls %v", r.stdout, f.received())
	}
	if r := runCLI(t, "", "--endpoint", addr, "region", "unpair"); r.code != exitUsage {
		t.Fatalf("unpair without REGION: exit %d", r.code)
	}
}
