package server

import (
	"context"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func keyPolicyName(name string) error {
	if name != "" && name != defaultKeyPolicyName {
		return apiErr(TypeKMSNotFound, "No such policy exists: %s. A key has one policy, named default.", truncated(name))
	}
	return nil
}

// GetKeyPolicy implements the KMS operation.
func (k *Keys) GetKeyPolicy(_ context.Context, req *cofferv1.GetKeyPolicyRequest) (*cofferv1.GetKeyPolicyResponse, error) {
	if err := keyPolicyName(req.GetPolicyName()); err != nil {
		return nil, err
	}
	key, err := k.key(req.GetKeyId())
	if err != nil {
		return nil, err
	}
	doc := key.GetPolicy()
	if !key.GetCustomer() {
		doc = k.svc.cfg.managedKeyPolicy()
	}
	return &cofferv1.GetKeyPolicyResponse{Policy: doc, PolicyName: defaultKeyPolicyName}, nil
}

// PutKeyPolicy implements the KMS operation.
func (k *Keys) PutKeyPolicy(ctx context.Context, req *cofferv1.PutKeyPolicyRequest) (*cofferv1.PutKeyPolicyResponse, error) {
	if err := keyPolicyName(req.GetPolicyName()); err != nil {
		return nil, err
	}
	if err := validKeyPolicy(req.GetPolicy()); err != nil {
		return nil, err
	}
	key, err := k.key(req.GetKeyId())
	if err != nil {
		return nil, err
	}
	if err := k.customer(key, "PutKeyPolicy"); err != nil {
		return nil, err
	}
	if err := k.notPending(key); err != nil {
		return nil, err
	}
	doc := req.GetPolicy()
	if err := k.update(ctx, &raftv1.UpdateKmsKey{KeyId: key.GetKeyId(), Policy: &doc}); err != nil {
		return nil, err
	}
	return &cofferv1.PutKeyPolicyResponse{}, nil
}
