package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// Snapshot is a consistent, point-in-time copy of the database being
// streamed. It holds a bbolt read transaction until Release.
type Snapshot struct {
	tx     *bolt.Tx
	unlock func()
	Index  uint64
}

// Snapshot begins a point-in-time snapshot. Writers keep going while it is
// streamed; the caller must call Release.
func (s *Store) Snapshot() (*Snapshot, error) {
	s.mu.RLock()
	tx, err := s.db.Begin(false)
	if err != nil {
		s.mu.RUnlock()
		return nil, fmt.Errorf("begin snapshot: %w", err)
	}
	return &Snapshot{tx: tx, unlock: s.mu.RUnlock, Index: appliedIndex(tx)}, nil
}

// WriteTo streams the database file as of the snapshot.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	n, err := sn.tx.WriteTo(w)
	if err != nil {
		return n, fmt.Errorf("write snapshot: %w", err)
	}
	return n, nil
}

// Size is the number of bytes WriteTo will write.
func (sn *Snapshot) Size() int64 { return sn.tx.Size() }

// Release ends the snapshot's read transaction.
func (sn *Snapshot) Release() {
	if sn.tx != nil {
		_ = sn.tx.Rollback()
		sn.tx = nil
		sn.unlock()
	}
}

// ErrBadSnapshot is returned by Restore and CheckSnapshot when a snapshot is
// not a state database this region can install.
var ErrBadSnapshot = errors.New("snapshot is not a Coffer state database")

// SnapshotError is why a snapshot was refused. It is ErrBadSnapshot, and its
// Reason is safe to show the operator who sent the snapshot: it names
// buckets and the snapshot's own record keys, never a value.
type SnapshotError struct {
	Reason string
}

func (e *SnapshotError) Error() string { return ErrBadSnapshot.Error() + ": " + e.Reason }

// Is makes a SnapshotError match ErrBadSnapshot.
func (e *SnapshotError) Is(target error) bool { return target == ErrBadSnapshot }

// KeyringCheck judges a snapshot's keyring record: nil when this region's
// root key opens it. node/ sets one (SetKeyringCheck) that opens it with
// the region's root key; storage itself never sees a key.
type KeyringCheck func(*storagev1.Keyring) error

// SetKeyringCheck makes every snapshot CheckSnapshot or Restore looks at
// pass check, when it holds a keyring: a snapshot taken in another region,
// or under another root key, is refused before it is installed rather than
// installed and then unable to unseal anything.
func (s *Store) SetKeyringCheck(check KeyringCheck) { s.keyringCheck.Store(&check) }

// checkSnapshotDB is what a snapshot must pass before it is installed:
// every record of every bucket decodes as its bucket's layout says
// (checkRecords), and its keyring, if it has one, opens under this region's
// root key.
func (s *Store) checkSnapshotDB(db *bolt.DB) error {
	var keyring *storagev1.Keyring
	err := db.View(func(tx *bolt.Tx) error {
		if err := checkRecords(tx); err != nil {
			return err
		}
		if raw := tx.Bucket(bucketMeta).Get(keyKeyring); raw != nil {
			keyring = &storagev1.Keyring{}
			return unmarshal(raw, keyring) // checkRecords decoded it already
		}
		return nil
	})
	if err != nil {
		return err
	}
	if check := s.keyringCheck.Load(); keyring != nil && check != nil && *check != nil {
		if err := (*check)(keyring); err != nil {
			return &SnapshotError{Reason: "its keyring does not open with this region's root key: it was taken in another region, or under another root key"}
		}
	}
	return nil
}

// CheckSnapshot checks the snapshot file at path as Restore would, without
// installing it or changing it: an operator's restore is refused here, with
// nothing changed, before Raft stores it and sends it to every node.
func (s *Store) CheckSnapshot(path string) error {
	db, err := openSnapshot(path, true)
	if err != nil {
		return err
	}
	defer db.Close()
	return s.checkSnapshotDB(db)
}

// openSnapshot opens a snapshot file, mapping a file bbolt cannot open to a
// SnapshotError.
func openSnapshot(path string, readOnly bool) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: readOnly})
	if err != nil {
		return nil, &SnapshotError{Reason: "it is not a bbolt database file (" + truncateReason(err.Error()) + ")"}
	}
	return db, nil
}

// Restore replaces the database with the one read from r and records index
// (when not 0) as its applied index: the Raft index of an installed snapshot
// need not equal the applied index stored inside it (a backup from
// elsewhere, a user restore), and the entries after it must not be skipped
// as replays.
//
// The new database is written beside the old one and synced, checked
// (checkSnapshotDB; ErrBadSnapshot, with the live database untouched), and
// given its applied index in its own transaction; only then is it renamed
// over the live file, under the lock readers take. The rename is the one
// step that changes the state: a crash before it leaves the old state, after
// it the new state with its index — never the new state with the old index.
func (s *Store) Restore(r io.Reader, index uint64) error {
	tmp := s.path + ".restore"
	_ = os.Remove(tmp)
	if err := writeSynced(tmp, r); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("restore: %w", err)
	}
	if err := s.prepareRestore(tmp, index); err != nil {
		_ = os.Remove(tmp)
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("restore: close current database: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("restore: swap database: %w", err)
	}
	if dir, err := os.Open(filepath.Dir(s.path)); err == nil {
		_ = dir.Sync() // make the rename durable before anything is applied on top
		_ = dir.Close()
	}
	if s.afterSwap != nil {
		s.afterSwap()
	}
	db, err := openDB(s.path)
	if err != nil {
		return fmt.Errorf("restore: reopen: %w", err)
	}
	s.db = db
	s.changes.restart(index)
	return s.loadClusterID(db)
}

// prepareRestore checks the snapshot written to tmp and makes it the file
// the live one will become: every bucket this build has, and index as its
// applied index (bbolt syncs the transaction before it returns).
func (s *Store) prepareRestore(tmp string, index uint64) error {
	db, err := openSnapshot(tmp, false)
	if err != nil {
		return err
	}
	if err := s.checkSnapshotDB(db); err != nil {
		_ = db.Close()
		return err
	}
	if err := s.checkRestoredClusterID(db); err != nil {
		_ = db.Close()
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		// A snapshot from a build that kept no order index gets one here,
		// in step with the state inside it.
		if err := ensureOrderIndex(tx); err != nil {
			return err
		}
		if index == 0 {
			return nil
		}
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], index)
		if err := tx.Bucket(bucketMeta).Put(keyApplied, b[:]); err != nil {
			return err
		}
		// The state did not change, only its index: the order index is
		// still in step.
		return markOrderIndex(tx, index)
	})
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("restore: record applied index %d in the new database: %w", index, err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("restore: close the new database: %w", err)
	}
	return nil
}

// writeSynced writes r to a new file at path and syncs it.
func writeSynced(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		_ = f.Close()
		return fmt.Errorf("copy snapshot: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}
