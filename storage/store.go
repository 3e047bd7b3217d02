package storage

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
	bucketRoles             = bucket("roles")              // name → storagev1.Role

	bucketFeed        = bucket("feed")               // seq (8 bytes) → storagev1.ChangeFeedEntry
	bucketFeedAcks    = bucket("feed_acks")          // destination region → seq (8 bytes)
	bucketSources     = bucket("replica_sources")    // source region → last applied seq (8 bytes)
	bucketRejections  = bucket("replica_rejections") // source \0 name → message
	bucketRegionPeers = bucket("region_peers")       // region → storagev1.RegionPeer
	// bucketFeedResyncs is where a destination's feed was last reset (full
	// copies follow): its first batch from there is a resync (feed.go).
	bucketFeedResyncs = bucket("feed_resyncs") // destination region → seq (8 bytes)
	// bucketSourceGenerations is the generation of each source's feed the
	// position in bucketSources counts in; none is the empty generation.
	bucketSourceGenerations = bucket("replica_source_generations") // source region → generation

	bucketKMSWraps = bucket("kms_wraps") // key id \x00 key version (4 bytes) → data keys it wrapped (8 bytes)
)

// The keys of bucketMeta.
var (
	keyApplied = []byte("applied_index") // last applied Raft index (8 bytes)
	keyKeyring = []byte("keyring")       // storagev1.Keyring
	keyFeedSeq = []byte("feed_seq")      // last change feed position (8 bytes)
	// keyFeedGeneration names the feed's positions: a new one is stamped
	// into every snapshot an operator restores (StampRestore); none is the
	// empty generation of a state never restored.
	keyFeedGeneration = []byte("feed_generation")
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

	clusterID  atomic.Value // string: meta/cluster_id, kept in memory
	checkpoint func(*Checkpoint)
	// keyringCheck judges a snapshot's keyring before it is installed
	// (SetKeyringCheck); nil checks none.
	keyringCheck atomic.Pointer[KeyringCheck]
	// afterSwap, in tests, runs between Restore's rename and the reopen:
	// the moment a crash would find the new file on disk.
	afterSwap func()
	// changes is the window of recent changes watchers read (watch.go).
	changes *changeLog
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
	s := &Store{path: path, db: db}
	_ = db.View(func(tx *bolt.Tx) error {
		s.changes = newChangeLog(appliedIndex(tx), 0)
		return nil
	})
	if err := s.loadClusterID(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	return s, nil
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
//
// A CheckState entry ends its transaction: the entries up to it commit, a
// read transaction positioned exactly at its index is handed to the
// OnCheckpoint function, and the rest of the batch applies in a new
// transaction.
func (s *Store) ApplyBatch(entries []Entry) []*Result {
	results := make([]*Result, len(entries))
	s.mu.RLock()
	defer s.mu.RUnlock()
	for start := 0; start < len(entries); {
		end, check := s.applySegment(entries, start, results)
		if check != 0 {
			s.takeCheckpoint(check)
		}
		start = end
	}
	return results
}

// applySegment applies entries from start in one transaction, up to the
// end of the batch or through the first CheckState entry it applies, and
// returns where it stopped and that entry's index (0 when none).
func (s *Store) applySegment(entries []Entry, start int, results []*Result) (end int, check uint64) {
	var t *txn
	err := s.db.Update(func(tx *bolt.Tx) error {
		last := appliedIndex(tx)
		t = &txn{tx: tx}
		end, check = len(entries), 0
		for i := start; i < len(entries); i++ {
			e := entries[i]
			if e.Index <= last {
				results[i] = &Result{Skipped: true}
				continue
			}
			if e.Cmd != nil {
				results[i] = t.dispatch(e.Index, e.Cmd)
			} else {
				results[i] = &Result{}
			}
			recalled := results[i].Index != 0 && results[i].Index != e.Index
			if results[i].Index == 0 { // a recalled proposal keeps its first index
				results[i].Index = e.Index
			}
			last = e.Index
			if e.Cmd.GetCheckState() != nil && !recalled {
				end, check = i+1, e.Index
				break
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
	if t.clusterID != "" {
		s.clusterID.Store(t.clusterID)
	}
	s.changes.publish(t.changes, entries[end-1].Index)
	return end, check
}

// takeCheckpoint opens a read transaction on the state as of the CheckState
// entry just committed and hands it to the OnCheckpoint function. The
// caller holds s.mu; the transaction pins its database on its own, so a
// Restore waits for the checkpoint's release before it closes the file.
func (s *Store) takeCheckpoint(index uint64) {
	tx, err := s.db.Begin(false)
	if err != nil {
		panic(fmt.Sprintf("storage: open the checkpoint at index %d: %v", index, err))
	}
	cp := &Checkpoint{Index: index, tx: tx}
	if s.checkpoint == nil {
		cp.Release()
		return
	}
	s.checkpoint(cp)
}

func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.View(fn)
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
