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
	// clusterID is the cluster id InitCluster recorded in this transaction.
	clusterID string
	// quota is the versions-per-secret quota of the command being applied,
	// which its proposer chose (Header.max_versions).
	quota int
	// touched and changes are what watchers are told (watch.go): the
	// secrets the running command wrote, and the changes of the commands
	// applied so far in this transaction.
	touched map[string]touchedSecret
	changes []Change
	index   uint64
}

// dispatch applies one command (through the table in commands.go).
// A proposal already applied (same proposal id) gets its first result back.
func (t *txn) dispatch(index uint64, cmd *raftv1.Command) *Result {
	if cmd.GetHeader().GetTime() == nil {
		panic(fmt.Sprintf("storage: command %T without header time", cmd.GetOp()))
	}
	now := cmd.GetHeader().GetTime().AsTime()
	t.index = index
	t.quota = versionQuota(cmd.GetHeader().GetMaxVersions())
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

// apply runs one command through its table entry and, for a command that
// changes a replicated primary secret, feeds what it changed to the change
// feed.
func (t *txn) apply(now time.Time, cmd *raftv1.Command) *Result {
	op, c := commandOf(cmd)
	if e := t.refusal(op, c); e != nil {
		return &Result{Err: e}
	}
	var before *storagev1.Secret
	if c.feed == roleSecretChange {
		if s, err := t.secretByARN(c.arn(op)); err == nil && !s.GetReplica() && len(s.GetReplicas()) > 0 {
			before = s
		}
	}
	t.touched = nil
	r := c.apply(t, now, op)
	if before != nil && r.Err == nil && t.err == nil {
		t.feedChange(now, before)
	}
	if r.Err == nil && t.err == nil {
		t.noteChanges(t.index, now, c.watch)
	}
	return r
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
	t.fileSecret(s)
	t.touch(s, false)
}

func (t *txn) putValue(arn, versionID string, v *storagev1.SealedValue) {
	t.countWrap(v)
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
	t.unfileSecret(s.GetName())
	t.touch(s, true)
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
