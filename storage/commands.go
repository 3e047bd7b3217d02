package storage

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
)

// The Raft commands: one entry per case of the Command oneof, holding the
// operation, how the command relates to the cross-region change feed
// (localChange, secretChange, feedManager) and the kind of change watchers
// are told about for each secret it writes (watch.go; unwatched for a
// command whose secret writes are bookkeeping no watcher needs, such as
// access dates, or that writes no secret). Dispatch, the feed hook and the
// change notification all read this table, so a command cannot be added to
// one and forgotten in another: an entry does not compile without its feed
// role and its change kind, and TestEveryCommand walks the oneof and fails
// on a case without an entry (or without a feed fixture).
var commands = commandTable(
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.InitKeyring) *Result { return t.initKeyring(op) }),
	// A new secret has no replica region yet; SetReplicas feeds its first copy.
	localChange(ChangeCreated, (*txn).createSecret),
	secretChange(ChangeVersionAdded, (*txn).putSecretValue),
	secretChange(ChangeUpdated, (*txn).updateSecret),
	secretChange(ChangeStageMoved, (*txn).updateVersionStage),
	secretChange(ChangeDeleted, (*txn).deleteSecret),
	secretChange(ChangeRestored, (*txn).restoreSecret),
	secretChange(ChangeMetadata, (*txn).tagResource),
	secretChange(ChangeMetadata, (*txn).untagResource),
	secretChange(ChangeMetadata, (*txn).putResourcePolicy),
	secretChange(ChangeMetadata, (*txn).deleteResourcePolicy),
	secretChange(ChangePurged, (*txn).purgeSecret),
	// Last-accessed dates are each region's own; a replica keeps its own.
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.RecordAccess) *Result { return t.recordAccess(op) }),

	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.CreatePrincipal) *Result { return t.createPrincipal(op) }),
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.DeletePrincipal) *Result { return t.deletePrincipal(op) }),
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.CreateAccessKey) *Result { return t.createAccessKey(op) }),
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.DeleteAccessKey) *Result { return t.deleteAccessKey(op) }),
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.PutPolicy) *Result { return t.putPolicy(op) }),
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.DeletePolicy) *Result { return t.deletePolicy(op) }),
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.AttachPolicy) *Result { return t.attachPolicy(op) }),
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.DetachPolicy) *Result { return t.detachPolicy(op) }),
	localChange(unwatched, func(t *txn, now time.Time, _ *raftv1.PurgeSessions) *Result { return t.purgeSessions(now) }),
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.CreateRole) *Result { return t.createRole(op) }),
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.DeleteRole) *Result { return t.deleteRole(op) }),
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.UpdateRoleTrustPolicy) *Result {
		return t.updateRoleTrustPolicy(op)
	}),
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.AttachRolePolicy) *Result { return t.attachRolePolicy(op) }),
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.DetachRolePolicy) *Result { return t.detachRolePolicy(op) }),

	secretChange(ChangeRotation, (*txn).configureRotation),
	secretChange(ChangeRotation, (*txn).startRotation),
	secretChange(ChangeRotation, (*txn).recordRotationStep),
	secretChange(ChangeRotation, (*txn).cancelRotation),
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.RegisterRotationFunction) *Result {
		return t.registerRotationFunction(op)
	}),
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.DeregisterRotationFunction) *Result {
		return t.deregisterRotationFunction(op)
	}),

	// KMS keys are the region's own: a replica names a key of its region.
	localChange(unwatched, (*txn).createKMSKey),
	localChange(unwatched, (*txn).updateKMSKey),
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.SetKmsAlias) *Result { return t.setKMSAlias(op) }),
	localChange(unwatched, (*txn).deleteKMSKey),

	feedManager(ChangeReplication, (*txn).setReplicas),
	feedManager(ChangeReplicated, func(t *txn, _ time.Time, op *raftv1.ApplyReplicaChanges) *Result { return t.applyReplicaChanges(op) }),
	feedManager(unwatched, func(t *txn, _ time.Time, op *raftv1.AckFeed) *Result { return t.ackFeed(op) }),
	feedManager(ChangePromoted, (*txn).promoteReplica),
	feedManager(unwatched, (*txn).pairRegion),
	feedManager(unwatched, func(t *txn, _ time.Time, op *raftv1.UnpairRegion) *Result { return t.unpairRegion(op) }),
	// Consent to overwrites is this region's own; nothing ships.
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.SetPairingOptions) *Result { return t.setPairingOptions(op) }),
	feedManager(unwatched, (*txn).resetFeed),
	// Failover controls: the fence and a switchover are the region's own
	// state; resolving a diverged version changes the secret and ships.
	localChange(unwatched, (*txn).setRegionFence),
	localChange(unwatched, (*txn).setSwitchover),
	secretChange(ChangeStageMoved, (*txn).resolveDiverged),

	// The region's own housekeeping: its cluster id, and the consistency
	// check's point (ApplyBatch hashes the state as of it).
	localChange(unwatched, func(t *txn, _ time.Time, op *raftv1.InitCluster) *Result { return t.initCluster(op) }),
	localChange(unwatched, func(*txn, time.Time, *raftv1.CheckState) *Result { return &Result{} }),
)

// feedRole is how a command relates to the cross-region change feed.
type feedRole uint8

const (
	// roleSecretChange: the command changes the secret its ARN names; when
	// that is a primary with replica regions, Apply appends what changed to
	// the feed (feedChange).
	roleSecretChange feedRole = iota + 1
	// roleFeedManager: the command writes the feed or its positions itself
	// (replica sets, shipped changes, acknowledgements, promotion, pairing).
	roleFeedManager
	// roleLocal: nothing the command changes is copied to another region.
	roleLocal
)

func (r feedRole) String() string {
	switch r {
	case roleSecretChange:
		return "changes a secret"
	case roleFeedManager:
		return "manages the feed"
	case roleLocal:
		return "stays local"
	}
	return fmt.Sprintf("feedRole(%d)", uint8(r))
}

// command is one entry of the table.
type command struct {
	op   protoreflect.FullName // the oneof case's message
	feed feedRole
	// watch is the kind of the changes watchers get for the secrets the
	// command writes, or unwatched.
	watch ChangeKind
	// arn is the secret a roleSecretChange command changes.
	arn   func(op proto.Message) string
	apply func(t *txn, now time.Time, op proto.Message) *Result
}

// arnOp is a command that names the secret it changes by full ARN.
type arnOp interface {
	proto.Message
	GetArn() string
}

func secretChange[M arnOp](watch ChangeKind, apply func(*txn, time.Time, M) *Result) command {
	c := entry(roleSecretChange, watch, apply)
	c.arn = func(op proto.Message) string { return op.(M).GetArn() }
	return c
}

func feedManager[M proto.Message](watch ChangeKind, apply func(*txn, time.Time, M) *Result) command {
	return entry(roleFeedManager, watch, apply)
}

func localChange[M proto.Message](watch ChangeKind, apply func(*txn, time.Time, M) *Result) command {
	return entry(roleLocal, watch, apply)
}

func entry[M proto.Message](feed feedRole, watch ChangeKind, apply func(*txn, time.Time, M) *Result) command {
	var zero M
	return command{
		op:    zero.ProtoReflect().Descriptor().FullName(),
		feed:  feed,
		watch: watch,
		apply: func(t *txn, now time.Time, op proto.Message) *Result { return apply(t, now, op.(M)) },
	}
}

func commandTable(entries ...command) map[protoreflect.FullName]command {
	m := make(map[protoreflect.FullName]command, len(entries))
	for _, c := range entries {
		if _, dup := m[c.op]; dup {
			panic(fmt.Sprintf("storage: two command table entries for %s", c.op))
		}
		m[c.op] = c
	}
	return m
}

var opOneof = (&raftv1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("op")

// commandOf returns cmd's op and its table entry. It panics on a command
// without an op or with one this build has no entry for: every replica
// would fail the same way, and none may skip it.
func commandOf(cmd *raftv1.Command) (proto.Message, command) {
	m := cmd.ProtoReflect()
	fd := m.WhichOneof(opOneof)
	if fd == nil {
		panic("storage: unknown command op <nil>")
	}
	c, ok := commands[fd.Message().FullName()]
	if !ok {
		panic(fmt.Sprintf("storage: unknown command op %s", fd.Name()))
	}
	return m.Get(fd).Message().Interface(), c
}
