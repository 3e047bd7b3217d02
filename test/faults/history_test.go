package faults

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/wait"
)

// kvInput is one operation on the register view of a secret: a put of a
// new AWSCURRENT value, or a read of it.
type kvInput struct {
	put        bool
	key, value string
}

type kvOutput struct{ value string }

const initialValue = "initial"

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

// maxPutsPerKey keeps every secret under the 100-versions quota.
const maxPutsPerKey = 90

// workload is a set of clients on the host putting and reading secrets
// through the nodes of one region, half over gRPC and half over the AWS
// protocol, each starting on its own node and moving to the next when a
// call fails (as a client with several endpoints does). It records the
// history for porcupine and every version it sent and saw acknowledged.
type workload struct {
	d      *deployment
	r      *region
	prefix string
	// replicas are regions the keys are replicated to (CreateSecret's
	// AddReplicaRegions).
	replicas []string

	mu      sync.Mutex
	keys    []string
	puts    map[string]int
	initial map[string]string          // key → the version CreateSecret made
	sent    map[string]map[string]bool // key → version ids (tokens) of every put sent
	acked   map[string][]string        // key → acknowledged version ids
	ops     []porcupine.Operation
	acks    []ackTime // every acknowledged put, by call time
	odd     []string
	unknown int
	done    int

	stop   chan struct{}
	starts int
	wg     sync.WaitGroup
}

type ackTime struct {
	call, ret time.Time
	node      string
}

func newWorkload(t testing.TB, d *deployment, r *region, prefix string, keys int, replicas ...string) *workload {
	t.Helper()
	w := &workload{d: d, r: r, prefix: prefix, replicas: replicas, puts: map[string]int{}, initial: map[string]string{},
		sent: map[string]map[string]bool{}, acked: map[string][]string{}}
	w.addKeys(t, keys)
	return w
}

// addKeys creates n more secrets (through the leader, retried until the
// region answers).
func (w *workload) addKeys(t testing.TB, n int) {
	t.Helper()
	w.mu.Lock()
	first := len(w.keys)
	w.mu.Unlock()
	for i := first; i < first+n; i++ {
		name := fmt.Sprintf("%s/%d-%d", w.prefix, time.Now().UnixNano()%1e6, i)
		req := &cofferv1.CreateSecretRequest{Name: name, SecretString: proto.String(initialValue), ClientRequestToken: token(w.prefix+"-create", i)}
		for _, r := range w.replicas {
			req.AddReplicaRegions = append(req.AddReplicaRegions, &cofferv1.ReplicaRegion{Region: r})
		}
		var version string
		wait.Until(t, healTimeout, func() error {
			var lastErr error
			for _, n := range w.r.nodes {
				ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
				resp, err := n.sm.CreateSecret(ctx, req)
				cancel()
				if err == nil {
					version = resp.GetVersionId()
					return nil
				}
				lastErr = fmt.Errorf("create %s on %s: %s", name, n, describe(err))
			}
			return lastErr
		})
		w.mu.Lock()
		w.keys = append(w.keys, name)
		w.initial[name] = version
		w.sent[name] = map[string]bool{}
		w.mu.Unlock()
	}
}

// token is a ClientRequestToken (32-64 characters), unique per prefix and n.
func token(prefix string, n int) string {
	if len(prefix) > 30 {
		prefix = prefix[:30]
	}
	return fmt.Sprintf("%s-%032d", strings.ReplaceAll(prefix, "/", "-"), n)
}

// start runs clients until halt. Each start numbers its clients anew
// (100 per start): a client's tokens and values must never repeat, or a
// put would be an idempotent replay of an earlier one.
func (w *workload) start(clients int, seed uint64) {
	w.stop = make(chan struct{})
	w.starts++
	for i := range clients {
		c := 100*w.starts + i
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.client(c, rand.New(rand.NewPCG(seed, uint64(c))))
		}()
	}
}

func (w *workload) halt() {
	if w.stop == nil {
		return
	}
	close(w.stop)
	w.wg.Wait()
	w.stop = nil
}

func (w *workload) client(c int, rng *rand.Rand) {
	target := c % len(w.r.nodes)
	useAWS := c%2 == 1
	for seq := 0; ; seq++ {
		select {
		case <-w.stop:
			return
		default:
		}
		w.mu.Lock()
		key := w.keys[rng.IntN(len(w.keys))]
		in := kvInput{key: key}
		if rng.IntN(2) == 0 && w.puts[key] < maxPutsPerKey {
			w.puts[key]++
			in.put, in.value = true, fmt.Sprintf("c%d-%d", c, seq)
		}
		tok := token(fmt.Sprintf("%s-c%d", w.prefix, c), seq)
		if in.put {
			w.sent[key][tok] = true
		}
		w.mu.Unlock()

		err := w.one(c, w.r.nodes[target], in, useAWS, tok)
		if err != nil {
			target = (target + 1) % len(w.r.nodes)
			select {
			case <-w.stop:
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// one makes one call of client c to n and records it in the history.
func (w *workload) one(c int, n *node, in kvInput, useAWS bool, tok string) error {
	key := in.key
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	call := time.Now()
	var out kvOutput
	var version string
	var err error
	switch {
	case in.put && useAWS:
		var resp *secretsmanager.PutSecretValueOutput
		resp, err = n.aws.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(key), SecretString: aws.String(in.value), ClientRequestToken: aws.String(tok)})
		if err == nil {
			version = aws.ToString(resp.VersionId)
		}
	case in.put:
		var resp *cofferv1.PutSecretValueResponse
		resp, err = n.sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: key, SecretString: proto.String(in.value), ClientRequestToken: tok})
		version = resp.GetVersionId()
	case useAWS:
		var resp *secretsmanager.GetSecretValueOutput
		resp, err = n.aws.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(key)})
		if err == nil {
			out.value = aws.ToString(resp.SecretString)
		}
	default:
		var resp *cofferv1.GetSecretValueResponse
		resp, err = n.sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: key})
		out.value = resp.GetSecretString()
	}
	ret := time.Now()
	cancel()

	op := porcupine.Operation{ClientId: c, Input: in, Call: call.UnixNano(), Output: out, Return: ret.UnixNano()}
	w.mu.Lock()
	switch {
	case err == nil:
		w.ops = append(w.ops, op)
		w.done++
		if in.put {
			w.acked[key] = append(w.acked[key], version)
			w.acks = append(w.acks, ackTime{call: call, ret: ret, node: n.name})
			if version != tok {
				w.odd = append(w.odd, fmt.Sprintf("put %s with token %s acknowledged version %s", key, tok, version))
			}
		}
	case notSent(err):
		// Refused before it was sent: it did not happen.
	case !unknownOutcome(err):
		w.odd = append(w.odd, fmt.Sprintf("%s on %s: %s", kvModel.DescribeOperation(in, out), n, describe(err)))
	case in.put:
		// It may still take effect, at any later time.
		op.Return = math.MaxInt64
		w.ops = append(w.ops, op)
		w.unknown++
	}
	w.mu.Unlock()
	return err
}

// errType is the AWS error type of a gRPC or SDK error ("" for transport
// failures).
func errType(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return server.TypeOf(err)
}

// notSent: the call never reached a node (the connection was refused:
// the container is down), so it certainly did not take effect.
func notSent(err error) bool {
	return strings.Contains(err.Error(), "connection refused")
}

// unknownOutcome: the call may or may not have taken effect (the node is
// down, unreachable or not ready, the client gave up).
func unknownOutcome(err error) bool {
	switch errType(err) {
	case "", server.TypeServiceUnavailable, "InternalServiceError", "InternalFailure":
	default:
		return false
	}
	switch status.Code(err) {
	case codes.OK, codes.Unknown, codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Internal:
		return true
	}
	return false
}

func (w *workload) completed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

// progress waits until n more operations completed.
func (w *workload) progress(t testing.TB, n int) {
	t.Helper()
	want := w.completed() + n
	wait.Until(t, healTimeout, func() error {
		if got := w.completed(); got < want {
			return fmt.Errorf("%d operations completed, want %d", got, want)
		}
		return nil
	})
}

// firstAckAfter is the first acknowledged put sent after t0, and whether
// there is one.
func (w *workload) firstAckAfter(t0 time.Time) (ackTime, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var best ackTime
	found := false
	for _, a := range w.acks {
		if a.call.After(t0) && (!found || a.ret.Before(best.ret)) {
			best, found = a, true
		}
	}
	return best, found
}

// waitAckAfter waits for an acknowledged put sent after sent and returns
// how long after t0 (the fault) it was acknowledged.
func (w *workload) waitAckAfter(t testing.TB, t0, sent time.Time) time.Duration {
	t.Helper()
	var a ackTime
	wait.Until(t, healTimeout, func() error {
		var ok bool
		if a, ok = w.firstAckAfter(sent); !ok {
			return errors.New("no put sent since the fault acknowledged yet")
		}
		return nil
	})
	return a.ret.Sub(t0)
}

// check stops the clients, checks the history with porcupine, and, once
// the deployment is whole again (the caller restored it), that every node
// holds every acknowledged version, no version twice and none never sent,
// and that the replica regions converged to the primary's versions and
// labels.
func (w *workload) check(t testing.TB) {
	t.Helper()
	w.halt()
	w.mu.Lock()
	ops := slices.Clone(w.ops)
	odd := slices.Clone(w.odd)
	unknown := w.unknown
	w.mu.Unlock()
	for _, o := range odd {
		t.Errorf("an operation failed with an error that is not a retryable unavailability: %s", o)
	}
	res, info := porcupine.CheckOperationsVerbose(kvModel, ops, 60*time.Second)
	switch res {
	case porcupine.Ok:
		t.Logf("porcupine: %d operations (%d puts of unknown outcome) are linearizable", len(ops), unknown)
	case porcupine.Unknown:
		t.Logf("porcupine could not decide within 60 s on %d operations; linearizability not checked", len(ops))
	case porcupine.Illegal:
		msg := "the history is not linearizable"
		if f, err := os.CreateTemp("", "coffer-faults-*.html"); err == nil {
			_ = f.Close()
			if err := porcupine.VisualizePath(kvModel, info, f.Name()); err == nil {
				msg += "; visualisation: " + f.Name()
			}
		}
		t.Error(msg)
	}
	w.checkVersions(t)
}

// checkVersions: every node of the region (asked for its own state) ends
// with the leader's exact versions, which hold every acknowledged put, no
// version twice and none that was never sent; each replica region's nodes
// end with the same versions and labels.
func (w *workload) checkVersions(t testing.TB) {
	t.Helper()
	w.mu.Lock()
	keys := slices.Clone(w.keys)
	w.mu.Unlock()
	total := 0
	for _, key := range keys {
		w.mu.Lock()
		acked := slices.Clone(w.acked[key])
		sent := w.sent[key]
		initial := w.initial[key]
		w.mu.Unlock()
		total += len(acked)
		var want []versionEntry
		wait.Until(t, healTimeout, func() error {
			leader, err := w.d.currentLeader(w.r, nil)
			if err != nil {
				return err
			}
			want, err = listVersions(context.Background(), leader.sm, key, false)
			return err
		})
		seen := map[string]bool{}
		for _, v := range want {
			if seen[v.id] {
				t.Errorf("%s: version %s appears twice", key, v.id)
			}
			seen[v.id] = true
			if v.id != initial && !sent[v.id] {
				t.Errorf("%s: version %s was never sent", key, v.id)
			}
		}
		for _, id := range acked {
			if !seen[id] {
				t.Errorf("%s: acknowledged version %s is lost", key, id)
			}
		}
		nodes := slices.Clone(w.r.nodes)
		for _, rn := range w.replicas {
			nodes = append(nodes, w.d.regions[rn].nodes...)
		}
		for _, n := range nodes {
			wait.Until(t, healTimeout, func() error {
				got, err := listVersions(context.Background(), n.sm, key, true)
				if err != nil {
					return fmt.Errorf("%s on %s: %s", key, n, describe(err))
				}
				if !slices.EqualFunc(got, want, versionEntry.equal) {
					return fmt.Errorf("%s on %s: %d versions %v, the primary's leader %d %v", key, n, len(got), got, len(want), want)
				}
				return nil
			})
		}
	}
	t.Logf("versions: %d keys, %d acknowledged puts, all on every node of %s%s", len(keys), total, w.r.name, replicaNote(w.replicas))
}

func replicaNote(rs []string) string {
	if len(rs) == 0 {
		return ""
	}
	return " and its replicas in " + strings.Join(rs, ", ")
}

type versionEntry struct {
	id     string
	stages string
}

func (v versionEntry) equal(o versionEntry) bool { return v == o }

func (v versionEntry) String() string {
	if v.stages == "" {
		return v.id
	}
	return v.id + "[" + v.stages + "]"
}

// listVersions lists a secret's versions with their labels, sorted by id;
// local asks the node for its own state.
func listVersions(ctx context.Context, sm cofferv1.SecretsManagerServiceClient, key string, local bool) ([]versionEntry, error) {
	var out []versionEntry
	next := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		if local {
			cctx = stale(cctx)
		}
		resp, err := sm.ListSecretVersionIds(cctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: key, MaxResults: proto32(100), NextToken: next, IncludeDeprecated: true})
		cancel()
		if err != nil {
			return nil, err
		}
		for _, v := range resp.GetVersions() {
			stages := slices.Clone(v.GetVersionStages())
			sort.Strings(stages)
			out = append(out, versionEntry{id: v.GetVersionId(), stages: strings.Join(stages, ",")})
		}
		if next = resp.GetNextToken(); next == "" {
			break
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, nil
}
