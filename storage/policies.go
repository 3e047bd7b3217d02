package storage

import (
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

func (t *txn) putPolicy(op *raftv1.PutPolicy) *Result {
	p := proto.CloneOf(op.GetPolicy())
	b := t.tx.Bucket(bucketPolicies)
	if v := b.Get([]byte(p.GetName())); v != nil {
		p.CreatedDate = decodePolicy([]byte(p.GetName()), v).GetCreatedDate()
	}
	t.put(b, []byte(p.GetName()), p)
	return &Result{Name: p.GetName(), ARN: p.GetArn()}
}

func (t *txn) deletePolicy(op *raftv1.DeletePolicy) *Result {
	b := t.tx.Bucket(bucketPolicies)
	if b.Get([]byte(op.GetName())) == nil {
		return &Result{Err: errPolicyNotFound(op.GetName())}
	}
	var users []string
	_ = t.tx.Bucket(bucketPrincipals).ForEach(func(k, v []byte) error {
		if slices.Contains(decodePrincipal(k, v).GetAttachedPolicies(), op.GetName()) {
			users = append(users, string(k))
		}
		return nil
	})
	users = append(users, t.rolesAttaching(op.GetName())...)
	if len(users) > 0 {
		return &Result{Err: newError(ErrPolicyInUse, "Cannot delete policy %s: it is attached to %d principal(s), such as %s; detach it first.",
			op.GetName(), len(users), users[0])}
	}
	t.fail(b.Delete([]byte(op.GetName())))
	return &Result{Name: op.GetName()}
}

func (t *txn) attachPolicy(op *raftv1.AttachPolicy) *Result {
	p, err := t.principal(op.GetPrincipal())
	if err != nil {
		return &Result{Err: err}
	}
	if t.tx.Bucket(bucketPolicies).Get([]byte(op.GetPolicy())) == nil {
		return &Result{Err: errPolicyNotFound(op.GetPolicy())}
	}
	if !slices.Contains(p.GetAttachedPolicies(), op.GetPolicy()) {
		p.AttachedPolicies = append(p.AttachedPolicies, op.GetPolicy())
		t.put(t.tx.Bucket(bucketPrincipals), []byte(p.GetName()), p)
	}
	return &Result{Name: p.GetName(), ARN: p.GetArn()}
}

func (t *txn) detachPolicy(op *raftv1.DetachPolicy) *Result {
	p, err := t.principal(op.GetPrincipal())
	if err != nil {
		return &Result{Err: err}
	}
	i := slices.Index(p.GetAttachedPolicies(), op.GetPolicy())
	if i < 0 {
		return &Result{Err: newError(ErrPolicyNotFound, "Policy %s is not attached to principal %s.", op.GetPolicy(), op.GetPrincipal())}
	}
	p.AttachedPolicies = slices.Delete(p.AttachedPolicies, i, i+1)
	t.put(t.tx.Bucket(bucketPrincipals), []byte(p.GetName()), p)
	return &Result{Name: p.GetName(), ARN: p.GetArn()}
}

// purgeSessions removes temporary credentials that expired at or before
// now (the command's time, so every replica removes the same ones).
func (t *txn) purgeSessions(now time.Time) *Result {
	b := t.tx.Bucket(bucketAccessKeys)
	var doomed [][]byte
	_ = b.ForEach(func(k, v []byte) error {
		if exp := decodeAccessKey(k, v).GetExpiration(); exp != nil && !exp.AsTime().After(now) {
			doomed = append(doomed, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range doomed {
		t.fail(b.Delete(k))
	}
	return &Result{}
}

func (t *txn) principal(name string) (*storagev1.Principal, *Error) {
	v := t.tx.Bucket(bucketPrincipals).Get([]byte(name))
	if v == nil {
		return nil, newError(ErrPrincipalNotFound, "No principal named %s.", name)
	}
	return decodePrincipal([]byte(name), v), nil
}

func errPolicyNotFound(name string) *Error {
	return newError(ErrPolicyNotFound, "No policy named %s.", name)
}

func decodePrincipal(k, v []byte) *storagev1.Principal {
	p := &storagev1.Principal{}
	if err := proto.Unmarshal(v, p); err != nil {
		panic(fmt.Sprintf("storage: corrupt principal record %q: %v", k, err))
	}
	return p
}

func decodePolicy(k, v []byte) *storagev1.Policy {
	p := &storagev1.Policy{}
	if err := proto.Unmarshal(v, p); err != nil {
		panic(fmt.Sprintf("storage: corrupt policy record %q: %v", k, err))
	}
	return p
}

// Principal returns a principal by name, or nil.
func (s *Store) Principal(name string) (*storagev1.Principal, error) {
	var out *storagev1.Principal
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketPrincipals).Get([]byte(name)); v != nil {
			out = decodePrincipal([]byte(name), v)
		}
		return nil
	})
	return out, err
}

// Policy returns an identity policy by name, or nil.
func (s *Store) Policy(name string) (*storagev1.Policy, error) {
	var out *storagev1.Policy
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketPolicies).Get([]byte(name)); v != nil {
			out = decodePolicy([]byte(name), v)
		}
		return nil
	})
	return out, err
}

// Policies lists identity policies by name.
func (s *Store) Policies() ([]*storagev1.Policy, error) {
	var out []*storagev1.Policy
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPolicies).ForEach(func(k, v []byte) error {
			out = append(out, decodePolicy(k, v))
			return nil
		})
	})
	return out, err
}

// HasExpiredSessions reports whether any temporary credentials expired at
// or before now, so the leader proposes a purge only when there is work.
func (s *Store) HasExpiredSessions(now time.Time) (bool, error) {
	found := false
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAccessKeys).ForEach(func(k, v []byte) error {
			if exp := decodeAccessKey(k, v).GetExpiration(); exp != nil && !exp.AsTime().After(now) {
				found = true
			}
			return nil
		})
	})
	return found, err
}
