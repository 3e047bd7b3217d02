package storage

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// The record layouts a snapshot is checked against before it is installed:
// one check per bucket, as store.go's declarations describe its values.
// Apply panics on a stored record that does not decode (a replica must stop
// rather than diverge), so a snapshot with one such record would install on
// every node and then stop every node on the first command touching it.
// TestEveryBucketHasARecordCheck fails on a bucket without an entry here.

// recordCheck checks one record of a bucket.
type recordCheck func(k, v []byte) error

var recordChecks = map[string]recordCheck{
	string(bucketMeta):              checkMeta,
	string(bucketSecrets):           message(func() proto.Message { return &storagev1.Secret{} }),
	string(bucketValues):            message(func() proto.Message { return &storagev1.SealedValue{} }),
	string(bucketProposals):         message(func() proto.Message { return &storagev1.AppliedProposal{} }),
	string(bucketProposalTime):      checkProposalTime,
	string(bucketPrincipals):        message(func() proto.Message { return &storagev1.Principal{} }),
	string(bucketAccessKeys):        message(func() proto.Message { return &storagev1.AccessKey{} }),
	string(bucketPolicies):          message(func() proto.Message { return &storagev1.Policy{} }),
	string(bucketRotationFunctions): message(func() proto.Message { return &storagev1.RotationFunction{} }),
	string(bucketRoles):             message(func() proto.Message { return &storagev1.Role{} }),
	string(bucketFeed):              message(func() proto.Message { return &storagev1.ChangeFeedEntry{} }),
	string(bucketFeedAcks):          position,
	string(bucketSources):           position,
	string(bucketRejections):        func([]byte, []byte) error { return nil }, // a message, any text
	string(bucketRegionPeers):       message(func() proto.Message { return &storagev1.RegionPeer{} }),
	string(bucketFeedResyncs):       position,
	string(bucketSourceGenerations): checkGeneration,
	string(bucketSecretOrder):       checkOrderEntry,
	string(bucketSecretOrderKeys):   checkOrderKeys,
	string(bucketKMSWraps):          position, // a count, 8 bytes like a position
}

// checkOrderEntry checks a ListSecrets order index entry: an order byte, a
// 20-byte sort key and a name, with no value.
func checkOrderEntry(k, v []byte) error {
	if len(k) < 1+20+1 || len(v) != 0 {
		return fmt.Errorf("is not an order byte, a sort key and a name with no value")
	}
	return nil
}

// checkOrderKeys checks the sort keys a name is filed under: one 20-byte
// key per date order.
func checkOrderKeys(_, v []byte) error {
	if len(v) != 20*len(dateOrders) {
		return fmt.Errorf("is not %d sort keys of 20 bytes", len(dateOrders))
	}
	return nil
}

// message checks that a value decodes as the bucket's message type.
func message(newMsg func() proto.Message) recordCheck {
	return func(_, v []byte) error { return unmarshal(v, newMsg()) }
}

func unmarshal(v []byte, m proto.Message) error {
	if err := proto.Unmarshal(v, m); err != nil {
		return fmt.Errorf("does not decode as %s", m.ProtoReflect().Descriptor().FullName())
	}
	return nil
}

// position checks an 8-byte big-endian sequence number.
func position(_, v []byte) error {
	if len(v) != 8 {
		return fmt.Errorf("is %d bytes, not an 8-byte position", len(v))
	}
	return nil
}

// checkMeta checks the meta keys this build knows; others (a later
// build's) are left alone.
func checkMeta(k, v []byte) error {
	switch string(k) {
	case string(keyApplied), string(keyFeedSeq), string(keyProposalCount), string(keySecretOrderIndex):
		return position(k, v)
	case string(keyKeyring):
		return unmarshal(v, &storagev1.Keyring{})
	case string(keyFeedGeneration):
		return checkGeneration(k, v)
	case string(keyClusterID):
		if len(v) == 0 || len(v) > 64 || !utf8.Valid(v) {
			return fmt.Errorf("is not a cluster id")
		}
	}
	return nil
}

// checkGeneration checks a feed generation: at most 80 bytes of UTF-8.
func checkGeneration(_, v []byte) error {
	if len(v) > 80 || !utf8.Valid(v) {
		return fmt.Errorf("is not a feed generation")
	}
	return nil
}

// checkProposalTime checks an expiry index entry: 8 bytes of time, then
// the proposal id, and no value.
func checkProposalTime(k, v []byte) error {
	if len(k) < 8 || len(v) != 0 {
		return fmt.Errorf("is not an 8-byte time and a proposal id with no value")
	}
	return nil
}

// checkRecords checks every record of every bucket this build knows. The
// meta, secrets and values buckets must exist; a bucket a later build added
// is not judged. A damaged file (bbolt panics on some) is a SnapshotError
// too.
func checkRecords(tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &SnapshotError{Reason: "its pages are damaged (" + truncateReason(fmt.Sprint(p)) + ")"}
		}
	}()
	for _, b := range [][]byte{bucketMeta, bucketSecrets, bucketValues} {
		if tx.Bucket(b) == nil {
			return &SnapshotError{Reason: fmt.Sprintf("bucket %s is missing", b)}
		}
	}
	for _, name := range allBuckets {
		b := tx.Bucket(name)
		if b == nil {
			continue // an older build's snapshot; Restore creates it empty
		}
		check := recordChecks[string(name)]
		err := b.ForEach(func(k, v []byte) error {
			if v == nil && b.Bucket(k) != nil {
				return &SnapshotError{Reason: fmt.Sprintf("bucket %s holds a nested bucket %s", name, printableKey(k))}
			}
			if err := check(k, v); err != nil {
				return &SnapshotError{Reason: fmt.Sprintf("record %s in bucket %s %v", printableKey(k), name, err)}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// printableKey shows a record key in an error: quoted, and cut short. Keys
// are names, ids and positions, never values.
func printableKey(k []byte) string {
	const max = 80
	if len(k) > max {
		k = k[:max]
	}
	if utf8.Valid(k) {
		return strconv.Quote(string(k))
	}
	return fmt.Sprintf("%x", k)
}

// truncateReason cuts an error text quoted in a SnapshotError.
func truncateReason(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
