package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
)

// keyClusterID is the meta key of the region's cluster id (InitCluster).
var keyClusterID = []byte("cluster_id")

// ErrClusterMismatch is returned by Restore for a snapshot that belongs to
// another cluster than the one this state does.
var ErrClusterMismatch = errors.New("the snapshot belongs to another cluster")

// initCluster records the region's cluster id. The first one wins: a
// second leader that proposed one before it saw the first changes nothing.
func (t *txn) initCluster(op *raftv1.InitCluster) *Result {
	meta := t.tx.Bucket(bucketMeta)
	if meta.Get(keyClusterID) != nil || op.GetClusterId() == "" {
		return &Result{}
	}
	t.fail(meta.Put(keyClusterID, []byte(op.GetClusterId())))
	t.clusterID = op.GetClusterId()
	return &Result{}
}

// ClusterID is the region's cluster id, or "" before InitCluster applied.
// It is read from memory: the transport asks on every new connection.
func (s *Store) ClusterID() string {
	id, _ := s.clusterID.Load().(string)
	return id
}

// loadClusterID refreshes the in-memory cluster id from the database.
func (s *Store) loadClusterID(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		s.clusterID.Store(clusterIDOf(tx))
		return nil
	})
}

func clusterIDOf(tx *bolt.Tx) string {
	return string(tx.Bucket(bucketMeta).Get(keyClusterID))
}

// checkRestoredClusterID makes a snapshot being restored keep this state's
// cluster id: a snapshot of another cluster is refused, and one without an
// id (taken before cluster ids existed) gets this state's.
func (s *Store) checkRestoredClusterID(db *bolt.DB) error {
	own := s.ClusterID()
	return db.Update(func(tx *bolt.Tx) error {
		theirs := clusterIDOf(tx)
		switch {
		case own == "" || theirs == own:
			return nil
		case theirs != "":
			return fmt.Errorf("%w: it holds cluster id %s, this node's state %s", ErrClusterMismatch, theirs, own)
		}
		return tx.Bucket(bucketMeta).Put(keyClusterID, []byte(own))
	})
}

// StampClusterID is StampRestore without a new feed generation.
func StampClusterID(r io.Reader, dir, id string) (*os.File, int64, error) {
	return StampRestore(r, dir, id, "")
}

// StampRestore copies the snapshot read from r into a new file in dir,
// checks that it is a state database, and stamps what an operator's restore
// changes, so every node installs the same stamped copy (the values are
// chosen by the node that stamps, never in Apply):
//   - with id, its cluster id, so a backup taken in another cluster (a
//     region rebuilt from its backup) can be restored into this one, and a
//     node that joins later gets this cluster's id with it;
//   - with generation, a new feed generation: positions of the restored
//     feed may have been used before, for other changes, so every
//     destination is made to reset (acknowledged positions and resync
//     marks are dropped: no replica counts as in sync until its region
//     acknowledged the new generation), and the positions applied from
//     every source are marked as of a restored state (the first batch of
//     each source's generation mismatches, and that source resets too).
//
// The caller reads the returned file (positioned at its start) and removes
// it when done.
func StampRestore(r io.Reader, dir, id, generation string) (*os.File, int64, error) {
	f, err := os.CreateTemp(dir, ".restore-*.db")
	if err != nil {
		return nil, 0, fmt.Errorf("stage snapshot: %w", err)
	}
	path := f.Name()
	fail := func(err error) (*os.File, int64, error) {
		_ = f.Close()
		_ = os.Remove(path)
		return nil, 0, err
	}
	if _, err := io.Copy(f, r); err != nil {
		return fail(fmt.Errorf("stage snapshot: %w", err))
	}
	if err := f.Close(); err != nil {
		return fail(fmt.Errorf("stage snapshot: %w", err))
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return fail(fmt.Errorf("%w: %v", ErrBadSnapshot, err))
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || tx.Bucket(bucketSecrets) == nil || tx.Bucket(bucketValues) == nil {
			return fmt.Errorf("%w: buckets missing", ErrBadSnapshot)
		}
		if id != "" {
			if err := meta.Put(keyClusterID, []byte(id)); err != nil {
				return err
			}
		}
		if generation == "" {
			return nil
		}
		return stampGeneration(tx, generation)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	if f, err = os.Open(path); err != nil {
		return fail(fmt.Errorf("stage snapshot: %w", err))
	}
	st, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("stage snapshot: %w", err))
	}
	return f, st.Size(), nil
}

// RemoveStaged closes and removes a file StampClusterID returned.
func RemoveStaged(f *os.File) {
	_ = f.Close()
	_ = os.Remove(filepath.Clean(f.Name()))
}

// stampGeneration gives a restored state a new feed generation (see
// StampRestore).
func stampGeneration(tx *bolt.Tx, generation string) error {
	if err := tx.Bucket(bucketMeta).Put(keyFeedGeneration, []byte(generation)); err != nil {
		return err
	}
	for _, name := range [][]byte{bucketFeedAcks, bucketFeedResyncs} {
		if tx.Bucket(name) == nil {
			continue // an older build's snapshot; Restore creates it empty
		}
		if err := tx.DeleteBucket(name); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	sources := tx.Bucket(bucketSources)
	if sources == nil {
		return nil
	}
	gens, err := tx.CreateBucketIfNotExists(bucketSourceGenerations)
	if err != nil {
		return err
	}
	return sources.ForEach(func(k, _ []byte) error {
		return gens.Put(k, []byte("restored:"+generation))
	})
}
