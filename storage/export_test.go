package storage

import (
	"bytes"

	bolt "go.etcd.io/bbolt"

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
