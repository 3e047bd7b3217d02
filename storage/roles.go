package storage

import (
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// Roles reuse the principal error kinds (a role is a principal IAM does
// not give long-term keys): ErrPrincipalExists, ErrPrincipalNotFound, and
// ErrPolicyInUse for a role that still has policies attached — so the
// wire numbering of Sentinels is unchanged.

func (t *txn) createRole(op *raftv1.CreateRole) *Result {
	b := t.tx.Bucket(bucketRoles)
	r := op.GetRole()
	if b.Get([]byte(r.GetName())) != nil {
		return &Result{Err: newError(ErrPrincipalExists, "Role with name %s already exists.", r.GetName())}
	}
	t.put(b, []byte(r.GetName()), r)
	return &Result{Name: r.GetName(), ARN: r.GetArn()}
}

// deleteRole removes a role with no attached policy (IAM's
// DeleteConflict), and revokes the sessions assumed from it.
func (t *txn) deleteRole(op *raftv1.DeleteRole) *Result {
	r, err := t.role(op.GetName())
	if err != nil {
		return &Result{Err: err}
	}
	if n := len(r.GetAttachedPolicies()); n > 0 {
		return &Result{Err: newError(ErrPolicyInUse, "Cannot delete entity, must detach all policies first: role %s has %d attached, such as %s.",
			op.GetName(), n, r.GetAttachedPolicies()[0])}
	}
	keys := t.tx.Bucket(bucketAccessKeys)
	var doomed [][]byte
	_ = keys.ForEach(func(k, v []byte) error {
		if decodeAccessKey(k, v).GetRole() == op.GetName() {
			doomed = append(doomed, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range doomed {
		t.fail(keys.Delete(k))
	}
	t.fail(t.tx.Bucket(bucketRoles).Delete([]byte(op.GetName())))
	return &Result{Name: op.GetName()}
}

func (t *txn) updateRoleTrustPolicy(op *raftv1.UpdateRoleTrustPolicy) *Result {
	r, err := t.role(op.GetName())
	if err != nil {
		return &Result{Err: err}
	}
	r.TrustPolicy = op.GetTrustPolicy()
	t.put(t.tx.Bucket(bucketRoles), []byte(r.GetName()), r)
	return &Result{Name: r.GetName(), ARN: r.GetArn()}
}

func (t *txn) attachRolePolicy(op *raftv1.AttachRolePolicy) *Result {
	r, err := t.role(op.GetRole())
	if err != nil {
		return &Result{Err: err}
	}
	if t.tx.Bucket(bucketPolicies).Get([]byte(op.GetPolicy())) == nil {
		return &Result{Err: errPolicyNotFound(op.GetPolicy())}
	}
	if !slices.Contains(r.GetAttachedPolicies(), op.GetPolicy()) {
		r.AttachedPolicies = append(r.AttachedPolicies, op.GetPolicy())
		t.put(t.tx.Bucket(bucketRoles), []byte(r.GetName()), r)
	}
	return &Result{Name: r.GetName(), ARN: r.GetArn()}
}

func (t *txn) detachRolePolicy(op *raftv1.DetachRolePolicy) *Result {
	r, err := t.role(op.GetRole())
	if err != nil {
		return &Result{Err: err}
	}
	i := slices.Index(r.GetAttachedPolicies(), op.GetPolicy())
	if i < 0 {
		return &Result{Err: newError(ErrPolicyNotFound, "Policy %s is not attached to role %s.", op.GetPolicy(), op.GetRole())}
	}
	r.AttachedPolicies = slices.Delete(r.AttachedPolicies, i, i+1)
	t.put(t.tx.Bucket(bucketRoles), []byte(r.GetName()), r)
	return &Result{Name: r.GetName(), ARN: r.GetArn()}
}

func (t *txn) role(name string) (*storagev1.Role, *Error) {
	v := t.tx.Bucket(bucketRoles).Get([]byte(name))
	if v == nil {
		return nil, newError(ErrPrincipalNotFound, "The role with name %s cannot be found.", name)
	}
	return decodeRole([]byte(name), v), nil
}

// rolesAttaching lists the roles a policy is attached to.
func (t *txn) rolesAttaching(policy string) []string {
	var out []string
	_ = t.tx.Bucket(bucketRoles).ForEach(func(k, v []byte) error {
		if slices.Contains(decodeRole(k, v).GetAttachedPolicies(), policy) {
			out = append(out, string(k))
		}
		return nil
	})
	return out
}

func decodeRole(k, v []byte) *storagev1.Role {
	r := &storagev1.Role{}
	if err := proto.Unmarshal(v, r); err != nil {
		panic(fmt.Sprintf("storage: corrupt role record %q: %v", k, err))
	}
	return r
}

// Role returns a role by name, or nil.
func (s *Store) Role(name string) (*storagev1.Role, error) {
	var out *storagev1.Role
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketRoles).Get([]byte(name)); v != nil {
			out = decodeRole([]byte(name), v)
		}
		return nil
	})
	return out, err
}

// Roles lists roles by name.
func (s *Store) Roles() ([]*storagev1.Role, error) {
	var out []*storagev1.Role
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRoles).ForEach(func(k, v []byte) error {
			out = append(out, decodeRole(k, v))
			return nil
		})
	})
	return out, err
}
