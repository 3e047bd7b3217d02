package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// caPEM is a new self-signed CA certificate, PEM.
func caPEM(t *testing.T, name string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// pairingRegion answers the pairing calls of one region with its offer and
// records the requests.
type pairingRegion struct {
	fakeRegions
	offer *cofferv1.PairingOffer

	mu    sync.Mutex
	pairs []*cofferv1.PairRegionRequest
}

func (p *pairingRegion) GetPairingOffer(context.Context, *cofferv1.GetPairingOfferRequest) (*cofferv1.GetPairingOfferResponse, error) {
	_ = p.note("GetPairingOffer")
	return &cofferv1.GetPairingOfferResponse{Offer: p.offer}, nil
}

func (p *pairingRegion) PairRegion(_ context.Context, req *cofferv1.PairRegionRequest) (*cofferv1.PairRegionResponse, error) {
	_ = p.note("PairRegion " + req.GetPeer().GetRegion())
	p.mu.Lock()
	p.pairs = append(p.pairs, req)
	p.mu.Unlock()
	return &cofferv1.PairRegionResponse{Offer: p.offer}, nil
}

func newPairingRegion(t *testing.T, region string) (*pairingRegion, string, string) {
	t.Helper()
	ca := caPEM(t, region)
	fp, err := server.CAFingerprint(ca)
	if err != nil {
		t.Fatal(err)
	}
	p := &pairingRegion{offer: &cofferv1.PairingOffer{Region: region, CaPem: ca, PublicKey: make([]byte, 32), Addresses: []string{region + ".example:7403"}}}
	return p, startFakeRegions(t, p), fp
}

// Pairing needs the other region's CA fingerprint; a wrong one is refused
// before either region records anything; the right one pairs both, each
// told the other's fingerprint.
func TestRegionPairPinsThePeer(t *testing.T) {
	us, usAddr, usFP := newPairingRegion(t, "us-east-1")
	eu, euAddr, euFP := newPairingRegion(t, "eu-west-1")
	pair := func(extra ...string) result {
		return runCLI(t, "", append([]string{"--endpoint", usAddr, "region", "pair", "--peer-endpoint", euAddr}, extra...)...)
	}

	r := pair()
	if r.code != exitUsage || !strings.Contains(r.stderr, "--peer-ca-sha256 is required") {
		t.Fatalf("without a fingerprint: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := pair("--peer-ca-sha256", "abc"); r.code != exitUsage {
		t.Fatalf("a malformed fingerprint: exit %d", r.code)
	}
	if len(us.received())+len(eu.received()) != 0 {
		t.Fatalf("calls made before the fingerprint was checked: %v %v", us.received(), eu.received())
	}

	r = pair("--peer-ca-sha256", usFP) // another region's CA
	if r.code != exitDenied || !strings.Contains(r.stderr, "answered with CA SHA-256 "+euFP+", not "+usFP) {
		t.Fatalf("a wrong fingerprint: exit %d, stderr %q", r.code, r.stderr)
	}
	if got := strings.Join(eu.received(), ","); got != "GetPairingOffer" || len(us.received()) != 0 {
		t.Fatalf("after a wrong fingerprint: eu received %v, us %v; want only eu's offer read", eu.received(), us.received())
	}

	r = pair("--peer-ca-sha256", strings.ToUpper(euFP))
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "paired us-east-1 with eu-west-1 (CA SHA-256 "+euFP) {
		t.Fatalf("stdout %q", r.stdout)
	}
	if len(us.pairs) != 1 || us.pairs[0].GetPeerCaSha256() != euFP || us.pairs[0].GetPeer().GetRegion() != "eu-west-1" {
		t.Fatalf("us-east-1 was asked to pair with %v", us.pairs)
	}
	if len(eu.pairs) != 1 || eu.pairs[0].GetPeerCaSha256() != usFP || eu.pairs[0].GetPeer().GetRegion() != "us-east-1" {
		t.Fatalf("eu-west-1 was asked to pair with %v", eu.pairs)
	}
}

// Pairing over plaintext is refused off loopback, --insecure or not.
func TestRegionPairNeedsTLS(t *testing.T) {
	_, usAddr, _ := newPairingRegion(t, "us-east-1")
	r := runCLI(t, "", "--endpoint", usAddr, "--insecure", "region", "pair", "--peer-endpoint", "10.1.0.11:7400",
		"--peer-ca-sha256", strings.Repeat("ab", 32))
	if r.code != exitUsage || !strings.Contains(r.stderr, "pairing over plaintext to 10.1.0.11:7400 is refused") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestRegionInfo(t *testing.T) {
	_, addr, fp := newPairingRegion(t, "eu-west-1")
	r := runCLI(t, "", "--endpoint", addr, "region", "info")
	mustSucceed(t, r)
	for _, want := range []string{"Region", "eu-west-1", "CA SHA-256", fp, "eu-west-1.example:7403"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runCLI(t, "", "--endpoint", addr, "-o", "json", "region", "info")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, `"caSha256": "`+fp+`"`) {
		t.Fatalf("json %s", r.stdout)
	}
}

// Two real regions (one node each, in this process) paired with the CLI:
// the fingerprint region info prints on the peer pairs them; another does
// not.
func TestRegionPairRealRegions(t *testing.T) {
	rs := clustertest.StartRegions(t, 1, "us-east-1", "eu-west-1")
	us, eu := rs.Region("us-east-1").Member(0).Ports.GRPC, rs.Region("eu-west-1").Member(0).Ports.GRPC
	t.Setenv("COFFER_ACCESS_KEY_ID", clustertest.RootAccessKeyID)
	t.Setenv("COFFER_SECRET_ACCESS_KEY", clustertest.RootSecretAccessKey)

	info := runCLI(t, "", "--endpoint", eu, "-o", "json", "region", "info")
	mustSucceed(t, info)
	_, rest, _ := strings.Cut(info.stdout, `"caSha256": "`)
	euFP, _, _ := strings.Cut(rest, `"`)
	if len(euFP) != 64 {
		t.Fatalf("region info: %s", info.stdout)
	}
	usInfo := runCLI(t, "", "--endpoint", us, "-o", "json", "region", "info")
	_, rest, _ = strings.Cut(usInfo.stdout, `"caSha256": "`)
	usFP, _, _ := strings.Cut(rest, `"`)

	// eu-west-1's administrator key, as its root-credentials file holds it.
	peerCreds := filepath.Join(t.TempDir(), "eu-west-1-credentials")
	if err := os.WriteFile(peerCreds, []byte("[default]\naws_access_key_id = "+clustertest.RootAccessKeyID+
		"\naws_secret_access_key = "+clustertest.RootSecretAccessKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pair := func(fp string) result {
		return runCLI(t, "", "--endpoint", us, "region", "pair", "--peer-endpoint", eu, "--peer-credentials-file", peerCreds, "--peer-ca-sha256", fp)
	}
	if r := pair(usFP); r.code != exitDenied {
		t.Fatalf("pairing with the wrong fingerprint: exit %d, stderr %q", r.code, r.stderr)
	}
	mustSucceed(t, pair(euFP))
	wait.True(t, clustertest.ConvergeTimeout, "us-east-1 to list eu-west-1 as paired", func() bool {
		r := runCLI(t, "", "--endpoint", us, "-o", "json", "region", "list")
		return r.code == 0 && strings.Contains(r.stdout, `"region": "eu-west-1"`) && strings.Contains(r.stdout, `"paired": true`)
	})
}
