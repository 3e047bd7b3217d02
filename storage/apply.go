package storage

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// txn is one Apply transaction. Operations read what they need, decide, and
// only then write, so a domain failure never leaves a partial change in the
// shared transaction. An I/O failure is kept in err and aborts the batch.
type txn struct {
	tx  *bolt.Tx
	err error
}

// dispatch is the one switch from command to operation.
// A proposal already applied (same proposal id) gets its first result back.
func (t *txn) dispatch(index uint64, cmd *raftv1.Command) *Result {
	if cmd.GetHeader().GetTime() == nil {
		panic(fmt.Sprintf("storage: command %T without header time", cmd.GetOp()))
	}
	now := cmd.GetHeader().GetTime().AsTime()
	id := cmd.GetHeader().GetProposalId()
	if id == "" {
		return t.apply(now, cmd)
	}
	if r := t.recalled(id); r != nil {
		return r
	}
	r := t.apply(now, cmd)
	r.Index = index
	t.remember(id, now, r)
	return r
}

// apply runs one command and feeds what it changed in a replicated primary
// secret to the change feed.
func (t *txn) apply(now time.Time, cmd *raftv1.Command) *Result {
	var before *storagev1.Secret
	if arn := changedARN(cmd); arn != "" {
		if s, err := t.secretByARN(arn); err == nil && !s.GetReplica() && len(s.GetReplicas()) > 0 {
			before = s
		}
	}
	r := t.applyOp(now, cmd)
	if before != nil && r.Err == nil && t.err == nil {
		t.feedChange(now, before)
	}
	return r
}

func (t *txn) applyOp(now time.Time, cmd *raftv1.Command) *Result {
	switch op := cmd.GetOp().(type) {
	case *raftv1.Command_InitKeyring:
		return t.initKeyring(op.InitKeyring)
	case *raftv1.Command_CreateSecret:
		return t.createSecret(now, op.CreateSecret)
	case *raftv1.Command_PutSecretValue:
		return t.putSecretValue(now, op.PutSecretValue)
	case *raftv1.Command_UpdateSecret:
		return t.updateSecret(now, op.UpdateSecret)
	case *raftv1.Command_UpdateVersionStage:
		return t.updateVersionStage(now, op.UpdateVersionStage)
	case *raftv1.Command_DeleteSecret:
		return t.deleteSecret(now, op.DeleteSecret)
	case *raftv1.Command_RestoreSecret:
		return t.restoreSecret(now, op.RestoreSecret)
	case *raftv1.Command_TagResource:
		return t.tagResource(now, op.TagResource)
	case *raftv1.Command_UntagResource:
		return t.untagResource(now, op.UntagResource)
	case *raftv1.Command_PutResourcePolicy:
		return t.putResourcePolicy(now, op.PutResourcePolicy)
	case *raftv1.Command_DeleteResourcePolicy:
		return t.deleteResourcePolicy(now, op.DeleteResourcePolicy)
	case *raftv1.Command_PurgeSecret:
		return t.purgeSecret(now, op.PurgeSecret)
	case *raftv1.Command_RecordAccess:
		return t.recordAccess(op.RecordAccess)
	case *raftv1.Command_CreatePrincipal:
		return t.createPrincipal(op.CreatePrincipal)
	case *raftv1.Command_DeletePrincipal:
		return t.deletePrincipal(op.DeletePrincipal)
	case *raftv1.Command_CreateAccessKey:
		return t.createAccessKey(op.CreateAccessKey)
	case *raftv1.Command_DeleteAccessKey:
		return t.deleteAccessKey(op.DeleteAccessKey)
	case *raftv1.Command_PutPolicy:
		return t.putPolicy(op.PutPolicy)
	case *raftv1.Command_DeletePolicy:
		return t.deletePolicy(op.DeletePolicy)
	case *raftv1.Command_AttachPolicy:
		return t.attachPolicy(op.AttachPolicy)
	case *raftv1.Command_DetachPolicy:
		return t.detachPolicy(op.DetachPolicy)
	case *raftv1.Command_PurgeSessions:
		return t.purgeSessions(now)
	case *raftv1.Command_ConfigureRotation:
		return t.configureRotation(now, op.ConfigureRotation)
	case *raftv1.Command_StartRotation:
		return t.startRotation(now, op.StartRotation)
	case *raftv1.Command_RecordRotationStep:
		return t.recordRotationStep(now, op.RecordRotationStep)
	case *raftv1.Command_CancelRotation:
		return t.cancelRotation(now, op.CancelRotation)
	case *raftv1.Command_RegisterRotationFunction:
		return t.registerRotationFunction(op.RegisterRotationFunction)
	case *raftv1.Command_DeregisterRotationFunction:
		return t.deregisterRotationFunction(op.DeregisterRotationFunction)
	case *raftv1.Command_SetReplicas:
		return t.setReplicas(now, op.SetReplicas)
	case *raftv1.Command_ApplyReplicaChanges:
		return t.applyReplicaChanges(op.ApplyReplicaChanges)
	case *raftv1.Command_AckFeed:
		return t.ackFeed(op.AckFeed)
	case *raftv1.Command_PromoteReplica:
		return t.promoteReplica(now, op.PromoteReplica)
	case *raftv1.Command_PairRegion:
		return t.pairRegion(now, op.PairRegion)
	case *raftv1.Command_UnpairRegion:
		return t.unpairRegion(op.UnpairRegion)
	default:
		panic(fmt.Sprintf("storage: unknown command op %T", op))
	}
}

func (t *txn) initKeyring(op *raftv1.InitKeyring) *Result {
	meta := t.tx.Bucket(bucketMeta)
	if meta.Get(keyKeyring) != nil {
		return &Result{} // the first keyring wins; a racing proposer's is dropped
	}
	t.put(meta, keyKeyring, op.GetKeyring())
	return &Result{}
}

// secret loads a secret by exact name, or nil.
func (t *txn) secret(name string) *storagev1.Secret {
	return getSecret(t.tx, name)
}

// secretByARN loads the secret a command names by full ARN. A secret that
// was deleted and recreated under the same name has another ARN, so a
// command proposed against the old one fails instead of touching the new.
func (t *txn) secretByARN(arn string) (*storagev1.Secret, *Error) {
	name, ok := nameFromFullARN(arn)
	if !ok {
		return nil, errSecretNotFound()
	}
	s := t.secret(name)
	if s == nil || s.GetArn() != arn {
		return nil, errSecretNotFound()
	}
	return s, nil
}

// liveSecretByARN is secretByARN that also refuses a secret scheduled for deletion.
func (t *txn) liveSecretByARN(arn string) (*storagev1.Secret, *Error) {
	s, err := t.secretByARN(arn)
	if err != nil {
		return nil, err
	}
	if s.GetReplica() {
		return nil, errReplicaReadOnly(s.GetPrimaryRegion())
	}
	if s.GetDeletedDate() != nil {
		return nil, errMarkedForDeletion()
	}
	return s, nil
}

func (t *txn) putSecret(s *storagev1.Secret) {
	t.put(t.tx.Bucket(bucketSecrets), []byte(s.GetName()), s)
}

func (t *txn) putValue(arn, versionID string, v *storagev1.SealedValue) {
	t.put(t.tx.Bucket(bucketValues), valueKey(arn, versionID), v)
}

func (t *txn) deleteValue(arn, versionID string) {
	t.fail(t.tx.Bucket(bucketValues).Delete(valueKey(arn, versionID)))
}

// deleteSecret removes a secret record and every value stored for it.
func (t *txn) removeSecret(s *storagev1.Secret) {
	for _, v := range s.GetVersions() {
		t.deleteValue(s.GetArn(), v.GetVersionId())
	}
	t.fail(t.tx.Bucket(bucketSecrets).Delete([]byte(s.GetName())))
}

func (t *txn) put(b *bolt.Bucket, key []byte, m proto.Message) {
	buf, err := marshal.Marshal(m)
	if err != nil {
		t.fail(fmt.Errorf("marshal %T: %w", m, err))
		return
	}
	t.fail(b.Put(key, buf))
}

func (t *txn) fail(err error) {
	if err != nil && t.err == nil {
		t.err = err
	}
}

func valueKey(arn, versionID string) []byte {
	k := make([]byte, 0, len(arn)+1+len(versionID))
	k = append(k, arn...)
	k = append(k, 0)
	return append(k, versionID...)
}

func getSecret(tx *bolt.Tx, name string) *storagev1.Secret {
	buf := tx.Bucket(bucketSecrets).Get([]byte(name))
	if buf == nil {
		return nil
	}
	s := &storagev1.Secret{}
	if err := proto.Unmarshal(buf, s); err != nil {
		panic(fmt.Sprintf("storage: corrupt secret record %q: %v", name, err))
	}
	return s
}

func getValue(tx *bolt.Tx, arn, versionID string) *storagev1.SealedValue {
	buf := tx.Bucket(bucketValues).Get(valueKey(arn, versionID))
	if buf == nil {
		return nil
	}
	v := &storagev1.SealedValue{}
	if err := proto.Unmarshal(buf, v); err != nil {
		panic(fmt.Sprintf("storage: corrupt value record %s/%s: %v", arn, versionID, err))
	}
	return v
}

func utcDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
