package storage

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"

	bolt "go.etcd.io/bbolt"
)

// StateHash is the SHA-256 of a state's logical content: every non-empty
// bucket in name order, and in each every key and value in key order (a
// nested bucket as its own walk), each length-prefixed. It never reads file
// bytes, so two nodes with the same state have the same hash whatever their
// files' page layout, free pages or history of snapshot installs. Nothing is
// left out: every bucket, the applied index included, is the same on every
// node at the same applied index.
type StateHash [sha256.Size]byte

// Checkpoint is the state as of one CheckState entry: a read transaction
// opened right after the transaction that applied the entry committed, and
// before the rest of its batch applied. It pins its database until
// Release, so hashing it in the background is safe while writes go on.
type Checkpoint struct {
	// Index is the Raft index of the CheckState entry.
	Index uint64
	tx    *bolt.Tx
}

// Hash hashes the checkpoint's state.
func (c *Checkpoint) Hash() (StateHash, error) { return hashTx(c.tx) }

// Release ends the checkpoint's read transaction.
func (c *Checkpoint) Release() {
	if c.tx != nil {
		_ = c.tx.Rollback()
		c.tx = nil
	}
}

// OnCheckpoint sets the function ApplyBatch hands each applied CheckState
// entry's Checkpoint to; it must Release it (after hashing it, typically
// in another goroutine). Without one, checkpoints are released at once.
// Set it before the first ApplyBatch.
func (s *Store) OnCheckpoint(fn func(*Checkpoint)) { s.checkpoint = fn }

// Hash hashes the current state (the same walk as a Checkpoint's).
func (s *Store) Hash() (StateHash, error) {
	var h StateHash
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		h, err = hashTx(tx)
		return err
	})
	return h, err
}

func hashTx(tx *bolt.Tx) (StateHash, error) {
	h := sha256.New()
	err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		hashBucket(h, name, b)
		return nil
	})
	if err != nil {
		return StateHash{}, fmt.Errorf("hash state: %w", err)
	}
	var out StateHash
	h.Sum(out[:0])
	return out, nil
}

// hashBucket adds a bucket to h, or nothing when it is empty: a bucket
// this build creates on open and an older snapshot lacked counts as the
// empty bucket it is.
func hashBucket(h hash.Hash, name []byte, b *bolt.Bucket) {
	c := b.Cursor()
	k, v := c.First()
	if k == nil {
		return
	}
	field(h, 'B', name)
	for ; k != nil; k, v = c.Next() {
		if v == nil {
			if nested := b.Bucket(k); nested != nil {
				hashBucket(h, k, nested)
				continue
			}
		}
		field(h, 'K', k)
		field(h, 'V', v)
	}
	field(h, 'E', nil)
}

// field writes a tag, a length and the bytes, so no two different walks
// produce the same stream.
func field(h hash.Hash, tag byte, b []byte) {
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = tag
	n := binary.PutUvarint(hdr[1:], uint64(len(b)))
	h.Write(hdr[:1+n])
	h.Write(b)
}
