package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
)

// The buckets of the state database, each declared once here: bucket adds
// it to allBuckets, which Open creates. Values are deterministic proto
// encodings (marshal) unless the layout says otherwise.
var (
	bucketMeta    = bucket("meta")    // the keys below
	bucketSecrets = bucket("secrets") // name → storagev1.Secret
	bucketValues  = bucket("values")  // arn \x00 version id → storagev1.SealedValue

	bucketSecretOrder     = bucket("secret_order")      // order byte + sort key (20 bytes) + name → nil (order.go)
	bucketSecretOrderKeys = bucket("secret_order_keys") // name → its three sort keys (60 bytes)

	bucketProposals    = bucket("proposals")     // proposal id → storagev1.AppliedProposal
	bucketProposalTime = bucket("proposal_time") // time (8 bytes) + proposal id → nil, for expiry

	bucketPrincipals        = bucket("principals")         // name → storagev1.Principal
	bucketAccessKeys        = bucket("access_keys")        // access key id → storagev1.AccessKey
	bucketPolicies          = bucket("policies")           // name → storagev1.Policy
	bucketRotationFunctions = bucket("rotation_functions") // name → storagev1.RotationFunction

	bucketFeed        = bucket("feed")               // seq (8 bytes) → storagev1.ChangeFeedEntry
	bucketFeedAcks    = bucket("feed_acks")          // destination region → seq (8 bytes)
	bucketSources     = bucket("replica_sources")    // source region → last applied seq (8 bytes)
	bucketRejections  = bucket("replica_rejections") // source \0 name → message
	bucketRegionPeers = bucket("region_peers")       // region → storagev1.RegionPeer
)

// The keys of bucketMeta.
var (
	keyApplied = []byte("applied_index") // last applied Raft index (8 bytes)
	keyKeyring = []byte("keyring")       // storagev1.Keyring
	keyFeedSeq = []byte("feed_seq")      // last change feed position (8 bytes)
	// keyProposalCount is how many results bucketProposals holds (8 bytes).
	keyProposalCount = []byte("proposal_count")
	// keySecretOrderIndex is the applied index the order index is in step
	// with (8 bytes); see order.go.
	keySecretOrderIndex = []byte("secret_order_index")
)

// allBuckets lists every bucket the state database has, in declaration order.
var allBuckets [][]byte

func bucket(name string) []byte {
	b := []byte(name)
	allBuckets = append(allBuckets, b)
	return b
}

var marshal = proto.MarshalOptions{Deterministic: true}

// Store is the state machine's database. Apply* change it; every other
// method only reads. It is safe for concurrent use; Restore swaps the whole
// database under a lock that readers take.
type Store struct {
	path string

	mu sync.RWMutex // guards db against Restore's swap
	db *bolt.DB
}

// Entry is one committed log entry to apply. A nil Cmd (a Raft configuration
// change, say) only advances the applied index.
type Entry struct {
	Index uint64
	Cmd   *raftv1.Command
}

// Open opens or creates the state database at path.
func Open(path string) (*Store, error) {
	removeSnapshotFiles(path)
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	return &Store{path: path, db: db}, nil
}

func openDB(path string) (*bolt.DB, error) {
	// A large initial mmap keeps bbolt from remapping while a snapshot's long
	// read transaction is open (a remap waits for every reader to finish,
	// which would stall Apply for the length of a snapshot transfer).
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, InitialMmapSize: 1 << 30})
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return ensureOrderIndex(tx)
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialise state database %s: %w", path, err)
	}
	return db, nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Close()
}

// Path is the database file's path.
func (s *Store) Path() string { return s.path }

// AppliedIndex is the index of the last log entry applied.
func (s *Store) AppliedIndex() uint64 {
	var idx uint64
	_ = s.view(func(tx *bolt.Tx) error {
		idx = appliedIndex(tx)
		return nil
	})
	return idx
}

func appliedIndex(tx *bolt.Tx) uint64 {
	v := tx.Bucket(bucketMeta).Get(keyApplied)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// Apply applies one entry; see ApplyBatch.
func (s *Store) Apply(index uint64, cmd *raftv1.Command) *Result {
	return s.ApplyBatch([]Entry{{Index: index, Cmd: cmd}})[0]
}

// ApplyBatch applies entries in one bbolt transaction — one fsync for the
// batch — and records the highest index in the same transaction. Entries at
// or below the highest index applied so far (stored, or earlier in the same
// batch) are skipped, so replaying the log after a
// restart changes nothing. It panics on an I/O failure or a malformed
// command: the node must stop rather than diverge.
func (s *Store) ApplyBatch(entries []Entry) []*Result {
	results := make([]*Result, len(entries))
	s.mu.RLock()
	defer s.mu.RUnlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		last := appliedIndex(tx)
		t := &txn{tx: tx}
		for i, e := range entries {
			if e.Index <= last {
				results[i] = &Result{Skipped: true}
				continue
			}
			if e.Cmd != nil {
				results[i] = t.dispatch(e.Index, e.Cmd)
			} else {
				results[i] = &Result{}
			}
			if results[i].Index == 0 { // a recalled proposal keeps its first index
				results[i].Index = e.Index
			}
			if e.Index > last {
				last = e.Index
			}
		}
		if t.err != nil {
			return t.err
		}
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], last)
		if err := tx.Bucket(bucketMeta).Put(keyApplied, b[:]); err != nil {
			return err
		}
		return markOrderIndex(tx, last)
	})
	if err != nil {
		panic(fmt.Sprintf("storage: apply batch ending at index %d: %v", entries[len(entries)-1].Index, err))
	}
	return results
}

// SetAppliedIndex records idx as the applied index. Only snapshot installs
// use it: the Raft index of an installed snapshot need not equal the applied
// index stored inside it (a backup from another region, a user restore), and
// the entries after the snapshot must not be skipped as replays.
func (s *Store) SetAppliedIndex(idx uint64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.Update(func(tx *bolt.Tx) error {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], idx)
		if err := tx.Bucket(bucketMeta).Put(keyApplied, b[:]); err != nil {
			return err
		}
		// The state did not change, only its index: the order index (made
		// in step when the snapshot was opened) still is.
		return markOrderIndex(tx, idx)
	})
}

func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.View(fn)
}

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

// SnapshotFile is a point-in-time copy of the database written to a
// temporary file beside it: the read transaction that took it has already
// ended, so however slowly the copy is read, it keeps no freed page from
// reuse. Close removes the file.
type SnapshotFile struct {
	*os.File
	// Index is the applied index inside the copy; Size its length.
	Index uint64
	Size  int64
}

// snapshotFileInfix names the temporary copies (state.db.snapshot-NNN);
// Open removes any a crash left behind.
const snapshotFileInfix = ".snapshot-"

// SnapshotToFile copies the database, as of one read transaction, to a
// temporary file in the database's directory and ends the transaction
// before returning the file, positioned at its start.
func (s *Store) SnapshotToFile() (*SnapshotFile, error) {
	f, err := os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+snapshotFileInfix+"*")
	if err != nil {
		return nil, fmt.Errorf("snapshot file: %w", err)
	}
	out := &SnapshotFile{File: f}
	err = s.view(func(tx *bolt.Tx) error {
		out.Index = appliedIndex(tx)
		n, err := tx.WriteTo(f)
		out.Size = n
		return err
	})
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		_ = out.Close()
		return nil, fmt.Errorf("snapshot file: %w", err)
	}
	return out, nil
}

// Close closes and removes the copy.
func (f *SnapshotFile) Close() error {
	err := f.File.Close()
	if rerr := os.Remove(f.Name()); err == nil {
		err = rerr
	}
	return err
}

// removeSnapshotFiles removes the temporary copies a crash left beside path.
func removeSnapshotFiles(path string) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), base+snapshotFileInfix) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// OpenReadTransactions is how many read transactions are open on the
// database now: a long one keeps bbolt from reusing the pages writers free.
func (s *Store) OpenReadTransactions() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.Stats().OpenTxN
}

// ErrBadSnapshot is returned by Restore when the stream is not a state
// database.
var ErrBadSnapshot = errors.New("snapshot is not a Coffer state database")

// Restore replaces the database with the one read from r. The new database
// is written and checked beside the old one, then swapped in under the lock
// readers take, so a reader sees either the old state or the new one.
func (s *Store) Restore(r io.Reader) error {
	tmp := s.path + ".restore"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if _, err := io.Copy(f, r); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("restore: copy snapshot: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("restore: sync: %w", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("restore: close: %w", err)
	}
	check, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	err = check.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketSecrets, bucketValues} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("%w: bucket %s missing", ErrBadSnapshot, b)
			}
		}
		return nil
	})
	_ = check.Close()
	if err != nil {
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
	db, err := openDB(s.path)
	if err != nil {
		return fmt.Errorf("restore: reopen: %w", err)
	}
	s.db = db
	return nil
}
