package server

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/testkit"
	"github.com/cofferhq/coffer/test/wait"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestSourceLimiter(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := NewSourceLimiter(1, 3)
	l.now = clock.now
	const a, b = "10.0.0.1:1000", "10.0.0.2:1000"
	for range 3 {
		if l.Throttled(a) {
			t.Fatal("throttled before its burst was spent")
		}
		l.Fail(a)
	}
	if !l.Throttled(a) {
		t.Fatal("not throttled after its burst of failures")
	}
	if !l.Throttled("10.0.0.1:2000") {
		t.Fatal("another port of the same address is another source")
	}
	if l.Throttled(b) {
		t.Fatal("one source's failures throttle another")
	}
	clock.add(time.Second)
	if l.Throttled(a) {
		t.Fatal("still throttled after a token refilled")
	}
	// An IPv6 /64 is one source.
	for range 3 {
		l.Fail("[2001:db8:1:2::1]:443")
	}
	if !l.Throttled("[2001:db8:1:2:ffff::9]:443") || l.Throttled("[2001:db8:1:3::1]:443") {
		t.Fatal("IPv6 sources are not grouped by /64")
	}
	// Past its bound of sources, a flood from everywhere shares one bucket.
	l.max = 4
	for i := range 10 {
		l.Fail(net.JoinHostPort(net.IPv4(192, 0, 2, byte(i)).String(), "1"))
	}
	if len(l.buckets) > l.max {
		t.Fatalf("%d sources tracked, bound %d", len(l.buckets), l.max)
	}
	if !l.Throttled("192.0.2.200:1") {
		t.Fatal("a new source past the bound is not in the shared, spent bucket")
	}
	var none *SourceLimiter
	none.Fail(a)
	if none.Throttled(a) || NewSourceLimiter(-1, 5) != nil {
		t.Fatal("a nil limiter throttles")
	}
}

// TestRefusalsAreSampled: a flood of refused requests — failed
// authentications from one source, denials of one principal — leaves one
// full record per kind and a summary with the count per interval, not a
// record each; served requests are all recorded.
func TestRefusalsAreSampled(t *testing.T) {
	aud := &testkit.RecordingAuditor[AuditRecord]{}
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	sample := NewRefusalSampler(time.Hour)
	sample.now = clock.now
	limit := NewSourceLimiter(1, 1000)
	svc, store := newTestService(t)
	iam := NewIAM(svc, store)
	ctx := context.Background()
	if _, err := iam.CreatePrincipal(ctx, &cofferv1.CreatePrincipalRequest{Name: "nobody"}); err != nil {
		t.Fatal(err)
	}
	gate := &Gate{Authz: iam.Authorizer(), Audit: aud, Node: "n1", Limit: limit, Sample: sample}

	badAuth := apiErr(TypeUnrecognizedClient, "The security token included in the request is invalid.")
	for range 50 {
		_ = gate.Refused(ctx, Call{Protocol: "grpc", Operation: "GetSecretValue", SourceAddr: "10.0.0.9:5000"}, badAuth)
	}
	_ = gate.Refused(ctx, Call{Protocol: "grpc", Operation: "GetSecretValue", SourceAddr: "10.0.0.10:5000"}, badAuth)
	for range 20 {
		req := &cofferv1.GetSecretValueRequest{SecretId: "app/db"}
		_, _, err := gate.Begin(ctx, Call{Protocol: "grpc", Operation: "GetSecretValue", Action: "secretsmanager:GetSecretValue",
			SourceAddr: "10.0.0.11:5000", Caller: Caller{Principal: "nobody"}, Request: req})
		if apiType(err) != TypeAccessDeniedException {
			t.Fatalf("denial = %v", err)
		}
	}
	for range 3 {
		_, x, err := gate.Begin(ctx, Call{Protocol: "grpc", Operation: "ListSecrets", Action: "secretsmanager:ListSecrets",
			SourceAddr: "10.0.0.11:5000", Caller: Caller{Principal: RootPrincipal}, Request: &cofferv1.ListSecretsRequest{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := x.End(&cofferv1.ListSecretsResponse{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(aud.Records()); got != 6 {
		t.Fatalf("%d records for 71 refusals from 3 kinds and 3 served requests, want 6", got)
	}
	// Unauthenticated failures spent the source's tokens; the principal's
	// denials did not.
	if limit.Throttled("10.0.0.9:1") || !limiterSpent(limit, "10.0.0.9:1", 50) || limiterSpent(limit, "10.0.0.11:1", 1) {
		t.Fatal("the limiter was not charged for exactly the unauthenticated failures")
	}

	clock.add(time.Minute)
	sample.flush(gate)
	recs := aud.Records()
	summaries := map[string]string{}
	for _, r := range recs[6:] {
		summaries[r.Principal+"@"+r.SourceAddr+"/"+r.ErrorType] = r.Params["suppressed"]
	}
	want := map[string]string{
		"@10.0.0.9/" + TypeUnrecognizedClient:           "49",
		"nobody@10.0.0.11/" + TypeAccessDeniedException: "19",
	}
	if len(summaries) != len(want) || summaries["@10.0.0.9/"+TypeUnrecognizedClient] != "49" ||
		summaries["nobody@10.0.0.11/"+TypeAccessDeniedException] != "19" {
		t.Fatalf("summaries %v, want %v", summaries, want)
	}
	// A new interval starts with a full record again.
	_ = gate.Refused(ctx, Call{Protocol: "grpc", Operation: "GetSecretValue", SourceAddr: "10.0.0.9:5000"}, badAuth)
	if got := len(aud.Records()); got != len(recs)+1 {
		t.Fatalf("the first refusal of a new interval was not recorded (%d records, want %d)", got, len(recs)+1)
	}
}

// limiterSpent reports whether the source has spent at least n tokens.
func limiterSpent(l *SourceLimiter, addr string, n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[sourceOf(addr)]
	return ok && l.burst-b.tokens >= float64(n)-0.5
}

// TestThrottleRefusesBeforeReading: a source that used up its failures is
// answered ThrottlingException, counted rather than recorded one by one.
func TestThrottleRefusesBeforeReading(t *testing.T) {
	aud := &testkit.RecordingAuditor[AuditRecord]{}
	gate := &Gate{Audit: aud, Limit: NewSourceLimiter(0.001, 2), Sample: NewRefusalSampler(time.Hour)}
	ctx := context.Background()
	call := Call{Protocol: "aws", SourceAddr: "10.1.1.1:80"}
	for range 2 {
		if err := gate.Throttle(ctx, call); err != nil {
			t.Fatal(err)
		}
		_ = gate.Refused(ctx, call, apiErr(TypeMissingAuthToken, "missing"))
	}
	for range 10 {
		if err := gate.Throttle(ctx, call); apiType(err) != TypeThrottling {
			t.Fatalf("Throttle after the burst = %v, want ThrottlingException", err)
		}
	}
	if err := gate.Throttle(ctx, Call{Protocol: "aws", SourceAddr: "10.1.1.2:80"}); err != nil {
		t.Fatalf("another source throttled: %v", err)
	}
	if got := len(aud.Records()); got != 1 {
		t.Fatalf("%d records, want 1 (the first failure; the rest are counted)", got)
	}
	gate.Sample.flush(gate)
	var throttled string
	for _, r := range aud.Records() {
		if r.ErrorType == TypeThrottling {
			throttled = r.Params["suppressed"]
		}
	}
	if throttled != "10" {
		t.Fatalf("throttled requests counted %q, want 10", throttled)
	}
}

func TestLimitConnections(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := LimitConnections(raw, 2)
	defer l.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	first, _ := dial(), dial()
	a1, a2 := <-accepted, <-accepted
	third := dial()
	// The third is closed by the server at once: a read sees EOF.
	_ = third.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := third.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read on the connection over the bound = %v, want EOF", err)
	}
	// Closing one makes room.
	a1.Close()
	first.Close()
	wait.True(t, 10*time.Second, "a connection to be accepted once one closed", func() bool {
		dial()
		select {
		case c := <-accepted:
			return c != nil
		default:
			return false
		}
	})
	a2.Close()
}
