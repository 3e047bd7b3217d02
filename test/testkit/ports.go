package testkit

import (
	"errors"
	"net"
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
func ProbeAddr(withUDP bool) (string, error) {
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(Host, "0"))
		if err != nil {
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
