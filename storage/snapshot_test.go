package storage_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/storage/kms"
)

// TestRestoreIsOneAtomicSwap (issue 13, item 12): the applied index a
// snapshot is installed at is written into the new file before it is
// renamed over the live one, so at the moment the rename lands — where a
// crash would leave things — the file on disk already carries it. (The
// index used to be written in a second transaction after the swap: a crash
// between the two left the new state with the snapshot's inner index, and
// the entries between the two were skipped as replays on restart.)
func TestRestoreIsOneAtomicSwap(t *testing.T) {
	t.Parallel()
	src := newFixture(t)
	applyScript(src, script(), 3)
	snap, inner := snapshotBytes(t, src.store)
	const installedAt = 1000
	if inner >= installedAt {
		t.Fatalf("fixture index %d", inner)
	}

	dst := newFixture(t)
	path := dst.store.Path()
	var onDisk uint64
	storage.SetAfterSwap(dst.store, func() {
		// The old database is closed and the new file renamed in; nothing
		// has reopened it yet.
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			t.Errorf("open the swapped-in file: %v", err)
			return
		}
		defer db.Close()
		if err := db.View(func(tx *bolt.Tx) error {
			v := tx.Bucket([]byte("meta")).Get([]byte("applied_index"))
			if len(v) == 8 {
				onDisk = binary.BigEndian.Uint64(v)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	})
	if err := dst.store.Restore(bytes.NewReader(snap), installedAt); err != nil {
		t.Fatal(err)
	}
	if onDisk != installedAt {
		t.Fatalf("at the swap the file on disk had applied index %d, want %d (the snapshot's Raft index)", onDisk, installedAt)
	}
	if got := dst.store.AppliedIndex(); got != installedAt {
		t.Fatalf("AppliedIndex after Restore = %d, want %d", got, installedAt)
	}
	if r := dst.store.Apply(installedAt, command(0, createOp("replayed", "RRRRRR"))); !r.Skipped {
		t.Fatalf("the entry at the installed index was applied: %s", resultString(r))
	}
	// Index 0 keeps the snapshot's own.
	third := newFixture(t)
	if err := third.store.Restore(bytes.NewReader(snap), 0); err != nil || third.store.AppliedIndex() != inner {
		t.Fatalf("Restore at 0: %v, index %d, want %d", err, third.store.AppliedIndex(), inner)
	}
}

// corrupt returns snap with bucket's record key replaced by value.
func corrupt(t *testing.T, snap []byte, bucket, key string, value []byte) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "corrupt.db")
	if err := os.WriteFile(path, snap, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte(bucket)).Put([]byte(key), value) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRestoreRefusesSnapshotsThatCannotServe (issue 13, item 12): before a
// snapshot replaces the state, every record of every bucket is decoded and
// its keyring opened with this region's root key. A snapshot with one
// record that does not decode (which Apply would panic on, on every node,
// after every restart) or from another region (whose keyring this root key
// cannot open, so every unseal would fail) is refused with a reason, and
// the live state is untouched.
func TestRestoreRefusesSnapshotsThatCannotServe(t *testing.T) {
	t.Parallel()
	rootHere, rootThere := make([]byte, 32), make([]byte, 32)
	_, _ = rand.Read(rootHere)
	_, _ = rand.Read(rootThere)
	snapshotWith := func(root []byte) []byte {
		f := newFixture(t)
		rec, err := kms.NewKeyring(root, base)
		if err != nil {
			t.Fatal(err)
		}
		f.ok(0, &raftv1.InitKeyring{Keyring: rec})
		f.ok(time.Minute, createWithValue("app/a", "AAAAAA", 1, "a1"))
		snap, _ := snapshotBytes(t, f.store)
		return snap
	}
	good, foreign := snapshotWith(rootHere), snapshotWith(rootThere)
	for _, tc := range []struct {
		name, reason string
		snap         []byte
	}{
		{"another region's", "its keyring does not open with this region's root key", foreign},
		{"a secret that does not decode", `record "app/a" in bucket secrets does not decode as coffer.storage.v1.Secret`,
			corrupt(t, good, "secrets", "app/a", []byte{0xff, 0xff, 0xff})},
		{"a value that does not decode", `in bucket values does not decode as coffer.storage.v1.SealedValue`,
			corrupt(t, good, "values", "x\x00y", []byte{0x0a, 0x80})},
		{"a short position", `record "eu-west-1" in bucket feed_acks is 3 bytes, not an 8-byte position`,
			corrupt(t, good, "feed_acks", "eu-west-1", []byte{1, 2, 3})},
		{"a damaged keyring", `record "keyring" in bucket meta does not decode as coffer.storage.v1.Keyring`,
			corrupt(t, good, "meta", "keyring", []byte{0x0a, 0xff})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.store.SetKeyringCheck(func(rec *storagev1.Keyring) error { return kms.CheckKeyring(rootHere, rec) })
			rec, err := kms.NewKeyring(rootHere, base)
			if err != nil {
				t.Fatal(err)
			}
			f.ok(0, &raftv1.InitKeyring{Keyring: rec})
			f.ok(time.Minute, createWithValue("mine", "MMMMMM", 1, "m1"))
			before := dump(t, f.store)

			path := filepath.Join(t.TempDir(), "upload.db")
			if err := os.WriteFile(path, tc.snap, 0o600); err != nil {
				t.Fatal(err)
			}
			checkErr := f.store.CheckSnapshot(path)
			restoreErr := f.store.Restore(bytes.NewReader(tc.snap), 500)
			for name, err := range map[string]error{"CheckSnapshot": checkErr, "Restore": restoreErr} {
				var se *storage.SnapshotError
				if !errors.As(err, &se) || !errors.Is(err, storage.ErrBadSnapshot) || !strings.Contains(se.Reason, tc.reason) {
					t.Errorf("%s: %v, want a SnapshotError saying %q", name, err, tc.reason)
				}
			}
			sameState(t, dump(t, f.store), before)
			if _, err := os.Stat(f.store.Path() + ".restore"); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("restore left its temporary file: %v", err)
			}
		})
	}
	// The good snapshot passes both.
	f := newFixture(t)
	f.store.SetKeyringCheck(func(rec *storagev1.Keyring) error { return kms.CheckKeyring(rootHere, rec) })
	path := filepath.Join(t.TempDir(), "good.db")
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.store.CheckSnapshot(path); err != nil {
		t.Fatalf("CheckSnapshot of a good snapshot: %v", err)
	}
	if err := f.store.Restore(bytes.NewReader(good), 0); err != nil {
		t.Fatalf("Restore of a good snapshot: %v", err)
	}
	mustSecret(t, f.store, "app/a")
}

// TestEveryBucketHasARecordCheck: a bucket whose records a snapshot is not
// checked in would let a record Apply panics on through.
func TestEveryBucketHasARecordCheck(t *testing.T) {
	t.Parallel()
	if missing := storage.BucketsWithoutRecordCheck(); len(missing) != 0 {
		t.Fatalf("buckets without a record check (storage/verify.go): %v", missing)
	}
}
