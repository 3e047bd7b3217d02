package storage

import (
	"bytes"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/reflect/protoreflect"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// StoredValueIDs returns the version ids whose sealed values are stored for
// arn, in key order. No reader exposes the values bucket directly, and the
// tests need to see that pruning, purging and force deletion leave no value
// behind.
func StoredValueIDs(s *Store, arn string) []string {
	var ids []string
	prefix := append([]byte(arn), 0)
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketValues).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			ids = append(ids, string(k[len(prefix):]))
		}
		return nil
	})
	if err != nil {
		panic(err)
	}
	return ids
}

// StoredValueCount is the number of sealed values stored for all secrets.
func StoredValueCount(s *Store) int {
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketValues).ForEach(func(_, _ []byte) error {
			n++
			return nil
		})
	})
	if err != nil {
		panic(err)
	}
	return n
}

// StoredValue decodes the sealed value stored for one version, or nil.
func StoredValue(s *Store, arn, versionID string) *storagev1.SealedValue {
	var v *storagev1.SealedValue
	if err := s.view(func(tx *bolt.Tx) error {
		v = getValue(tx, arn, versionID)
		return nil
	}); err != nil {
		panic(err)
	}
	return v
}

// FeedRole is how a command relates to the change feed, for the table test.
type FeedRole = feedRole

// The feed roles a command table entry can have.
const (
	RoleSecretChange = roleSecretChange
	RoleFeedManager  = roleFeedManager
	RoleLocal        = roleLocal
)

// CommandFeedRole is the feed role of the table entry for the oneof case
// whose message is op; false when the table has none.
func CommandFeedRole(op protoreflect.FullName) (FeedRole, bool) {
	c, ok := commands[op]
	return c.feed, ok
}

// FeedSeq is the position of the last entry appended to the feed.
func FeedSeq(s *Store) uint64 {
	var seq uint64
	if err := s.view(func(tx *bolt.Tx) error {
		seq = u64(tx.Bucket(bucketMeta).Get(keyFeedSeq))
		return nil
	}); err != nil {
		panic(err)
	}
	return seq
}

// FeedEntriesAfter lists the feed entries kept after position seq, for any
// destination.
func FeedEntriesAfter(s *Store, seq uint64) []*storagev1.ChangeFeedEntry {
	var out []*storagev1.ChangeFeedEntry
	if err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketFeed).Cursor()
		for k, v := c.Seek(u64b(seq + 1)); k != nil; k, v = c.Next() {
			out = append(out, decodeFeedEntry(k, v))
		}
		return nil
	}); err != nil {
		panic(err)
	}
	return out
}

// SetAfterSwap runs fn inside Restore, after the rename and before the
// reopen: where a crash would leave the new file on disk.
func SetAfterSwap(s *Store, fn func()) { s.afterSwap = fn }

// BucketsWithoutRecordCheck lists the buckets a snapshot's records are not
// checked in; it must be empty.
func BucketsWithoutRecordCheck() []string {
	var out []string
	for _, b := range allBuckets {
		if recordChecks[string(b)] == nil {
			out = append(out, string(b))
		}
	}
	return out
}

// SetMaxRememberedProposals lowers the proposal memory's count bound for a
// test; the returned function puts it back.
func SetMaxRememberedProposals(n int) (restore func()) {
	old := maxRemembered
	maxRemembered = n
	return func() { maxRemembered = old }
}

// RememberedProposals is how many proposal results the store remembers,
// counted from the time index (not from the stored count, which it checks).
func RememberedProposals(s *Store) int {
	n := 0
	if err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketProposalTime).ForEach(func(_, _ []byte) error {
			n++
			return nil
		})
	}); err != nil {
		panic(err)
	}
	return n
}

// DropOrderIndex removes the ListSecrets order index from the closed state
// file at path, as a build that did not keep one would have left it.
func DropOrderIndex(tb testing.TB, path string) {
	tb.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSecretOrder, bucketSecretOrderKeys} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Delete(keySecretOrderIndex)
	}); err != nil {
		tb.Fatal(err)
	}
}
