package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cofferhq/coffer/node"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// watcher collects one WatchSecrets stream's events in the background.
type watcher struct {
	cancel context.CancelFunc
	mu     sync.Mutex
	events []*cofferv1.SecretEvent
	index  uint64 // the index of the last response
	err    error
	done   chan struct{}
}

func startWatch(t *testing.T, cl cofferv1.WatchServiceClient, req *cofferv1.WatchSecretsRequest) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := cl.WatchSecrets(ctx, req)
	if err != nil {
		t.Fatalf("WatchSecrets: %s", describeErr(err))
	}
	first, err := st.Recv()
	if err != nil {
		t.Fatalf("WatchSecrets first response: %s", describeErr(err))
	}
	if len(first.GetEvents()) != 0 || (req.GetAfterIndex() != 0 && first.GetIndex() != req.GetAfterIndex()) {
		t.Fatalf("first response %v, want no events at index %d", first, req.GetAfterIndex())
	}
	w := &watcher{cancel: cancel, index: first.GetIndex(), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			resp, err := st.Recv()
			w.mu.Lock()
			if err != nil {
				w.err = err
				w.mu.Unlock()
				return
			}
			w.events = append(w.events, resp.GetEvents()...)
			w.index = resp.GetIndex()
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *watcher) snapshot() ([]*cofferv1.SecretEvent, uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events), w.index, w.err
}

// stop ends the stream and returns what it got.
func (w *watcher) stop() ([]*cofferv1.SecretEvent, uint64) {
	w.cancel()
	<-w.done
	ev, idx, _ := w.snapshot()
	return ev, idx
}

// waitEvents waits until w holds n events and returns them.
func (w *watcher) waitEvents(t *testing.T, n int) []*cofferv1.SecretEvent {
	t.Helper()
	var got []*cofferv1.SecretEvent
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		var err error
		got, _, err = w.snapshot()
		if len(got) >= n {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stream ended with %d events: %s", len(got), describeErr(err))
		}
		return fmt.Errorf("%d of %d events", len(got), n)
	})
	return got
}

// waitKind waits until w holds n events of kind and returns those.
func (w *watcher) waitKind(t *testing.T, kind cofferv1.SecretEventKind, n int) []*cofferv1.SecretEvent {
	t.Helper()
	var got []*cofferv1.SecretEvent
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		all, _, err := w.snapshot()
		got = got[:0]
		for _, e := range all {
			if e.GetKind() == kind {
				got = append(got, e)
			}
		}
		if len(got) >= n {
			return nil
		}
		return fmt.Errorf("%d of %d %v events (stream error %v)", len(got), n, kind, err)
	})
	return got
}

func eventVersions(evs []*cofferv1.SecretEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.GetCurrentVersionId()
	}
	return out
}

// wantIncreasing fails unless events are in strictly increasing index
// order (each put is one command changing one secret).
func wantIncreasing(t *testing.T, evs []*cofferv1.SecretEvent) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		if evs[i].GetIndex() <= evs[i-1].GetIndex() {
			t.Fatalf("event %d at index %d after %d: out of order or repeated", i, evs[i].GetIndex(), evs[i-1].GetIndex())
		}
	}
}

// TestWatchAcrossLeaderChangeAndResume: a watch on a follower sees every
// put, in order and once, across the loss of the leader; a client that
// disconnects and resumes on another node with the last index it
// processed gets exactly the puts it had not seen; a resume point older
// than the node's window is refused with watch=resync.
func TestWatchAcrossLeaderChangeAndResume(t *testing.T) {
	c := clustertest.Start(t, 3)
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	v := "v0"
	if _, err := c.Client(c.Leader()).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "app/db", SecretString: &v, ClientRequestToken: newToken()}); err != nil {
		t.Fatal(describeErr(err))
	}
	leader := c.Leader()
	watchOn := c.Others(leader)[0]
	w := startWatch(t, c.Watch(watchOn), &cofferv1.WatchSecretsRequest{SecretIds: []string{"app/db"}})

	var want []string
	for i := range 5 {
		want = append(want, put(t, c, "app/db", fmt.Sprint("before-", i)))
	}
	c.Stop(leader)
	c.WaitLeader(c.Others(leader)...)
	for i := range 5 {
		want = append(want, put(t, c, "app/db", fmt.Sprint("after-", i)))
	}
	// The watch started at the follower's head, which may precede its
	// applying the CreateSecret: keep the puts.
	got := w.waitKind(t, cofferv1.SecretEventKind_SECRET_EVENT_KIND_VERSION_ADDED, len(want))
	wantIncreasing(t, got)
	if !slices.Equal(eventVersions(got), want) {
		t.Fatalf("events across the leader change carry versions\n%v\nwant\n%v", eventVersions(got), want)
	}
	for _, e := range got {
		if e.GetKind() != cofferv1.SecretEventKind_SECRET_EVENT_KIND_VERSION_ADDED || e.GetName() != "app/db" {
			t.Fatalf("event %v, want VERSION_ADDED for app/db", e)
		}
	}

	// Disconnect after the first three events; resume on the other
	// surviving node from the third's index.
	_, _ = w.stop()
	resumeAt := got[2].GetIndex()
	other := c.Others(leader, watchOn)[0]
	r := startWatch(t, c.Watch(other), &cofferv1.WatchSecretsRequest{SecretIds: []string{"app/db"}, AfterIndex: resumeAt})
	want = append(want, put(t, c, "app/db", "resumed"))
	rest := r.waitEvents(t, len(want)-3)
	wantIncreasing(t, rest)
	if !slices.Equal(eventVersions(rest), want[3:]) {
		t.Fatalf("resumed after index %d: versions\n%v\nwant\n%v", resumeAt, eventVersions(rest), want[3:])
	}
	marker := put(t, c, "app/db", "marker")
	rest = r.waitEvents(t, len(want)-3+1)
	if len(rest) != len(want)-3+1 || rest[len(rest)-1].GetCurrentVersionId() != marker {
		t.Fatalf("after the marker: %v", eventVersions(rest))
	}

	// The restarted old leader opened its state after index 1: its window
	// does not reach back there.
	c.Restart(leader)
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		ctx, cancel := clustertest.RPCContext()
		defer cancel()
		st, err := c.Watch(leader).WatchSecrets(ctx, &cofferv1.WatchSecretsRequest{AfterIndex: 1})
		if err != nil {
			return err
		}
		_, err = st.Recv()
		if server.TypeOf(err) != server.TypePreconditionNotMet || server.ErrorMetadata(err)[server.WatchErrorKey] != server.WatchResync {
			return fmt.Errorf("resume after 1 on a restarted node: %s (metadata %v), want PreconditionNotMet watch=resync", describeErr(err), server.ErrorMetadata(err))
		}
		return nil
	})
}

// TestWatchAuthorization: a principal allowed to list app/* sees events
// for app/* only; its selection narrows further by tag.
func TestWatchAuthorization(t *testing.T) {
	c := clustertest.Start(t, 1)
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	iam := cofferv1.NewIAMServiceClient(grpcConn(t, c, 0, nil))
	arnPrefix := "arn:aws:secretsmanager:" + clustertest.DefaultRegion + ":" + clustertest.Account + ":secret:"
	doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:ListSecrets","Resource":"` + arnPrefix + `app/*"}]}`
	if _, err := iam.CreatePrincipal(ctx, &cofferv1.CreatePrincipalRequest{Name: "watcher"}); err != nil {
		t.Fatal(err)
	}
	k, err := iam.CreateAccessKey(ctx, &cofferv1.CreateAccessKeyRequest{Principal: "watcher"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iam.PutPolicy(ctx, &cofferv1.PutPolicyRequest{Name: "watch-app", Document: doc}); err != nil {
		t.Fatal(err)
	}
	if _, err := iam.AttachPolicy(ctx, &cofferv1.AttachPolicyRequest{Principal: "watcher", Policy: "watch-app"}); err != nil {
		t.Fatal(err)
	}
	as := cofferv1.NewWatchServiceClient(grpcConn(t, c, 0, &grpcsig.Credentials{AccessKeyID: k.GetAccessKeyId(), SecretAccessKey: k.GetSecretAccessKey(), Region: clustertest.DefaultRegion}))
	all := startWatch(t, as, &cofferv1.WatchSecretsRequest{})
	blue := startWatch(t, as, &cofferv1.WatchSecretsRequest{Tags: []*cofferv1.WatchTag{{Key: "team", Value: "blue"}}})

	root := c.Client(0)
	for _, s := range []struct{ name, team string }{{"ops/cert", "blue"}, {"app/a", "red"}, {"app/b", "blue"}} {
		v := "x"
		if _, err := root.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: s.name, SecretString: &v, ClientRequestToken: newToken(),
			Tags: []*cofferv1.Tag{{Key: "team", Value: s.team}}}); err != nil {
			t.Fatal(err)
		}
	}
	put(t, c, "ops/cert", "y")
	put(t, c, "app/a", "y")
	names := func(evs []*cofferv1.SecretEvent) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.GetName()+":"+e.GetKind().String())
		}
		return out
	}
	gotAll := all.waitEvents(t, 3)
	want := []string{"app/a:SECRET_EVENT_KIND_CREATED", "app/b:SECRET_EVENT_KIND_CREATED", "app/a:SECRET_EVENT_KIND_VERSION_ADDED"}
	// A last write both see fences the comparison: nothing else may come first.
	put(t, c, "app/b", "z")
	want = append(want, "app/b:SECRET_EVENT_KIND_VERSION_ADDED")
	gotAll = all.waitEvents(t, 4)
	if !slices.Equal(names(gotAll), want) {
		t.Fatalf("watcher allowed app/* got %v, want %v", names(gotAll), want)
	}
	gotBlue := blue.waitEvents(t, 2)
	if w := []string{"app/b:SECRET_EVENT_KIND_CREATED", "app/b:SECRET_EVENT_KIND_VERSION_ADDED"}; !slices.Equal(names(gotBlue), w) {
		t.Fatalf("watcher of team=blue got %v, want %v", names(gotBlue), w)
	}
}

// grpcConn dials node i's API as creds (root when nil).
func grpcConn(t *testing.T, c *clustertest.Cluster, i int, creds *grpcsig.Credentials, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = &grpcsig.Credentials{AccessKeyID: clustertest.RootAccessKeyID, SecretAccessKey: clustertest.RootSecretAccessKey, Region: clustertest.DefaultRegion}
	}
	cc, err := grpc.NewClient(c.Node(i).Addr(), append(append(creds.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials())), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// TestWatchReplicaRegionAndPromotion: a watch on the replica region's node
// sees the primary's puts arrive (REPLICATED) and the replica's promotion
// (PROMOTED).
func TestWatchReplicaRegionAndPromotion(t *testing.T) {
	rs := clustertest.StartRegions(t, 1, usEast, euWest)
	rs.Pair(usEast, euWest)
	us, eu := rs.Region(usEast), rs.Region(euWest)
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	v := "v1"
	created, err := us.Client(0).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
		Name: "app/key", SecretString: &v, ClientRequestToken: newToken(), AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: euWest}},
	})
	if err != nil {
		t.Fatal(describeErr(err))
	}
	waitReplica(t, rs, usEast, euWest, created.GetArn())
	w := startWatch(t, eu.Watch(0), &cofferv1.WatchSecretsRequest{NamePrefixes: []string{"app/"}})
	v2 := put(t, us, "app/key", "v2")
	got := w.waitEvents(t, 1)
	if e := got[0]; e.GetKind() != cofferv1.SecretEventKind_SECRET_EVENT_KIND_REPLICATED || e.GetCurrentVersionId() != v2 || e.GetName() != "app/key" {
		t.Fatalf("replica region event %v, want REPLICATED with AWSCURRENT %s", e, v2)
	}
	if _, err := eu.Client(0).StopReplicationToReplica(ctx, &cofferv1.StopReplicationToReplicaRequest{SecretId: "app/key"}); err != nil {
		t.Fatal(describeErr(err))
	}
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		evs, _, err := w.snapshot()
		for _, e := range evs {
			if e.GetKind() == cofferv1.SecretEventKind_SECRET_EVENT_KIND_PROMOTED && e.GetName() == "app/key" {
				return nil
			}
		}
		return fmt.Errorf("no PROMOTED event in %d events (%v)", len(evs), err)
	})
}

// TestWatchSlowClientsDoNotSlowWrites measures write throughput with no
// watcher, then with 100 idle watchers (watching a secret nobody writes)
// and 10 slow ones (watching everything, never reading). The slow ones are
// cut off with a resumable LimitExceeded naming the index to resume
// after, and resuming from it works. Figures are logged, not asserted.
func TestWatchSlowClientsDoNotSlowWrites(t *testing.T) {
	const buffer = 64
	c := clustertest.Start(t, 1, clustertest.WithNode(func(o *node.Options) { o.Service.WatchBuffer = buffer }))
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	cl, wc := c.Client(0), c.Watch(0)
	// The load spreads over 48 secrets: each stays under the versions quota.
	names := []string{"idle/x"}
	for i := range 48 {
		names = append(names, fmt.Sprint("load/", i))
	}
	for _, name := range names {
		v := "0"
		if _, err := cl.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, SecretString: &v, ClientRequestToken: newToken()}); err != nil {
			t.Fatal(err)
		}
	}
	writes := func(n int) float64 {
		const writers = 8
		start := time.Now()
		var wg sync.WaitGroup
		for g := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n / writers {
					v := fmt.Sprint(g, "-", i, "-", "padding to make each event's record a little larger than a bare minimum")
					id := fmt.Sprint("load/", g*6+i%6)
					if _, err := cl.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: id, SecretString: &v, ClientRequestToken: newToken()}); err != nil {
						t.Error(describeErr(err))
						return
					}
				}
			}()
		}
		wg.Wait()
		return float64(n) / time.Since(start).Seconds()
	}
	const n = 1200
	base := writes(n)

	var idle []*watcher
	for range 100 {
		idle = append(idle, startWatch(t, wc, &cofferv1.WatchSecretsRequest{SecretIds: []string{"idle/x"}}))
	}
	type slow struct {
		st     grpc.ServerStreamingClient[cofferv1.WatchSecretsResponse]
		cancel context.CancelFunc
	}
	var slows []slow
	// The slow watchers share a connection with fixed 64 KiB flow-control
	// windows (no BDP growth), so the server's sends block soon; should one
	// never be cut off, its stream ends at the timeout and the test fails.
	slowConn := cofferv1.NewWatchServiceClient(grpcConn(t, c, 0, nil, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10)))
	for range 10 {
		sctx, scancel := context.WithTimeout(context.Background(), 2*clustertest.ConvergeTimeout)
		t.Cleanup(scancel)
		st, err := slowConn.WatchSecrets(sctx, &cofferv1.WatchSecretsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		slows = append(slows, slow{st, scancel})
	}
	loaded := writes(n)
	t.Logf("write throughput: %.0f puts/s with no watcher, %.0f puts/s with 100 idle and 10 slow watchers (%d puts by 8 writers, watch buffer %d)", base, loaded, n, buffer)

	// Each slow watcher, read now, gets what the transport buffered, then
	// the cut-off error with its resume index.
	for i, s := range slows {
		var last uint64
		var err error
		count := 0
		for {
			var resp *cofferv1.WatchSecretsResponse
			if resp, err = s.st.Recv(); err != nil {
				break
			}
			count += len(resp.GetEvents())
			last = resp.GetIndex()
		}
		if errors.Is(err, io.EOF) || server.TypeOf(err) != server.TypeLimitExceeded || server.ErrorMetadata(err)[server.WatchErrorKey] != server.WatchOverflow {
			t.Fatalf("slow watcher %d: ended with %s (metadata %v) after %d events, want LimitExceeded watch=overflow", i, describeErr(err), server.ErrorMetadata(err), count)
		}
		resume, _ := strconv.ParseUint(server.ErrorMetadata(err)[server.WatchResumeIndexKey], 10, 64)
		if resume != last {
			t.Fatalf("slow watcher %d: resume index %d, but the last response it read was at %d", i, resume, last)
		}
		if i == 0 {
			t.Logf("slow watcher read %d events before the cut-off at index %d", count, resume)
			r := startWatch(t, wc, &cofferv1.WatchSecretsRequest{AfterIndex: resume})
			_ = r.waitEvents(t, 1)
			r.stop()
		}
		s.cancel()
	}
	for _, w := range idle {
		if evs, _, err := w.snapshot(); len(evs) != 0 || err != nil {
			t.Fatalf("idle watcher got %d events, err %v", len(evs), err)
		}
	}
}
