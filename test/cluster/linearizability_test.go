package cluster

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// kvInput is one operation on the key-value view of the secrets: a put of
// a new AWSCURRENT value, or a read of it.
type kvInput struct {
	put   bool
	key   string
	value string // the value put
}

// kvOutput is what a read returned; a put's output is unused.
type kvOutput struct {
	value string
}

// kvModel: each secret is a register holding its AWSCURRENT value.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return initialValue },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		in := input.(kvInput)
		if in.put {
			return true, in.value
		}
		return output.(kvOutput).value == state.(string), state
	},
	DescribeOperation: func(input, output interface{}) string {
		in := input.(kvInput)
		if in.put {
			return fmt.Sprintf("put(%s, %q)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) → %q", in.key, output.(kvOutput).value)
	},
}

const initialValue = "initial"

// TestLinearizability records a history of puts and linearizable gets by
// concurrent clients spread over the nodes while the leader is stopped and
// restarted and leadership is transferred, and checks it with porcupine.
// A put whose outcome is unknown (it timed out, or the region was
// unavailable) may have taken effect at any time after it was sent, so it
// is recorded as never returning; a failed get says nothing and is dropped.
func TestLinearizability(t *testing.T) {
	if testing.Short() {
		t.Skip("a fault schedule and a porcupine check; skipped with -short")
	}
	c := clustertest.Start(t, 3)

	const clients, keys, maxPutsPerKey = 6, 4, 80
	keyName := func(k int) string { return fmt.Sprintf("lin/%d", k) }
	for k := range keys {
		ctx, cancel := clustertest.RPCContext()
		_, err := c.Client(k%c.N()).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: keyName(k), SecretString: proto.String(initialValue)})
		cancel()
		if err != nil {
			t.Fatalf("create %s: %s", keyName(k), describeErr(err))
		}
	}

	var (
		mu      sync.Mutex
		ops     []porcupine.Operation
		unknown int
		odd     []string
		puts    [keys]atomic.Int32
		done    atomic.Int64 // completed operations
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for cl := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(cl), uint64(time.Now().UnixNano())))
			target := cl % c.N()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				k := rng.IntN(keys)
				in := kvInput{key: keyName(k)}
				if rng.IntN(2) == 0 && puts[k].Add(1) <= maxPutsPerKey {
					in.put, in.value = true, fmt.Sprintf("c%d-%d", cl, seq)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				call := time.Now()
				var out kvOutput
				var err error
				if in.put {
					_, err = c.Client(target).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{
						SecretId: in.key, ClientRequestToken: fmt.Sprintf("lin-c%d-%027d", cl, seq), SecretString: proto.String(in.value),
					})
				} else {
					var resp *cofferv1.GetSecretValueResponse
					resp, _, err = getValue(ctx, c.Client(target), in.key, "")
					out.value = resp.GetSecretString()
				}
				ret := time.Now()
				cancel()

				op := porcupine.Operation{ClientId: cl, Input: in, Call: call.UnixNano(), Output: out, Return: ret.UnixNano()}
				mu.Lock()
				switch {
				case err == nil:
					ops = append(ops, op)
					done.Add(1)
				case !unknownOutcome(err):
					odd = append(odd, fmt.Sprintf("%s on %s: %s", porcupineDescribe(in, out), c.ID(target), describeErr(err)))
				case in.put:
					// It may still take effect, at any later time.
					op.Return = math.MaxInt64
					ops = append(ops, op)
					unknown++
				}
				mu.Unlock()
				if err != nil {
					// The node may be down: move to the next one, as a client
					// with several endpoints does.
					target = (target + 1) % c.N()
				}
			}
		})
	}
	stopClients := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopClients)

	progress := func(n int64) {
		t.Helper()
		want := done.Load() + n
		wait.Until(t, clustertest.ConvergeTimeout, func() error {
			if got := done.Load(); got < want {
				return fmt.Errorf("%d operations completed, want %d", got, want)
			}
			return nil
		})
	}

	progress(60)
	for round := range 2 {
		old := c.Leader()
		stopped := time.Now()
		c.Stop(old)
		next := c.WaitLeader(c.Others(old)...)
		t.Logf("round %d: stopped leader %s; %s leads %s later", round, c.ID(old), c.ID(next), time.Since(stopped).Round(time.Millisecond))
		progress(60)
		c.Restart(old)
		progress(60)
	}
	leader := c.Leader()
	to := c.Others(leader)[0]
	ctx, cancel := clustertest.RPCContext()
	resp, err := c.Admin(to).TransferLeadership(ctx, &cofferv1.TransferLeadershipRequest{NodeId: c.ID(to)})
	cancel()
	if err != nil {
		t.Fatalf("TransferLeadership to %s: %s", c.ID(to), describeErr(err))
	}
	t.Logf("transferred leadership from %s to %s", c.ID(leader), resp.GetLeaderId())
	progress(60)
	stopClients()

	mu.Lock()
	defer mu.Unlock()
	for _, o := range odd {
		t.Errorf("an operation failed with an error that is not a retryable unavailability: %s", o)
	}
	t.Logf("history: %d operations (%d puts of unknown outcome)", len(ops), unknown)
	res, info := porcupine.CheckOperationsVerbose(kvModel, ops, 30*time.Second)
	switch res {
	case porcupine.Ok:
	case porcupine.Unknown:
		t.Logf("porcupine could not decide within 30s; linearizability not checked")
	case porcupine.Illegal:
		msg := "the history is not linearizable"
		if f, err := os.CreateTemp("", "coffer-linearizability-*.html"); err == nil {
			_ = f.Close()
			if err := porcupine.VisualizePath(kvModel, info, f.Name()); err == nil {
				msg += "; visualisation: " + f.Name()
			}
		}
		t.Error(msg)
		logFirstStaleGets(t, ops)
	}
}

func porcupineDescribe(in kvInput, out kvOutput) string {
	return kvModel.DescribeOperation(in, out)
}

// logFirstStaleGets logs a few gets that returned a value other than the
// latest put acknowledged before they were sent (a hint, not the proof:
// porcupine's visualisation is).
func logFirstStaleGets(t *testing.T, ops []porcupine.Operation) {
	sorted := append([]porcupine.Operation(nil), ops...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Call < sorted[j].Call })
	var found []string
	for _, g := range sorted {
		in := g.Input.(kvInput)
		if in.put {
			continue
		}
		var latest *porcupine.Operation
		for i := range sorted {
			p := &sorted[i]
			if pin := p.Input.(kvInput); pin.put && pin.key == in.key && p.Return < g.Call && (latest == nil || p.Return > latest.Return) {
				latest = p
			}
		}
		if latest == nil {
			continue
		}
		got := g.Output.(kvOutput).value
		newer := false
		for _, p := range sorted {
			if pin := p.Input.(kvInput); pin.put && pin.key == in.key && pin.value == got && p.Return >= latest.Call {
				newer = true
			}
		}
		if got != latest.Input.(kvInput).value && !newer {
			found = append(found, fmt.Sprintf("%s, but put(%q) returned %s before it was sent",
				porcupineDescribe(in, g.Output.(kvOutput)), latest.Input.(kvInput).value, time.Duration(g.Call-latest.Return)))
		}
		if len(found) == 5 {
			break
		}
	}
	if len(found) > 0 {
		t.Logf("gets that look stale:\n  %s", strings.Join(found, "\n  "))
	}
}
