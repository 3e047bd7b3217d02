package node

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Limits bound what callers can make a node do, authenticated or not. The
// zero value of each field takes its default from DefaultLimits; a negative
// one (where noted) turns the limit off.
type Limits struct {
	// ConnectionsPerSource bounds the open connections from one source
	// address (an IPv4 address or an IPv6 /64) on each API listener;
	// further ones are closed at once. Negative: no bound.
	ConnectionsPerSource int
	// MaxConcurrentStreams bounds the concurrent calls on one gRPC
	// connection; MaxRecvMsgBytes the size of one gRPC request message.
	MaxConcurrentStreams uint32
	MaxRecvMsgBytes      int
	// KeepaliveMinTime is the shortest interval between client pings the
	// gRPC server tolerates before it closes the connection;
	// MaxConnectionIdle closes a gRPC connection with no call for that long.
	KeepaliveMinTime  time.Duration
	MaxConnectionIdle time.Duration
	// HTTPReadTimeout bounds reading one AWS request (headers and body),
	// HTTPWriteTimeout writing its answer, HTTPIdleTimeout a kept-alive
	// connection waiting for the next request; HTTPMaxHeaderBytes the
	// request headers.
	HTTPReadTimeout    time.Duration
	HTTPWriteTimeout   time.Duration
	HTTPIdleTimeout    time.Duration
	HTTPMaxHeaderBytes int
	// AuthFailuresPerSecond and AuthFailureBurst are the token bucket of
	// each source's failed authentications: once a source has used its
	// burst, its requests are refused before they are read (gRPC
	// ResourceExhausted, AWS 429 ThrottlingException) until the bucket
	// refills. Requests that authenticate never use it. A negative rate
	// turns it off.
	AuthFailuresPerSecond float64
	AuthFailureBurst      int
	// SnapshotTimeout bounds one SaveSnapshot stream, however slowly its
	// client reads.
	SnapshotTimeout time.Duration
}

// DefaultLimits holds the defaults, in one place.
func DefaultLimits() Limits {
	return Limits{
		ConnectionsPerSource:  256,
		MaxConcurrentStreams:  256,
		MaxRecvMsgBytes:       4 << 20,
		KeepaliveMinTime:      10 * time.Second,
		MaxConnectionIdle:     15 * time.Minute,
		HTTPReadTimeout:       30 * time.Second,
		HTTPWriteTimeout:      2 * time.Minute,
		HTTPIdleTimeout:       2 * time.Minute,
		HTTPMaxHeaderBytes:    64 << 10,
		AuthFailuresPerSecond: 10,
		AuthFailureBurst:      100,
		SnapshotTimeout:       30 * time.Minute,
	}
}

// withDefaults fills every zero field from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.ConnectionsPerSource == 0 {
		l.ConnectionsPerSource = d.ConnectionsPerSource
	}
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = d.MaxConcurrentStreams
	}
	if l.MaxRecvMsgBytes == 0 {
		l.MaxRecvMsgBytes = d.MaxRecvMsgBytes
	}
	durations := []struct {
		dst *time.Duration
		def time.Duration
	}{
		{&l.KeepaliveMinTime, d.KeepaliveMinTime}, {&l.MaxConnectionIdle, d.MaxConnectionIdle},
		{&l.HTTPReadTimeout, d.HTTPReadTimeout}, {&l.HTTPWriteTimeout, d.HTTPWriteTimeout},
		{&l.HTTPIdleTimeout, d.HTTPIdleTimeout}, {&l.SnapshotTimeout, d.SnapshotTimeout},
	}
	for _, f := range durations {
		if *f.dst == 0 {
			*f.dst = f.def
		}
	}
	if l.HTTPMaxHeaderBytes == 0 {
		l.HTTPMaxHeaderBytes = d.HTTPMaxHeaderBytes
	}
	if l.AuthFailuresPerSecond == 0 {
		l.AuthFailuresPerSecond = d.AuthFailuresPerSecond
	}
	if l.AuthFailureBurst == 0 {
		l.AuthFailureBurst = d.AuthFailureBurst
	}
	return l
}

// grpcOptions are the gRPC server options the limits set.
func (l Limits) grpcOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.MaxRecvMsgSize(l.MaxRecvMsgBytes),
		// A client pinging more often than this is closed (GOAWAY
		// too_many_pings); pings without a call in flight are allowed, as
		// long-lived clients keep idle connections alive that way.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: l.MaxConnectionIdle}),
		// A TLS handshake that has not finished by then is dropped.
		grpc.ConnectionTimeout(10 * time.Second),
	}
}
