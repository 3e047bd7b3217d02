package region

import (
	"slices"
	"testing"
)

// TestLocalAddressesAreDialable: a pairing offer names every node's
// address once, and never a wildcard or port-less one that a peer could
// not dial.
func TestLocalAddressesAreDialable(t *testing.T) {
	m := &Manager{cfg: Config{Region: "us-east-1", AdvertiseAddr: "[::]:7403",
		RegionAddrs: func() []string {
			return []string{"10.0.0.2:7403", "10.0.0.1:7403", "0.0.0.0:7403", "10.0.0.2:7403", "host-only", "10.0.0.3:0"}
		}}}
	got := m.LocalAddresses()
	if want := []string{"10.0.0.1:7403", "10.0.0.2:7403"}; !slices.Equal(got, want) {
		t.Fatalf("LocalAddresses() = %v, want %v", got, want)
	}
}

func TestNodeName(t *testing.T) {
	for in, want := range map[string]string{"eu-west-1/node-2": "node-2", "solo": "solo"} {
		if got := nodeName(in); got != want {
			t.Errorf("nodeName(%q) = %q, want %q", in, got, want)
		}
	}
}
