package cluster

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/diskspace"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// TestLowDiskRefusesWritesBeforeApply: a write that reached Apply on a full
// data volume made the node panic (and every node that could not store it).
// Below storage.min_free_bytes writes are now refused before they are
// proposed — by a leader whose own volume is low, whether the write came
// to it or was forwarded, and by the leader while a follower gossips that
// its volume is low — with ServiceUnavailable naming the cause; reads go
// on, no node stops, and writes resume once space is free.
func TestLowDiskRefusesWritesBeforeApply(t *testing.T) {
	var low sync.Map // node id → true while its volume is low
	measure := func(path string) (diskspace.Usage, error) {
		for _, part := range strings.Split(filepath.ToSlash(path), "/") {
			id, _, _ := strings.Cut(part, ".")
			if v, ok := low.Load(id); ok && v.(bool) {
				return diskspace.Usage{Free: 10 << 20, Total: 100 << 30}, nil
			}
		}
		return diskspace.Usage{Free: 50 << 30, Total: 100 << 30}, nil
	}
	c := clustertest.Start(t, 3, clustertest.WithRaft(func(rc *replication.Config) { rc.DiskSpace = measure }))
	leader := c.Leader()
	follower := c.Others(leader)[0]
	createSecret(t, c, follower, "app/db", "before")
	// put is a write; a tag, so that the writes that go through while the
	// test waits for gossip add no versions.
	put := func(i int, value string) error {
		ctx, cancel := clustertest.RPCContext()
		defer cancel()
		_, err := c.Client(i).TagResource(ctx, &cofferv1.TagResourceRequest{SecretId: "app/db", Tags: []*cofferv1.Tag{{Key: "state", Value: value}}})
		return err
	}
	refused := func(err error) error {
		if server.TypeOf(err) != server.TypeServiceUnavailable || !strings.Contains(err.Error(), "low on disk space") {
			return fmt.Errorf("write = %s, want ServiceUnavailable for low disk space", describeErr(err))
		}
		return nil
	}
	read := func(i int) {
		t.Helper()
		ctx, cancel := clustertest.RPCContext()
		defer cancel()
		if _, err := c.Client(i).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"}); err != nil {
			t.Fatalf("read on %s while writes are refused: %s", c.ID(i), describeErr(err))
		}
	}

	// The leader's volume is low: its own writes and forwarded ones.
	low.Store(c.ID(leader), true)
	for _, via := range []int{leader, follower} {
		if err := refused(put(via, "leader low")); err != nil {
			t.Fatalf("through %s: %v", c.ID(via), err)
		}
	}
	read(follower)
	low.Store(c.ID(leader), false)
	if err := put(follower, "leader has room"); err != nil {
		t.Fatalf("write once the leader has room: %s", describeErr(err))
	}

	// A follower's volume is low: once it has gossiped it, the leader
	// refuses every write, so the follower is never handed one it cannot
	// store.
	low.Store(c.ID(follower), true)
	wait.Until(t, clustertest.ConvergeTimeout, func() error { return refused(put(leader, "follower low")) })
	read(leader)
	low.Store(c.ID(follower), false)
	wait.Until(t, clustertest.ConvergeTimeout, func() error { return put(leader, "follower has room") })
	if got := len(c.Running()); got != 3 {
		t.Fatalf("%d nodes running, want 3", got)
	}
}
