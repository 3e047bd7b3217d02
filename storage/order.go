package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// The ListSecrets order index. ListSecrets pages through secrets in one of
// four orders; by name is the secrets bucket's own key order, and the three
// date orders are kept here, so that a page reads only the records it
// returns (and those its filters skip), never every secret.
//
// bucketSecretOrder holds one key per secret and date order: the order's
// byte, the date's sort key (tsKey, 20 bytes) and the name. Byte order of
// those keys is the (sort key, name) order ListSecrets has always used.
// bucketSecretOrderKeys maps each name to the three sort keys it is filed
// under, so a write can move its entries without decoding the old record.
//
// The index is derived from the secrets bucket alone, so every replica
// keeps the same one. It is written in the same transaction as the record,
// and meta/secret_order_index says up to which applied index it is in step:
// a state file written by a build that did not keep it (or a snapshot from
// one) is re-indexed when opened.

// orderByte is the first byte of a date order's index keys.
var orderByte = map[string]byte{
	SortCreatedDate:      'c',
	SortLastChangedDate:  'm',
	SortLastAccessedDate: 'a',
}

// dateOrders lists the date orders in the order their keys are stored in
// bucketSecretOrderKeys.
var dateOrders = []string{SortCreatedDate, SortLastChangedDate, SortLastAccessedDate}

// sortKeyLen is the length of a tsKey.
const sortKeyLen = 20

// orderKeys are the sort keys a secret is filed under, one per date order.
func orderKeys(s *storagev1.Secret) []byte {
	out := make([]byte, 0, len(dateOrders)*sortKeyLen)
	for _, by := range dateOrders {
		out = append(out, sortKey(s, by)...)
	}
	return out
}

func orderEntry(by string, key []byte, name string) []byte {
	e := make([]byte, 0, 1+len(key)+len(name))
	e = append(e, orderByte[by])
	e = append(e, key...)
	return append(e, name...)
}

// fileSecret files s in the order index, moving its entries when a date
// changed.
func (t *txn) fileSecret(s *storagev1.Secret) {
	keys := t.tx.Bucket(bucketSecretOrderKeys)
	name := s.GetName()
	next := orderKeys(s)
	prev := keys.Get([]byte(name))
	if bytes.Equal(prev, next) {
		return
	}
	order := t.tx.Bucket(bucketSecretOrder)
	for i, by := range dateOrders {
		k := next[i*sortKeyLen : (i+1)*sortKeyLen]
		if len(prev) == len(next) {
			old := prev[i*sortKeyLen : (i+1)*sortKeyLen]
			if bytes.Equal(old, k) {
				continue
			}
			t.fail(order.Delete(orderEntry(by, old, name)))
		}
		t.fail(order.Put(orderEntry(by, k, name), nil))
	}
	t.fail(keys.Put([]byte(name), next))
}

// unfileSecret removes a secret's entries from the order index.
func (t *txn) unfileSecret(name string) {
	keys := t.tx.Bucket(bucketSecretOrderKeys)
	prev := keys.Get([]byte(name))
	if len(prev) != len(dateOrders)*sortKeyLen {
		return
	}
	order := t.tx.Bucket(bucketSecretOrder)
	for i, by := range dateOrders {
		t.fail(order.Delete(orderEntry(by, prev[i*sortKeyLen:(i+1)*sortKeyLen], name)))
	}
	t.fail(keys.Delete([]byte(name)))
}

// markOrderIndex records that the order index is in step with the state
// at applied index idx.
func markOrderIndex(tx *bolt.Tx, idx uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], idx)
	return tx.Bucket(bucketMeta).Put(keySecretOrderIndex, b[:])
}

// ensureOrderIndex rebuilds the order index when it is not in step with
// the state: a state file or snapshot from a build that did not keep it.
func ensureOrderIndex(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if bytes.Equal(meta.Get(keySecretOrderIndex), meta.Get(keyApplied)) {
		return nil
	}
	for _, b := range [][]byte{bucketSecretOrder, bucketSecretOrderKeys} {
		if err := tx.DeleteBucket(b); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(b); err != nil {
			return err
		}
	}
	t := &txn{tx: tx}
	c := tx.Bucket(bucketSecrets).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		s := &storagev1.Secret{}
		if err := proto.Unmarshal(v, s); err != nil {
			return fmt.Errorf("decode secret %q: %w", k, err)
		}
		t.fileSecret(s)
	}
	if t.err != nil {
		return t.err
	}
	return markOrderIndex(tx, appliedIndex(tx))
}

// orderedSecrets walks the secrets in one ListSecrets order from just
// after a position, decoding each record only when it is reached.
type orderedSecrets struct {
	tx      *bolt.Tx
	c       *bolt.Cursor
	byName  bool
	prefix  []byte // a date order's key byte
	desc    bool
	started bool
	after   []byte // the position to start after (nil: from the end that begins the order)
	k       []byte // the current index key
}

func newOrderedSecrets(tx *bolt.Tx, by string, desc bool, after *cursor) *orderedSecrets {
	o := &orderedSecrets{tx: tx, desc: desc}
	if by == SortName {
		o.byName = true
		o.c = tx.Bucket(bucketSecrets).Cursor()
		if after != nil {
			o.after = []byte(after.Name)
		}
	} else {
		o.prefix = []byte{orderByte[by]}
		o.c = tx.Bucket(bucketSecretOrder).Cursor()
		if after != nil {
			o.after = orderEntry(by, []byte(after.Key), after.Name)
		}
	}
	return o
}

// step moves to the next index key in the order, or to nil at the end.
func (o *orderedSecrets) step() []byte {
	var k []byte
	switch {
	case o.started && o.desc:
		k, _ = o.c.Prev()
	case o.started:
		k, _ = o.c.Next()
	case o.desc:
		// The last key before the position, or the order's last key.
		seek := o.after
		if seek == nil && !o.byName {
			seek = []byte{o.prefix[0] + 1}
		}
		if seek == nil {
			k, _ = o.c.Last()
		} else if k, _ = o.c.Seek(seek); k == nil {
			k, _ = o.c.Last()
		} else {
			k, _ = o.c.Prev()
		}
	default:
		// The first key after the position, or the order's first key.
		seek := o.after
		if seek == nil {
			seek = o.prefix
		}
		if seek == nil {
			k, _ = o.c.First()
		} else if k, _ = o.c.Seek(seek); k != nil && o.after != nil && bytes.Equal(k, o.after) {
			k, _ = o.c.Next()
		}
	}
	o.started = true
	if k != nil && !o.byName && !bytes.HasPrefix(k, o.prefix) {
		k = nil
	}
	o.k = k
	return k
}

// position is the current entry's (sort key, name), as a cursor names it.
func (o *orderedSecrets) position() (key, name string) {
	if o.byName {
		return string(o.k), string(o.k)
	}
	return string(o.k[1 : 1+sortKeyLen]), string(o.k[1+sortKeyLen:])
}

// secret decodes the current entry's record.
func (o *orderedSecrets) secret() (*storagev1.Secret, error) {
	_, name := o.position()
	v := o.tx.Bucket(bucketSecrets).Get([]byte(name))
	if v == nil {
		return nil, fmt.Errorf("order index names %q, which has no record", name)
	}
	s := &storagev1.Secret{}
	if err := proto.Unmarshal(v, s); err != nil {
		return nil, fmt.Errorf("decode secret %q: %w", name, err)
	}
	return s, nil
}
