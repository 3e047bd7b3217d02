package replication

import (
	"crypto/rand"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func newGossipKey(t *testing.T) []byte {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

// freeGossipAddr returns a loopback address whose port was free for both
// TCP and UDP a moment ago, for a node that must be named before it starts.
func freeGossipAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := tl.Addr().String()
		ul, err := net.ListenPacket("udp", addr)
		tl.Close()
		if err == nil {
			ul.Close()
			return addr
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return ""
}

// fastMembershipConfig is a loopback pool member that detects failures in
// about a second.
func fastMembershipConfig(key []byte, id, bind string, join ...string) MembershipConfig {
	return MembershipConfig{
		BindAddr:  bind,
		Join:      join,
		SecretKey: key,
		Meta: MemberMeta{
			NodeID: id, Region: "us-test-1",
			ClusterAddr: "127.0.0.1:" + strconv.Itoa(7400+int(id[len(id)-1]-'0')),
			APIAddr:     "127.0.0.1:" + strconv.Itoa(7480+int(id[len(id)-1]-'0')),
		},
		ProbeInterval:     100 * time.Millisecond,
		ProbeTimeout:      50 * time.Millisecond,
		SuspicionMult:     2,
		JoinRetryInterval: 100 * time.Millisecond,
		Logger:            slog.New(slog.DiscardHandler),
	}
}

func startTestMembership(t *testing.T, cfg MembershipConfig) *Membership {
	t.Helper()
	m, err := StartMembership(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

// statuses renders a pool view as "n1=alive n2=dead" for comparisons.
func statuses(m *Membership) string {
	var parts []string
	for _, mem := range m.Members() {
		parts = append(parts, mem.Meta.NodeID+"="+string(mem.Status))
	}
	return strings.Join(parts, " ")
}

func TestMembershipJoinsInAnyOrderAndSeesFailures(t *testing.T) {
	key := newGossipKey(t)
	seedAddr := freeGossipAddr(t)

	// n2 starts before its seed exists; it must keep trying.
	n2 := startTestMembership(t, fastMembershipConfig(key, "n2", "127.0.0.1:0", seedAddr))
	if got := statuses(n2); got != "n2=alive" {
		t.Fatalf("n2 alone sees %q", got)
	}
	// n1 finds itself in the shared seed list and must not "join" itself.
	n1 := startTestMembership(t, fastMembershipConfig(key, "n1", seedAddr, seedAddr))
	n3 := startTestMembership(t, fastMembershipConfig(key, "n3", "127.0.0.1:0", seedAddr))
	pool := []*Membership{n1, n2, n3}

	for _, m := range pool {
		pollUntil(t, 20*time.Second, m.LocalNode().Meta.NodeID+" to see three alive members", func() bool {
			return statuses(m) == "n1=alive n2=alive n3=alive"
		})
	}
	for _, m := range pool {
		for _, other := range pool {
			want := other.LocalNode()
			got, ok := m.Lookup(want.Meta.NodeID)
			if !ok || got.Meta != want.Meta || got.GossipAddr != want.GossipAddr || got.Status != MemberAlive || got.Since.IsZero() {
				t.Errorf("%s sees %s as %+v, want %+v alive", m.LocalNode().Meta.NodeID, want.Meta.NodeID, got, want)
			}
		}
	}
	if got := n1.LocalNode().GossipAddr; got != seedAddr {
		t.Errorf("n1 gossip address %s, want %s", got, seedAddr)
	}
	if got := n1.LocalNode().Meta; got.ClusterAddr != "127.0.0.1:7401" || got.APIAddr != "127.0.0.1:7481" || got.Region != "us-test-1" {
		t.Errorf("n1 meta = %+v", got)
	}

	// A crash: the others find n3 dead.
	beforeCrash := time.Now()
	if err := n3.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Membership{n1, n2} {
		pollUntil(t, 20*time.Second, m.LocalNode().Meta.NodeID+" to see n3 dead", func() bool {
			return statuses(m) == "n1=alive n2=alive n3=dead"
		})
		if got, _ := m.Lookup("n3"); got.Since.Before(beforeCrash) {
			t.Errorf("n3 dead since %v, before it crashed (%v)", got.Since, beforeCrash)
		}
	}

	// A graceful exit: n1 sees n2 as left, not dead.
	if err := n2.Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := n2.Shutdown(); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, 20*time.Second, "n1 to see n2 left", func() bool {
		return statuses(n1) == "n1=alive n2=left n3=dead"
	})
	if err := n2.Leave(time.Second); err != ErrMembershipShutdown {
		t.Errorf("Leave after Shutdown: %v, want ErrMembershipShutdown", err)
	}
}

func TestMembershipRejectsAWrongKey(t *testing.T) {
	n1 := startTestMembership(t, fastMembershipConfig(newGossipKey(t), "n1", "127.0.0.1:0"))
	cfg := fastMembershipConfig(newGossipKey(t), "n2", "127.0.0.1:0", n1.LocalNode().GossipAddr)
	cfg.JoinRetryInterval = time.Hour
	n2 := startTestMembership(t, cfg) // starts despite the failed join
	if got := statuses(n2); got != "n2=alive" {
		t.Errorf("n2 with another key sees %q", got)
	}
	if got := statuses(n1); got != "n1=alive" {
		t.Errorf("n1 sees %q after a join with another key", got)
	}
}

func TestMembershipConfigValidate(t *testing.T) {
	ok := fastMembershipConfig(make([]byte, 32), "n1", "127.0.0.1:0")
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, mutate := range map[string]func(*MembershipConfig){
		"no node id":       func(c *MembershipConfig) { c.Meta.NodeID = "" },
		"no key":           func(c *MembershipConfig) { c.SecretKey = nil },
		"16-byte key":      func(c *MembershipConfig) { c.SecretKey = make([]byte, 16) },
		"meta too large":   func(c *MembershipConfig) { c.Meta.APIAddr = strings.Repeat("a", 600) },
		"hostname bind":    func(c *MembershipConfig) { c.BindAddr = "localhost:0" },
		"no port":          func(c *MembershipConfig) { c.BindAddr = "127.0.0.1" },
		"bad advertise":    func(c *MembershipConfig) { c.AdvertiseAddr = "10.0.0.1" },
		"negative probing": func(c *MembershipConfig) { c.ProbeInterval = -time.Second },
	} {
		c := ok
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate passed", name)
		}
		if m, err := StartMembership(c); err == nil {
			m.Shutdown()
			t.Errorf("%s: StartMembership succeeded", name)
		}
	}
}
