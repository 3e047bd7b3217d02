package storage

import (
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

func (t *txn) createPrincipal(op *raftv1.CreatePrincipal) *Result {
	b := t.tx.Bucket(bucketPrincipals)
	p := op.GetPrincipal()
	if op.GetIfNoneExist() {
		if k, _ := b.Cursor().First(); k != nil {
			return &Result{Name: string(k)}
		}
	}
	if b.Get([]byte(p.GetName())) != nil {
		return &Result{Err: newError(ErrPrincipalExists, "A principal named %s already exists.", p.GetName())}
	}
	t.put(b, []byte(p.GetName()), p)
	if k := op.GetAccessKey(); k != nil {
		t.put(t.tx.Bucket(bucketAccessKeys), []byte(k.GetAccessKeyId()), k)
	}
	return &Result{Name: p.GetName(), ARN: p.GetArn()}
}

func (t *txn) deletePrincipal(op *raftv1.DeletePrincipal) *Result {
	b := t.tx.Bucket(bucketPrincipals)
	if b.Get([]byte(op.GetName())) == nil {
		return &Result{Err: newError(ErrPrincipalNotFound, "No principal named %s.", op.GetName())}
	}
	keys := t.tx.Bucket(bucketAccessKeys)
	var doomed [][]byte
	_ = keys.ForEach(func(k, v []byte) error {
		if decodeAccessKey(k, v).GetPrincipal() == op.GetName() {
			doomed = append(doomed, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range doomed {
		t.fail(keys.Delete(k))
	}
	t.fail(b.Delete([]byte(op.GetName())))
	return &Result{Name: op.GetName()}
}

func (t *txn) createAccessKey(op *raftv1.CreateAccessKey) *Result {
	k := op.GetAccessKey()
	if role := k.GetRole(); role != "" {
		// A role's session: its principal is the assumed-role ARN, and the
		// role must still exist (it may have been deleted meanwhile).
		if _, err := t.role(role); err != nil {
			return &Result{Err: err}
		}
	} else if t.tx.Bucket(bucketPrincipals).Get([]byte(k.GetPrincipal())) == nil {
		return &Result{Err: newError(ErrPrincipalNotFound, "No principal named %s.", k.GetPrincipal())}
	}
	// A session lives only as long as the key it was exchanged for: one
	// whose parent was deleted while it was being proposed is refused.
	if parent := k.GetParentAccessKeyId(); parent != "" && t.tx.Bucket(bucketAccessKeys).Get([]byte(parent)) == nil {
		return &Result{Err: newError(ErrAccessKeyNotFound, "No access key %s.", parent)}
	}
	t.countWrap(k.GetSealedSecret())
	t.countWrap(k.GetSealedSessionToken())
	t.put(t.tx.Bucket(bucketAccessKeys), []byte(k.GetAccessKeyId()), k)
	return &Result{Name: k.GetPrincipal()}
}

func (t *txn) deleteAccessKey(op *raftv1.DeleteAccessKey) *Result {
	b := t.tx.Bucket(bucketAccessKeys)
	v := b.Get([]byte(op.GetAccessKeyId()))
	if v == nil {
		return &Result{Err: newError(ErrAccessKeyNotFound, "No access key %s.", op.GetAccessKeyId())}
	}
	name := decodeAccessKey([]byte(op.GetAccessKeyId()), v).GetPrincipal()
	// Deleting a key revokes the sessions exchanged for it.
	doomed := [][]byte{[]byte(op.GetAccessKeyId())}
	_ = b.ForEach(func(k, v []byte) error {
		if decodeAccessKey(k, v).GetParentAccessKeyId() == op.GetAccessKeyId() {
			doomed = append(doomed, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range doomed {
		t.fail(b.Delete(k))
	}
	return &Result{Name: name}
}

func decodeAccessKey(k, v []byte) *storagev1.AccessKey {
	a := &storagev1.AccessKey{}
	if err := proto.Unmarshal(v, a); err != nil {
		panic(fmt.Sprintf("storage: corrupt access key record %q: %v", k, err))
	}
	return a
}

// AccessKey returns an access key by id, or nil.
func (s *Store) AccessKey(id string) (*storagev1.AccessKey, error) {
	var out *storagev1.AccessKey
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketAccessKeys).Get([]byte(id)); v != nil {
			out = decodeAccessKey([]byte(id), v)
		}
		return nil
	})
	return out, err
}

// PrincipalEntry is a principal with its access key ids.
type PrincipalEntry struct {
	Principal    *storagev1.Principal
	AccessKeyIDs []string
}

// Principals lists principals by name, each with its access key ids.
func (s *Store) Principals() ([]PrincipalEntry, error) {
	var out []PrincipalEntry
	err := s.view(func(tx *bolt.Tx) error {
		idx := map[string]int{}
		err := tx.Bucket(bucketPrincipals).ForEach(func(k, v []byte) error {
			p := &storagev1.Principal{}
			if err := proto.Unmarshal(v, p); err != nil {
				return fmt.Errorf("decode principal %q: %w", k, err)
			}
			idx[p.GetName()] = len(out)
			out = append(out, PrincipalEntry{Principal: p})
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketAccessKeys).ForEach(func(k, v []byte) error {
			a := decodeAccessKey(k, v)
			if a.GetExpiration() != nil {
				return nil // temporary credentials are not the principal's keys
			}
			if i, ok := idx[a.GetPrincipal()]; ok {
				out[i].AccessKeyIDs = append(out[i].AccessKeyIDs, string(k))
			}
			return nil
		})
	})
	for _, e := range out {
		sort.Strings(e.AccessKeyIDs)
	}
	return out, err
}
