package testkit

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Host is the loopback address every helper here hands out ports on.
const Host = "127.0.0.1"

// ErrNoFreePort is returned when no loopback port was free for both TCP
// and UDP after several tries.
var ErrNoFreePort = errors.New("testkit: no free TCP and UDP port on loopback")

// ProbeAddr returns a loopback address whose TCP port (and UDP port, with
// withUDP, for gossip, which binds both) was free a moment ago. Another
// process may take it before the caller binds it: callers that start
// servers on it retry with a new address when that happens.
//
// Ports are drawn at random below the kernel's ephemeral range
// (ip_local_port_range), never from it: a port the kernel handed out for
// a listener on :0 is also one it hands out as the source port of
// outbound connections, and every real node a test starts makes many, so
// such a port was often taken again between the probe and the server's
// bind ("address already in use").
func ProbeAddr(withUDP bool) (string, error) {
	lo, hi := probeRange()
	for range 50 {
		port := "0"
		if hi > lo {
			port = strconv.Itoa(lo + rand.IntN(hi-lo))
		}
		l, err := net.Listen("tcp", net.JoinHostPort(Host, port))
		if err != nil {
			if port != "0" {
				continue // taken: draw another
			}
			return "", err
		}
		addr := l.Addr().String()
		if withUDP {
			u, err := net.ListenPacket("udp", addr)
			if err != nil {
				_ = l.Close()
				continue
			}
			_ = u.Close()
		}
		if err := l.Close(); err != nil {
			return "", err
		}
		return addr, nil
	}
	return "", ErrNoFreePort
}

// probeLow is the lowest port ProbeAddr draws; the compose deployments'
// published ports (17411–29493 by default) stay above probeHigh.
const probeLow, probeHigh = 10000, 17000

var probeRange = sync.OnceValues(func() (int, int) {
	hi := probeHigh
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if first, err := strconv.Atoi(f[0]); err == nil && first < hi {
				hi = first
			}
		}
	}
	if hi-probeLow < 1000 {
		return 0, 0 // no room below the ephemeral range: let the kernel choose
	}
	return probeLow, hi
})

// FreeAddr is ProbeAddr for TCP, failing tb when it fails.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return mustProbe(tb, false)
}

// FreeGossipAddr is ProbeAddr for TCP and UDP (a gossip address), failing
// tb when it fails.
func FreeGossipAddr(tb testing.TB) string {
	tb.Helper()
	return mustProbe(tb, true)
}

// FreePort is FreeAddr's port number.
func FreePort(tb testing.TB) int {
	tb.Helper()
	addr, err := net.ResolveTCPAddr("tcp", FreeAddr(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return addr.Port
}

func mustProbe(tb testing.TB, withUDP bool) string {
	tb.Helper()
	addr, err := ProbeAddr(withUDP)
	if err != nil {
		tb.Fatal(err)
	}
	return addr
}
