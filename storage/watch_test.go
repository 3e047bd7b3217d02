package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	"github.com/cofferhq/coffer/storage"
)

// next reads one Next of w, failing on an error.
func next(t *testing.T, w *storage.ChangeStream) ([]storage.Change, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, through, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return out, through
}

func describe(cs []storage.Change) string {
	var b bytes.Buffer
	for _, c := range cs {
		fmt.Fprintf(&b, "%d:%s:%s:%s gone=%v; ", c.Index, c.Kind, c.Name, c.CurrentVersionID(), c.Gone)
	}
	return b.String()
}

// TestWatchChanges: every secret-changing command yields one change per
// secret it changed, with its index, kind and the record after it; a
// refused command and an access-date update yield none; a stream resumed
// from any index it was given gets exactly what followed (no gap, no
// duplicate).
func TestWatchChanges(t *testing.T) {
	f := newFixture(t)
	w, err := f.store.WatchChanges(0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := arnOf("app/a", "AAAAAA"), arnOf("app/b", "BBBBBB")
	f.ok(time.Second, createWithValue("app/a", "AAAAAA", 1, "one")) // 1
	f.ok(2*time.Second, createWithValue("app/b", "BBBBBB", 1, "x")) // 2
	f.ok(3*time.Second, putOp(a, 2, "two"))                         // 3
	f.fails(4*time.Second, putOp(arnOf("app/zz", "ZZZZZZ"), 2, "nope"), storage.ErrSecretNotFound, "")
	f.ok(5*time.Second, &raftv1.RecordAccess{Entries: []*raftv1.AccessEntry{{Arn: a, Day: timestamppb.New(base)}}}) // 5
	f.batch(6*time.Second, moveOp(b, "blue", 1, 0), deleteOp(b, 7))                                                 // 6, 7
	f.ok(9*time.Second, forceDeleteOp(a))                                                                           // 8

	got, through := next(t, w)
	want := "1:CREATED:app/a:" + vid(1) + " gone=false; 2:CREATED:app/b:" + vid(1) + " gone=false; 3:VERSION_ADDED:app/a:" + vid(2) + " gone=false; " +
		"6:STAGE_MOVED:app/b:" + vid(1) + " gone=false; 7:DELETED:app/b:" + vid(1) + " gone=false; 8:DELETED:app/a: gone=true; "
	if d := describe(got); d != want || through != 8 {
		t.Fatalf("changes through %d:\n got %s\nwant %s (through 8)", through, d, want)
	}
	if got[0].ARN != a || got[0].Time != base.Add(time.Second) {
		t.Errorf("first change ARN %s time %v, want %s %v", got[0].ARN, got[0].Time, a, base.Add(time.Second))
	}
	// Resuming from each index gives exactly the changes after it.
	for after := uint64(1); after < 8; after++ {
		r, err := f.store.WatchChanges(after)
		if err != nil {
			t.Fatalf("WatchChanges(%d): %v", after, err)
		}
		rest, th := next(t, r)
		var wantRest []storage.Change
		for _, c := range got {
			if c.Index > after {
				wantRest = append(wantRest, c)
			}
		}
		if describe(rest) != describe(wantRest) {
			t.Errorf("resume after %d: got %s want %s", after, describe(rest), describe(wantRest))
		}
		if th != 8 {
			t.Errorf("resume after %d: through %d, want 8", after, th)
		}
	}
	// A stream at the head waits for the next change.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if out, _, err := w.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next at the head = %v, %v; want it to wait", describe(out), err)
	}
	f.ok(10*time.Second, &raftv1.RestoreSecret{Arn: b})
	got, through = next(t, w)
	if d := describe(got); d != "9:RESTORED:app/b:"+vid(1)+" gone=false; " || through != 9 {
		t.Fatalf("after restoring: %s through %d", d, through)
	}
	if w.Lag() != 0 {
		t.Errorf("Lag = %d after reading everything", w.Lag())
	}
}

// TestWatchCompacted: a resume point the window no longer covers, a
// stream the window overtook, and a snapshot install all answer
// ErrWatchCompacted; an index with no change still resumes.
func TestWatchCompacted(t *testing.T) {
	f := newFixture(t)
	f.store.SetChangeWindow(4)
	slow, err := f.store.WatchChanges(0)
	if err != nil {
		t.Fatal(err)
	}
	arn := arnOf("app/a", "AAAAAA")
	f.ok(time.Second, createWithValue("app/a", "AAAAAA", 1, "v1"))
	for i := 2; i <= 8; i++ {
		f.ok(time.Duration(i)*time.Second, putOp(arn, i, fmt.Sprint("v", i)))
	}
	// Eight changes through a window of four: indexes 5..8 are held.
	if _, err := f.store.WatchChanges(3); !errors.Is(err, storage.ErrWatchCompacted) {
		t.Fatalf("WatchChanges(3) = %v, want ErrWatchCompacted", err)
	}
	if _, _, err := slow.Next(context.Background()); !errors.Is(err, storage.ErrWatchCompacted) {
		t.Fatalf("overtaken stream: Next = %v, want ErrWatchCompacted", err)
	}
	w, err := f.store.WatchChanges(4)
	if err != nil {
		t.Fatalf("WatchChanges(4): %v", err)
	}
	got, through := next(t, w)
	if len(got) != 4 || got[0].Index != 5 || through != 8 {
		t.Fatalf("resume after 4: %s through %d", describe(got), through)
	}

	// A snapshot install restarts the window at its index.
	sn, err := f.store.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	sn.Release()
	if err := f.store.Restore(&buf, 20); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Next(context.Background()); !errors.Is(err, storage.ErrWatchCompacted) {
		t.Fatalf("stream across a snapshot install: Next = %v, want ErrWatchCompacted", err)
	}
	if _, err := f.store.WatchChanges(8); !errors.Is(err, storage.ErrWatchCompacted) {
		t.Fatalf("WatchChanges(8) after install at 20 = %v, want ErrWatchCompacted", err)
	}
	if _, err := f.store.WatchChanges(20); err != nil {
		t.Fatalf("WatchChanges(20) after install at 20: %v", err)
	}
}
