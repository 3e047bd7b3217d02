package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// writeAttempt is one CreateSecret or PutSecretValue a load writer sent.
type writeAttempt struct {
	token, value string
	create       bool
	acked        bool // the client got a success
}

// loadHistory is what the writers of TestLeaderFailoverUnderLoad saw.
type loadHistory struct {
	mu       sync.Mutex
	secrets  map[string][]*writeAttempt // by name, in the order sent
	failures map[string]int             // by error kind
	odd      []string                   // failures a client must never see
	maxIndex uint64                     // highest x-coffer-index of an ack

	acks       atomic.Int64
	acksByNode []atomic.Int64
}

func (h *loadHistory) record(node int, name string, a *writeAttempt, err error, idx uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.secrets[name] = append(h.secrets[name], a)
	if err == nil {
		a.acked = true
		h.maxIndex = max(h.maxIndex, idx)
		h.acks.Add(1)
		h.acksByNode[node].Add(1)
		return
	}
	kind := server.TypeOf(err)
	if kind == "" {
		kind = "grpc " + status.Code(err).String()
	}
	h.failures[kind]++
	if !unknownOutcome(err) {
		h.odd = append(h.odd, fmt.Sprintf("%s %s (create %v): %s", name, a.token, a.create, describeErr(err)))
	}
}

// unknownOutcome reports whether err is what a client may see while the
// region changes leader: the write may or may not have been applied, and
// retrying is the right move. Anything else (a ResourceExists for a fresh
// name, a ResourceNotFound for a secret whose creation was acknowledged, an
// internal error) is a bug.
func unknownOutcome(err error) bool {
	if server.TypeOf(err) == server.TypeServiceUnavailable {
		return true
	}
	if server.TypeOf(err) != "" {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true // the node stopped, or the client gave up
	}
	return false
}

// TestLeaderFailoverUnderLoad stops the leader while writers work through
// every node, restarts it, and checks that no acknowledged write was lost
// and none was applied twice.
func TestLeaderFailoverUnderLoad(t *testing.T) {
	c := clustertest.Start(t, 3)
	h := &loadHistory{secrets: map[string][]*writeAttempt{}, failures: map[string]int{}, acksByNode: make([]atomic.Int64, c.N())}

	const writers, versionsPerSecret = 8, 5
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			target := w % c.N()
			cl := c.Client(target)
			send := func(name string, a *writeAttempt) error {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				var hdr metadata.MD
				var err error
				if a.create {
					_, err = cl.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: a.token, SecretString: proto.String(a.value)}, grpc.Header(&hdr))
				} else {
					_, err = cl.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, ClientRequestToken: a.token, SecretString: proto.String(a.value)}, grpc.Header(&hdr))
				}
				h.record(target, name, a, err, answeredIndex(t, hdr))
				if err != nil {
					// Pace a client whose node is down; not a synchronisation.
					select {
					case <-stop:
					case <-time.After(20 * time.Millisecond):
					}
				}
				return err
			}
			for s := 0; ; s++ {
				name := fmt.Sprintf("failover/w%d/s%d", w, s)
				for v := 0; v < versionsPerSecret; v++ {
					select {
					case <-stop:
						return
					default:
					}
					a := &writeAttempt{token: newToken(), value: fmt.Sprintf("%s/v%d", name, v), create: v == 0}
					if err := send(name, a); err != nil && a.create {
						break // its fate is checked below; carry on with a new secret
					}
				}
			}
		})
	}
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopWriters)

	waitAcks := func(n int64) {
		t.Helper()
		wait.Until(t, clustertest.ConvergeTimeout, func() error {
			if got := h.acks.Load(); got < n {
				return fmt.Errorf("%d writes acknowledged, want %d", got, n)
			}
			return nil
		})
	}
	waitAcks(200)

	old := c.Leader()
	stopping := time.Now()
	c.Stop(old)
	stopped := time.Now()
	atStop := h.acks.Load()
	newLeader := c.WaitLeader(c.Others(old)...)
	elected := time.Now()
	t.Logf("stopped leader %s (node.Stop took %s); %s leads %s after it stopped (%s after the stop began)",
		c.ID(old), stopped.Sub(stopping).Round(time.Millisecond), c.ID(newLeader),
		elected.Sub(stopped).Round(time.Millisecond), elected.Sub(stopping).Round(time.Millisecond))

	waitAcks(h.acks.Load() + 200)
	t.Logf("writes resumed: %d acknowledged before the stop, %d now", atStop, h.acks.Load())

	oldAcks := h.acksByNode[old].Load()
	took := c.Restart(old)
	t.Logf("restarted %s; serving %s after node.Start", c.ID(old), took.Round(time.Millisecond))
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if got := h.acksByNode[old].Load(); got < oldAcks+30 {
			return fmt.Errorf("%d writes acknowledged by the restarted %s, want %d", got, c.ID(old), oldAcks+30)
		}
		return nil
	})
	stopWriters()

	h.mu.Lock()
	defer h.mu.Unlock()
	t.Logf("%d writes acknowledged to %d secrets; failures by kind: %v", h.acks.Load(), len(h.secrets), h.failures)
	for _, o := range h.odd {
		t.Errorf("a writer got an error that is not a retryable unavailability: %s", o)
	}
	for i := range c.N() {
		checkLoadHistory(t, c, i, h)
	}
}

// checkLoadHistory checks on node i, after it has applied every
// acknowledged write, that each secret holds exactly the versions the
// history allows.
func checkLoadHistory(t *testing.T, c *clustertest.Cluster, i int, h *loadHistory) {
	t.Helper()
	names := make([]string, 0, len(h.secrets))
	for name := range h.secrets {
		names = append(names, name)
	}
	slices.Sort(names)
	var wg sync.WaitGroup
	work := make(chan string)
	for range 8 {
		wg.Go(func() {
			for name := range work {
				if err := checkSecret(c, i, name, h.secrets[name], h.maxIndex); err != nil {
					t.Errorf("%s: %s: %v", c.ID(i), name, err)
				}
			}
		})
	}
	for _, name := range names {
		work <- name
	}
	close(work)
	wg.Wait()
}

func checkSecret(c *clustertest.Cluster, i int, name string, attempts []*writeAttempt, minIndex uint64) error {
	cl := c.Client(i)
	ctx, cancel := clustertest.RPCContext(clustertest.StaleRead(minIndex)...)
	defer cancel()
	list, err := cl.ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: name, IncludeDeprecated: true})
	if server.TypeOf(err) == server.TypeResourceNotFound {
		if attempts[0].acked {
			return errors.New("the acknowledged secret is missing")
		}
		return nil // its creation failed and was never applied
	}
	if err != nil {
		return fmt.Errorf("ListSecretVersionIds: %s", describeErr(err))
	}
	if list.GetNextToken() != "" {
		return errors.New("more versions than one page")
	}
	byToken := map[string]*writeAttempt{}
	acked, failed := 0, 0
	for _, a := range attempts {
		byToken[a.token] = a
		if a.acked {
			acked++
		} else {
			failed++
		}
	}
	seen := map[string]bool{}
	current := ""
	for _, v := range list.GetVersions() {
		id := v.GetVersionId()
		if seen[id] {
			return fmt.Errorf("version %s listed twice", id)
		}
		seen[id] = true
		if byToken[id] == nil {
			return fmt.Errorf("version %s is none of the client's tokens", id)
		}
		if slices.Contains(v.GetVersionStages(), "AWSCURRENT") {
			current = id
		}
	}
	if len(seen) > acked+failed {
		return fmt.Errorf("%d versions, but only %d acknowledged and %d failed attempts", len(seen), acked, failed)
	}
	// Each writer's attempts on a secret are sequential, so the current
	// version is its last acknowledged one or a failed attempt after it.
	last := -1
	for k, a := range attempts {
		if a.acked {
			last = k
		}
	}
	if last >= 0 {
		if !slices.ContainsFunc(attempts[last:], func(a *writeAttempt) bool { return a.token == current }) {
			return fmt.Errorf("AWSCURRENT is %q, want the last acknowledged version %s or a later attempt", current, attempts[last].token)
		}
	}
	for _, a := range attempts {
		if !a.acked {
			continue
		}
		if !seen[a.token] {
			return fmt.Errorf("acknowledged version %s (%q) is missing", a.token, a.value)
		}
		got, _, err := getValue(ctx, cl, name, a.token)
		if err != nil {
			return fmt.Errorf("GetSecretValue version %s: %s", a.token, describeErr(err))
		}
		if got.GetSecretString() != a.value || got.GetVersionId() != a.token {
			return fmt.Errorf("version %s = %q (id %s), want %q", a.token, got.GetSecretString(), got.GetVersionId(), a.value)
		}
	}
	return nil
}
