package storage_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
)

type step struct {
	at time.Duration
	op proto.Message
}

func keyring(id string) *raftv1.InitKeyring {
	return &raftv1.InitKeyring{Keyring: &storagev1.Keyring{
		Keys: []*storagev1.KmsKey{{
			KeyId:          id,
			Aliases:        []string{"alias/coffer/default"},
			Versions:       []*storagev1.KmsKeyVersion{{Version: 1, SealedMaterial: []byte("sealed-" + id), CreatedDate: timestamppb.New(base)}},
			PrimaryVersion: 1,
			CreatedDate:    timestamppb.New(base),
		}},
		SealedFingerprintKey: []byte("fp-" + id),
		CreatedDate:          timestamppb.New(base),
	}}
}

// script is a history that touches every command, including some that fail.
func script() []step {
	a, b, c := arnOf("app/a", "AAAAAA"), arnOf("app/b", "BBBBBB"), arnOf("app/c", "CCCCCC")
	ca := createWithValue("app/a", "AAAAAA", 1, "a1")
	ca.Description, ca.Tags = "first", tags("env", "prod")
	return []step{
		{0, keyring("k1")},
		{time.Minute, ca},
		{2 * time.Minute, createOp("app/b", "BBBBBB")},
		{3 * time.Minute, createWithValue("app/c", "CCCCCC", 30, "c1")},
		{4 * time.Minute, putOp(a, 2, "a2")},
		{5 * time.Minute, putOp(a, 3, "a3", "AWSPENDING")},
		{6 * time.Minute, moveOp(a, "AWSCURRENT", 3, 2)},
		{7 * time.Minute, putOp(a, 3, "other")}, // token in use
		{8 * time.Minute, &raftv1.UpdateSecret{Arn: a, Description: proto.String("second"), Version: newVersion(4, "a4")}},
		{9 * time.Minute, putOp(b, 20, "b1", "AWSPENDING")},
		{10 * time.Minute, &raftv1.TagResource{Arn: b, Tags: tags("team", "x", "env", "dev")}},
		{11 * time.Minute, &raftv1.UntagResource{Arn: b, TagKeys: []string{"team"}}},
		{12 * time.Minute, &raftv1.PutResourcePolicy{Arn: b, ResourcePolicy: "{}"}},
		{13 * time.Minute, deleteOp(c, 7)},
		{14 * time.Minute, &raftv1.TagResource{Arn: c, Tags: tags("k", "v")}}, // marked for deletion
		{15 * time.Minute, &raftv1.RecordAccess{Entries: []*raftv1.AccessEntry{
			{Arn: a, VersionIds: []string{vid(4)}, Day: timestamppb.New(base)},
			{Arn: c, VersionIds: []string{vid(30)}, Day: timestamppb.New(base)},
		}}},
		{16 * time.Minute, keyring("k2")}, // ignored
		{17 * time.Minute, createWithValue("app/d", "DDDDDD", 40, "d1")},
		{18 * time.Minute, forceDeleteOp(arnOf("app/d", "DDDDDD"))},
		{19 * time.Minute, createWithValue("app/d", "EEEEEE", 41, "d2")},
		{20 * time.Minute, &raftv1.DeleteResourcePolicy{Arn: b}},
		{8 * day, &raftv1.PurgeSecret{Arn: c}},
		{8 * day, createOp("app/c", "FFFFFF")},
		{8*day + time.Minute, &raftv1.RestoreSecret{Arn: a}},
	}
}

func applyScript(f *fixture, steps []step, batchSize int) []*storage.Result {
	f.t.Helper()
	var results []*storage.Result
	for i := 0; i < len(steps); i += batchSize {
		var entries []storage.Entry
		for _, st := range steps[i:min(i+batchSize, len(steps))] {
			f.index++
			entries = append(entries, storage.Entry{Index: f.index, Cmd: command(st.at, st.op)})
		}
		results = append(results, f.store.ApplyBatch(entries)...)
	}
	return results
}

func resultString(r *storage.Result) string {
	return fmt.Sprintf("%s|%s|%s|%v|%v|%v|%v", r.ARN, r.Name, r.VersionID, r.Stages, r.DeletionDate.UnixNano(), r.Skipped, r.Err)
}

// TestApplyDeterministic applies one history to stores in different batch
// sizes; every reader must see the same thing, and every result must agree.
func TestApplyDeterministic(t *testing.T) {
	t.Parallel()
	steps := script()
	ref := newFixture(t)
	refResults := applyScript(ref, steps, 1)
	refState := dump(t, ref.store)
	if refState.applied != uint64(len(steps)) {
		t.Fatalf("AppliedIndex = %d, want %d", refState.applied, len(steps))
	}
	// Sanity: the script did what it says, so the comparison means something.
	if got := allNames(t, ref.store); !slices.Equal(got, []string{"app/a", "app/b", "app/c", "app/d"}) {
		t.Fatalf("secrets = %v", got)
	}
	failed := 0
	for _, r := range refResults {
		if r.Err != nil {
			failed++
		}
	}
	if failed != 2 {
		t.Fatalf("%d failed commands in the script, want 2", failed)
	}
	if k, _ := ref.store.Keyring(); k.GetKeys()[0].GetKeyId() != "k1" {
		t.Fatalf("keyring = %v", k)
	}

	for _, size := range []int{2, 7, len(steps)} {
		t.Run(fmt.Sprint("batch ", size), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			results := applyScript(f, steps, size)
			for i := range results {
				if got, want := resultString(results[i]), resultString(refResults[i]); got != want {
					t.Errorf("result %d = %s, want %s", i, got, want)
				}
			}
			sameState(t, dump(t, f.store), refState)
			for _, sortBy := range []string{storage.SortCreatedDate, storage.SortLastAccessedDate} {
				q := storage.Query{SortBy: sortBy, IncludePlannedDeletion: true}
				got, _ := f.store.ListSecrets(q)
				want, _ := ref.store.ListSecrets(q)
				if !slices.Equal(names(got.Secrets), names(want.Secrets)) {
					t.Fatalf("ListSecrets(%s) = %v, want %v", sortBy, names(got.Secrets), names(want.Secrets))
				}
			}
		})
	}
}

// TestApplyReplay: after a restart the log is replayed from before the
// applied index; those entries are skipped and change nothing.
func TestApplyReplay(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := storage.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, store: s}
	steps := script()
	applyScript(f, steps, 3)
	n := uint64(len(steps))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = storage.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if got := s.AppliedIndex(); got != n {
		t.Fatalf("AppliedIndex after reopen = %d, want %d", got, n)
	}
	before := dump(t, s)

	// The same entries again, one at a time and as one batch.
	for i, st := range steps {
		res := s.Apply(uint64(i+1), command(st.at, st.op))
		if !res.Skipped || res.Err != nil || res.ARN != "" {
			t.Fatalf("replayed entry %d = %+v, want skipped", i+1, res)
		}
	}
	var entries []storage.Entry
	for i, st := range steps {
		entries = append(entries, storage.Entry{Index: uint64(i + 1), Cmd: command(st.at, st.op)})
	}
	for i, res := range s.ApplyBatch(entries) {
		if !res.Skipped {
			t.Fatalf("replayed batch entry %d not skipped: %+v", i+1, res)
		}
	}
	// Different commands at old indexes are skipped too: the index decides.
	for _, idx := range []uint64{1, n / 2, n} {
		res := s.Apply(idx, command(9*day, forceDeleteOp(arnOf("app/a", "AAAAAA"))))
		if !res.Skipped {
			t.Fatalf("Apply(%d) of a new command below the applied index = %+v, want skipped", idx, res)
		}
	}
	sameState(t, dump(t, s), before)

	// A batch straddling the applied index applies only the new part.
	results := s.ApplyBatch([]storage.Entry{
		{Index: n - 1, Cmd: command(9*day, forceDeleteOp(arnOf("app/a", "AAAAAA")))},
		{Index: n, Cmd: command(9*day, forceDeleteOp(arnOf("app/b", "BBBBBB")))},
		{Index: n + 1, Cmd: command(9*day, createOp("app/new", "NNNNNN"))},
	})
	if !results[0].Skipped || !results[1].Skipped || results[2].Skipped || results[2].Err != nil {
		t.Fatalf("straddling batch = %s, %s, %s", resultString(results[0]), resultString(results[1]), resultString(results[2]))
	}
	if got := s.AppliedIndex(); got != n+1 {
		t.Fatalf("AppliedIndex = %d, want %d", got, n+1)
	}
	if got := allNames(t, s); !slices.Equal(got, []string{"app/a", "app/b", "app/c", "app/d", "app/new"}) {
		t.Fatalf("secrets = %v", got)
	}
}

func TestApplyBatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	results := f.store.ApplyBatch([]storage.Entry{
		{Index: 3, Cmd: command(0, createWithValue("a", "AAAAAA", 1, "a"))},
		{Index: 4, Cmd: command(time.Second, createOp("a", "AAAAAA"))}, // exists
		{Index: 5, Cmd: command(2*time.Second, putOp(arnOf("a", "AAAAAA"), 2, "b"))},
		{Index: 6}, // a configuration change: no command
		{Index: 9, Cmd: command(3*time.Second, createOp("b", "BBBBBB"))},
	})
	if len(results) != 5 {
		t.Fatalf("%d results, want 5", len(results))
	}
	if results[0].Err != nil || results[0].VersionID != vid(1) {
		t.Fatalf("entry 3 = %s", resultString(results[0]))
	}
	wantErr(t, results[1].Err, storage.ErrSecretExists, "The operation failed because the secret a already exists.")
	if results[2].Err != nil || results[2].VersionID != vid(2) {
		t.Fatalf("entry 5 = %s", resultString(results[2]))
	}
	if r := results[3]; r.Err != nil || r.Skipped || r.ARN != "" {
		t.Fatalf("entry 6 = %s", resultString(r))
	}
	if results[4].Err != nil || results[4].ARN != arnOf("b", "BBBBBB") {
		t.Fatalf("entry 9 = %s", resultString(results[4]))
	}
	if got := f.store.AppliedIndex(); got != 9 {
		t.Fatalf("AppliedIndex = %d, want 9", got)
	}
	wantLabels(t, f.secret("a"), L(1, "AWSPREVIOUS", 2, "AWSCURRENT"))

	// A configuration change alone moves the index.
	if r := f.store.Apply(10, nil); r.Err != nil || r.Skipped {
		t.Fatalf("Apply(10, nil) = %s", resultString(r))
	}
	if got := f.store.AppliedIndex(); got != 10 {
		t.Fatalf("AppliedIndex = %d, want 10", got)
	}
	if r := f.store.ApplyBatch(nil); len(r) != 0 {
		t.Fatalf("ApplyBatch(nil) = %v", r)
	}
	if got := f.store.AppliedIndex(); got != 10 {
		t.Fatalf("AppliedIndex after an empty batch = %d, want 10", got)
	}
}

// TestApplyBatchAtomic: a batch that panics part-way leaves nothing of
// itself behind, not even the entries before the bad one.
func TestApplyBatchAtomic(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.ok(0, createWithValue("a", "AAAAAA", 1, "a"))
	before := dump(t, f.store)
	bad := command(time.Hour, createOp("z", "ZZZZZZ"))
	bad.Header.Time = nil
	mustPanic(t, "without header time", func() {
		f.store.ApplyBatch([]storage.Entry{
			{Index: 2, Cmd: command(time.Minute, createOp("b", "BBBBBB"))},
			{Index: 3, Cmd: command(2*time.Minute, putOp(arnOf("a", "AAAAAA"), 2, "b"))},
			{Index: 4, Cmd: bad},
		})
	})
	sameState(t, dump(t, f.store), before)
	// The store still works, and the same indexes can be applied properly.
	res := f.store.Apply(2, command(time.Minute, createOp("b", "BBBBBB")))
	if res.Err != nil || res.Skipped {
		t.Fatalf("Apply after a panicked batch = %s", resultString(res))
	}
	if got := allNames(t, f.store); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("secrets = %v", got)
	}
}

func TestApplyPanics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cmd  *raftv1.Command
		want string
	}{
		{"no header", &raftv1.Command{Op: &raftv1.Command_RestoreSecret{RestoreSecret: &raftv1.RestoreSecret{Arn: arnOf("a", "AAAAAA")}}}, "without header time"},
		{"header without time", &raftv1.Command{Header: &raftv1.Header{RequestId: "r"},
			Op: &raftv1.Command_CreateSecret{CreateSecret: createOp("b", "BBBBBB")}}, "without header time"},
		{"no op", &raftv1.Command{Header: &raftv1.Header{Time: timestamppb.New(base)}}, "unknown command op"},
		{"empty command", &raftv1.Command{}, "without header time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.ok(0, createWithValue("a", "AAAAAA", 1, "a"))
			before := dump(t, f.store)
			mustPanic(t, tt.want, func() { f.store.Apply(2, tt.cmd) })
			sameState(t, dump(t, f.store), before)
		})
	}
}

func TestInitKeyring(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if k, err := f.store.Keyring(); err != nil || k != nil {
		t.Fatalf("Keyring before init = %v, %v; want nil", k, err)
	}
	first := keyring("first")
	f.ok(0, first)
	k, err := f.store.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	wantProto(t, "keyring", k, first.GetKeyring())
	// A racing proposer's keyring is dropped, without an error.
	res := f.ok(time.Minute, keyring("second"))
	if res.Err != nil {
		t.Fatalf("second InitKeyring: %v", res.Err)
	}
	k, err = f.store.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	wantProto(t, "keyring after a second init", k, first.GetKeyring())
}

func snapshotBytes(t *testing.T, s *storage.Store) ([]byte, uint64) {
	t.Helper()
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer sn.Release()
	var buf bytes.Buffer
	n, err := sn.WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo reported %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes(), sn.Index
}

func TestSnapshotRestore(t *testing.T) {
	t.Parallel()
	src := newFixture(t)
	applyScript(src, script(), 4)
	want := dump(t, src.store)

	// The snapshot is point-in-time: writes applied while it is open are
	// not in it.
	sn, err := src.store.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if sn.Index != want.applied {
		t.Fatalf("snapshot Index = %d, want %d", sn.Index, want.applied)
	}
	src.ok(9*day, createOp("late", "LLLLLL"))
	src.ok(9*day, forceDeleteOp(arnOf("app/a", "AAAAAA")))
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	sn.Release()
	sn.Release() // twice is harmless

	dst := newFixture(t)
	dst.ok(0, createWithValue("stale", "SSSSSS", 99, "stale"))
	dst.ok(time.Minute, keyring("other"))
	for range 30 {
		dst.ok(time.Hour, putOp(arnOf("stale", "SSSSSS"), int(dst.index)+100, "x"))
	}
	if err := dst.store.Restore(bytes.NewReader(buf.Bytes()), 0); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	sameState(t, dump(t, dst.store), want)
	if _, err := os.Stat(dst.store.Path() + ".restore"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("restore left its temporary file: %v", err)
	}
	if got := mustSecret(t, dst.store, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/a"); got.GetArn() != arnOf("app/a", "AAAAAA") {
		t.Fatalf("partial ARN resolves to %s", got.GetArn())
	}
	sv, err := dst.store.SecretValue("app/a", "", "")
	if err != nil {
		t.Fatal(err)
	}
	wantProto(t, "restored AWSCURRENT", sv.Value, sealed("a4"))

	// The restored store carries on from the snapshot's index.
	dst.index = want.applied
	dst.ok(10*day, putOp(arnOf("app/a", "AAAAAA"), 5, "a5"))
	if got := dst.store.AppliedIndex(); got != want.applied+1 {
		t.Fatalf("AppliedIndex = %d, want %d", got, want.applied+1)
	}
	if r := dst.store.Apply(want.applied, command(10*day, createOp("x", "XXXXXX"))); !r.Skipped {
		t.Fatalf("entry at the snapshot index was applied again: %s", resultString(r))
	}
	// And the snapshot of the restored store restores too.
	again, idx := snapshotBytes(t, dst.store)
	third := newFixture(t)
	if err := third.store.Restore(bytes.NewReader(again), 0); err != nil {
		t.Fatal(err)
	}
	if idx != want.applied+1 || third.store.AppliedIndex() != idx {
		t.Fatalf("index %d / %d, want %d", idx, third.store.AppliedIndex(), want.applied+1)
	}
	sameState(t, dump(t, third.store), dump(t, dst.store))
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), r.n)
	clear(p[:n])
	r.n -= n
	return n, nil
}

func TestRestoreRejectsBadSnapshot(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	// A valid bbolt file that is not a Coffer state database.
	foreignPath := filepath.Join(t.TempDir(), "foreign.db")
	db, err := bolt.Open(foreignPath, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	foreign, err := os.ReadFile(foreignPath)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		r    io.Reader
		kind error // nil: any error
	}{
		{"empty", bytes.NewReader(nil), storage.ErrBadSnapshot},
		{"text", bytes.NewReader([]byte("this is not a database")), storage.ErrBadSnapshot},
		{"random", bytes.NewReader(random), storage.ErrBadSnapshot},
		{"foreign bbolt file", bytes.NewReader(foreign), storage.ErrBadSnapshot},
		{"stream fails", &failingReader{n: 10000}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			applyScript(f, script(), 5)
			before := dump(t, f.store)
			err := f.store.Restore(tt.r, 0)
			if err == nil {
				t.Fatal("Restore accepted a bad snapshot")
			}
			if tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Fatalf("Restore error %v, want %v", err, tt.kind)
			}
			sameState(t, dump(t, f.store), before)
			if _, err := os.Stat(f.store.Path() + ".restore"); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("restore left its temporary file: %v", err)
			}
			f.ok(9*day, createOp("after", "AAAAAA"))
			mustSecret(t, f.store, "after")
		})
	}
}

// TestConcurrentReaders runs readers against Apply, Snapshot and Restore;
// with -race it checks the locking, and every read must see a whole state.
func TestConcurrentReaders(t *testing.T) {
	t.Parallel()
	src := newFixture(t)
	src.ok(0, createWithValue("app", "AAAAAA", 1, "snap"))
	snap, _ := snapshotBytes(t, src.store)

	f := newFixture(t)
	f.ok(0, createWithValue("app", "AAAAAA", 1, "snap"))
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				sv, err := f.store.SecretValue("app", "", "")
				if err != nil {
					errs <- fmt.Errorf("SecretValue: %w", err)
					return
				}
				if sv.Version.GetVersionId() != vid(1) && sv.Version.GetVersionId() != vid(2) {
					errs <- fmt.Errorf("read version %s", sv.Version.GetVersionId())
					return
				}
				if _, err := f.store.ListSecrets(storage.Query{}); err != nil {
					errs <- fmt.Errorf("ListSecrets: %w", err)
					return
				}
				_ = f.store.AppliedIndex()
			}
		})
	}
	for i := range 10 {
		if err := f.store.Restore(bytes.NewReader(snap), 0); err != nil {
			t.Fatalf("Restore %d: %v", i, err)
		}
		f.index = 1
		f.ok(time.Hour, putOp(arnOf("app", "AAAAAA"), 2, "new"))
		snapshotBytes(t, f.store)
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
