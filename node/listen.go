package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// ErrPlaintextListener is returned when an API listener would serve
// plaintext on an address other machines can reach.
var ErrPlaintextListener = errors.New("an API listener off loopback needs TLS")

// DefaultPlaintextWarnEvery is how often a node that serves an API in
// plaintext off loopback (Options.InsecurePlaintext) says so in its log.
const DefaultPlaintextWarnEvery = time.Hour

// LoopbackHost reports whether host (an address's host part) can only be
// reached from this machine: a loopback IP, or "localhost". Every other name,
// and the empty host or an unspecified address (0.0.0.0, ::), which listen on
// every interface, is taken as reachable from the network: a name is not
// resolved, since what it resolves to can change.
func LoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// CheckListener is the one rule for every API listener (gRPC, AWS, and any
// future HTTP one): an address off loopback must serve TLS, unless
// insecurePlaintext says the operator accepts plaintext. name says which
// listener, for the error.
func CheckListener(name, addr string, hasTLS, insecurePlaintext bool) error {
	if hasTLS || insecurePlaintext {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s address %q: %w", name, addr, err)
	}
	if LoopbackHost(host) {
		return nil
	}
	return fmt.Errorf("%w: the %s API would listen on %s, which is not a loopback address, in plaintext", ErrPlaintextListener, name, addr)
}

// plaintextListeners lists the API listeners that serve plaintext off
// loopback (only with InsecurePlaintext), as "name addr".
func (n *Node) plaintextListeners() []string {
	var out []string
	for _, l := range []struct {
		name, addr string
		tls        bool
	}{{"gRPC", n.opts.GRPCAddr, n.opts.GRPCTLS != nil}, {"AWS", n.opts.AWSAddr, n.opts.AWSTLS != nil}, {"metrics", n.opts.MetricsAddr, n.opts.MetricsTLS != nil}} {
		if l.addr != "" && CheckListener(l.name, l.addr, l.tls, false) != nil {
			out = append(out, l.name+" "+l.addr)
		}
	}
	return out
}

// warnPlaintext logs, at start and then every PlaintextWarnEvery, that APIs
// serve plaintext off loopback: credentials' replies, secret values
// included, cross the network readable.
func (n *Node) warnPlaintext(ctx context.Context, listeners []string) {
	every := n.opts.PlaintextWarnEvery
	if every <= 0 {
		every = DefaultPlaintextWarnEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n.log.Warn("insecure_plaintext: API listeners serve plaintext off loopback; anyone on the network path can read secret values and replay requests — configure TLS",
			"listeners", listeners)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
