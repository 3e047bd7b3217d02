package cluster

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
)

// TestForwardingAndReads: a write on a follower is forwarded to the leader
// and, once acknowledged, every node's default (linearizable) read sees it;
// a stale read that names the write's index sees it too.
func TestForwardingAndReads(t *testing.T) {
	c := clustertest.Start(t, 3)
	leader := c.Leader()

	for _, f := range c.Others(leader) {
		name := "fwd/" + c.ID(f)
		createTok, putTok := newToken(), newToken()

		ctx, cancel := clustertest.RPCContext()
		var hdr metadata.MD
		created, err := c.Client(f).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
			Name: name, ClientRequestToken: createTok, SecretString: proto.String("first"),
		}, grpc.Header(&hdr))
		cancel()
		if err != nil {
			t.Fatalf("CreateSecret on follower %s: %s", c.ID(f), describeErr(err))
		}
		createIdx := answeredIndex(t, hdr)
		if created.GetName() != name || created.GetVersionId() != createTok || createIdx == 0 {
			t.Fatalf("CreateSecret on %s = name %q version %q index %d, want %q %q and an index", c.ID(f),
				created.GetName(), created.GetVersionId(), createIdx, name, createTok)
		}

		// The follower looks the secret up locally before forwarding.
		ctx, cancel = clustertest.RPCContext()
		hdr = nil
		put, err := c.Client(f).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{
			SecretId: name, ClientRequestToken: putTok, SecretString: proto.String("second"),
		}, grpc.Header(&hdr))
		cancel()
		if err != nil {
			t.Fatalf("PutSecretValue on follower %s: %s", c.ID(f), describeErr(err))
		}
		putIdx := answeredIndex(t, hdr)
		if put.GetVersionId() != putTok || putIdx <= createIdx {
			t.Fatalf("PutSecretValue on %s = version %q index %d, want %q and an index above %d", c.ID(f),
				put.GetVersionId(), putIdx, putTok, createIdx)
		}

		for _, j := range c.Others(f) {
			ctx, cancel := clustertest.RPCContext()
			got, idx, err := getValue(ctx, c.Client(j), name, "")
			cancel()
			if err != nil {
				t.Fatalf("linearizable read on %s right after the write on %s: %s", c.ID(j), c.ID(f), describeErr(err))
			}
			if got.GetSecretString() != "second" || got.GetVersionId() != putTok {
				t.Errorf("linearizable read on %s = %q (version %s), want %q (version %s)", c.ID(j),
					got.GetSecretString(), got.GetVersionId(), "second", putTok)
			}
			if idx < putIdx {
				t.Errorf("linearizable read on %s answered at index %d, before the write's %d", c.ID(j), idx, putIdx)
			}

			ctx, cancel = clustertest.RPCContext(clustertest.StaleRead(putIdx)...)
			got, idx, err = getValue(ctx, c.Client(j), name, "")
			cancel()
			if err != nil {
				t.Fatalf("stale read with min index %d on %s: %s", putIdx, c.ID(j), describeErr(err))
			}
			if got.GetSecretString() != "second" || idx < putIdx {
				t.Errorf("stale read with min index %d on %s = %q at index %d, want %q at %d or later", putIdx, c.ID(j),
					got.GetSecretString(), idx, "second", putIdx)
			}
		}
	}

	// A stale read answers from local state and says which index that is.
	for i := range c.N() {
		ctx, cancel := clustertest.RPCContext(clustertest.StaleRead(0)...)
		got, idx, err := getValue(ctx, c.Client(i), "fwd/"+c.ID(c.Others(leader)[0]), "")
		cancel()
		if err != nil {
			t.Fatalf("stale read on %s: %s", c.ID(i), describeErr(err))
		}
		if idx == 0 || got.GetSecretString() == "" {
			t.Errorf("stale read on %s = %q with index header %d, want a value and an index", c.ID(i), got.GetSecretString(), idx)
		}
	}
}

// TestReadYourWritesAcrossFollowers hammers the guarantee above: writers
// put through one follower and at once read through the other, while the
// leader is busy with the other writers. Every read must see the write it
// follows or a later one of the same writer (there is none: each writer
// owns its secret).
func TestReadYourWritesAcrossFollowers(t *testing.T) {
	c := clustertest.Start(t, 3)
	leader := c.Leader()
	followers := c.Others(leader)

	const writers, rounds = 6, 60
	for w := range writers {
		ctx, cancel := clustertest.RPCContext()
		_, err := c.Client(leader).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
			Name: fmt.Sprintf("ryw/%d", w), SecretString: proto.String("0"),
		})
		cancel()
		if err != nil {
			t.Fatal(describeErr(err))
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var stale []string
	for w := range writers {
		wg.Go(func() {
			name := fmt.Sprintf("ryw/%d", w)
			writeOn, readOn := followers[w%2], followers[(w+1)%2]
			for r := 1; r <= rounds; r++ {
				want := fmt.Sprint(r)
				// A client retries ServiceUnavailable (no leader for a
				// moment, as happens on a loaded machine), as the AWS SDKs
				// do; the same token makes a retried put idempotent. What
				// this test checks is that a successful read is never stale.
				err := retryUnavailable(func() error {
					ctx, cancel := clustertest.RPCContext()
					defer cancel()
					_, err := c.Client(writeOn).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{
						SecretId: name, ClientRequestToken: fmt.Sprintf("ryw-%028d", w*1000+r), SecretString: proto.String(want),
					})
					return err
				})
				if err != nil {
					t.Errorf("put %s on %s: %s", name, c.ID(writeOn), describeErr(err))
					return
				}
				var got *cofferv1.GetSecretValueResponse
				err = retryUnavailable(func() error {
					ctx, cancel := clustertest.RPCContext()
					defer cancel()
					var err error
					got, _, err = getValue(ctx, c.Client(readOn), name, "")
					return err
				})
				if err != nil {
					t.Errorf("read %s on %s: %s", name, c.ID(readOn), describeErr(err))
					return
				}
				if got.GetSecretString() != want {
					mu.Lock()
					stale = append(stale, fmt.Sprintf("%s on %s: read %q after the write of %q was acknowledged", name, c.ID(readOn), got.GetSecretString(), want))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(stale) > 0 {
		t.Errorf("%d of %d linearizable reads missed an acknowledged write, e.g.:\n%s", len(stale), writers*rounds, stale[0])
	}
}

// retryUnavailable retries call while it answers ServiceUnavailable, up to
// ten times with a short pause, and returns the last error.
func retryUnavailable(call func() error) error {
	var err error
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for range 10 {
		if err = call(); server.TypeOf(err) != server.TypeServiceUnavailable {
			return err
		}
		<-tick.C
	}
	return err
}
