package main

import (
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

const (
	testKeyID  = "AKIACLITESTKEY000001"
	testSecret = "cli/test/secret/access/key/0000000000001"
)

// nonLoopbackIP is an address of this machine other than loopback, or nil.
func nonLoopbackIP(t *testing.T) net.IP {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP
		}
	}
	return nil
}

// startFakeOn serves a fakeServer on addr and returns it with its address.
func startFakeOn(t *testing.T, addr string) (*fakeServer, string) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	f := &fakeServer{handlers: map[string]handler{}}
	cofferv1.RegisterSecretsManagerServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f, lis.Addr().String()
}

// Every call is signed (SigV4 over the call's metadata), never a bearer
// secret; the scope names the region given, or the default one.
func TestCallsAreSigned(t *testing.T) {
	t.Setenv("COFFER_ACCESS_KEY_ID", testKeyID)
	t.Setenv("COFFER_SECRET_ACCESS_KEY", testSecret)
	f, addr := startFake(t)
	mustSucceed(t, runCLI(t, "", "--endpoint", addr, "secrets", "describe", "db"))
	mustSucceed(t, runCLI(t, "", "--endpoint", addr, "--region", "eu-west-1", "secrets", "describe", "db"))
	calls := f.received()
	if len(calls) != 2 {
		t.Fatalf("calls %v", methods(calls))
	}
	for i, region := range []string{"us-east-1", "eu-west-1"} {
		auth := calls[i].md.Get("authorization")
		if len(auth) != 1 || !strings.HasPrefix(auth[0], "AWS4-HMAC-SHA256 Credential="+testKeyID+"/") ||
			!strings.Contains(auth[0], "/"+region+"/coffer/aws4_request") || strings.Contains(auth[0], testSecret) {
			t.Fatalf("call %d authorization %q; want a SigV4 signature scoped to %s/coffer, without the secret", i, auth, region)
		}
		if calls[i].md.Get("x-amz-date") == nil || calls[i].md.Get("x-amz-content-sha256") == nil {
			t.Fatalf("call %d lacks x-amz-date or x-amz-content-sha256: %v", i, calls[i].md)
		}
	}
}

// Credentials go to an endpoint off loopback only over TLS, unless
// --insecure; loopback, and calls without credentials, need neither.
func TestPlaintextCredentialsOffLoopbackRefused(t *testing.T) {
	t.Setenv("COFFER_ACCESS_KEY_ID", testKeyID)
	t.Setenv("COFFER_SECRET_ACCESS_KEY", testSecret)
	for _, endpoint := range []string{"10.0.0.11:7400", "coffer.example.com:7400", "dns:///10.0.0.11:7400", "[2001:db8::1]:7400"} {
		r := runCLI(t, "", "--endpoint", endpoint, "secrets", "describe", "db")
		if r.code != exitUsage || !strings.Contains(r.stderr, "refusing to send credentials in plaintext to "+endpoint) ||
			!strings.Contains(r.stderr, "--tls") || !strings.Contains(r.stderr, "--ca-file") || !strings.Contains(r.stderr, "--insecure") {
			t.Errorf("%s: exit %d, stderr %q; want a usage error naming --tls, --ca-file and --insecure", endpoint, r.code, r.stderr)
		}
	}
	_, local := startFake(t)
	mustSucceed(t, runCLI(t, "", "--endpoint", local, "secrets", "describe", "db"))
	mustSucceed(t, runCLI(t, "", "--endpoint", strings.Replace(local, "127.0.0.1", "localhost", 1), "secrets", "describe", "db"))

	ip := nonLoopbackIP(t)
	if ip == nil {
		t.Skip("this machine has no address off loopback to serve a fake on")
	}
	f, addr := startFakeOn(t, net.JoinHostPort(ip.String(), "0"))
	if r := runCLI(t, "", "--endpoint", addr, "secrets", "describe", "db"); r.code != exitUsage {
		t.Fatalf("plaintext to %s: exit %d, stderr %q", addr, r.code, r.stderr)
	}
	if calls := f.received(); len(calls) != 0 {
		t.Fatalf("the server received %v before the refusal", methods(calls))
	}
	mustSucceed(t, runCLI(t, "", "--endpoint", addr, "--insecure", "secrets", "describe", "db"))
	if calls := f.received(); len(calls) != 1 || !strings.HasPrefix(calls[0].md.Get("authorization")[0], "AWS4-HMAC-SHA256 ") {
		t.Fatalf("with --insecure the server received %v", calls)
	}
	t.Setenv("COFFER_ACCESS_KEY_ID", "")
	t.Setenv("COFFER_SECRET_ACCESS_KEY", "")
	t.Setenv("COFFER_CREDENTIALS_FILE", "")
	t.Setenv("HOME", t.TempDir())
	mustSucceed(t, runCLI(t, "", "--endpoint", addr, "secrets", "describe", "db"))
}
