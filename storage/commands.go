package storage

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
)

// The Raft commands: one entry per case of the Command oneof, holding the
// operation and how the command relates to the cross-region change feed.
// Dispatch and the feed hook both read this table, so a command cannot be
// added to one and forgotten in the other; TestEveryCommand walks the oneof
// and fails on a case without an entry (or without a feed fixture).
var commands = commandTable(
	localChange(func(t *txn, _ time.Time, op *raftv1.InitKeyring) *Result { return t.initKeyring(op) }),
	// A new secret has no replica region yet; SetReplicas feeds its first copy.
	localChange((*txn).createSecret),
	secretChange((*txn).putSecretValue),
	secretChange((*txn).updateSecret),
	secretChange((*txn).updateVersionStage),
	secretChange((*txn).deleteSecret),
	secretChange((*txn).restoreSecret),
	secretChange((*txn).tagResource),
	secretChange((*txn).untagResource),
	secretChange((*txn).putResourcePolicy),
	secretChange((*txn).deleteResourcePolicy),
	secretChange((*txn).purgeSecret),
	// Last-accessed dates are each region's own; a replica keeps its own.
	localChange(func(t *txn, _ time.Time, op *raftv1.RecordAccess) *Result { return t.recordAccess(op) }),

	localChange(func(t *txn, _ time.Time, op *raftv1.CreatePrincipal) *Result { return t.createPrincipal(op) }),
	localChange(func(t *txn, _ time.Time, op *raftv1.DeletePrincipal) *Result { return t.deletePrincipal(op) }),
	localChange(func(t *txn, _ time.Time, op *raftv1.CreateAccessKey) *Result { return t.createAccessKey(op) }),
	localChange(func(t *txn, _ time.Time, op *raftv1.DeleteAccessKey) *Result { return t.deleteAccessKey(op) }),
	localChange(func(t *txn, _ time.Time, op *raftv1.PutPolicy) *Result { return t.putPolicy(op) }),
	localChange(func(t *txn, _ time.Time, op *raftv1.DeletePolicy) *Result { return t.deletePolicy(op) }),
	localChange(func(t *txn, _ time.Time, op *raftv1.AttachPolicy) *Result { return t.attachPolicy(op) }),
	localChange(func(t *txn, _ time.Time, op *raftv1.DetachPolicy) *Result { return t.detachPolicy(op) }),
	localChange(func(t *txn, now time.Time, _ *raftv1.PurgeSessions) *Result { return t.purgeSessions(now) }),
	localChange(func(t *txn, _ time.Time, op *raftv1.CreateRole) *Result { return t.createRole(op) }),
	localChange(func(t *txn, _ time.Time, op *raftv1.DeleteRole) *Result { return t.deleteRole(op) }),
	localChange(func(t *txn, _ time.Time, op *raftv1.UpdateRoleTrustPolicy) *Result {
		return t.updateRoleTrustPolicy(op)
	}),
	localChange(func(t *txn, _ time.Time, op *raftv1.AttachRolePolicy) *Result { return t.attachRolePolicy(op) }),
	localChange(func(t *txn, _ time.Time, op *raftv1.DetachRolePolicy) *Result { return t.detachRolePolicy(op) }),

	secretChange((*txn).configureRotation),
	secretChange((*txn).startRotation),
	secretChange((*txn).recordRotationStep),
	secretChange((*txn).cancelRotation),
	localChange(func(t *txn, _ time.Time, op *raftv1.RegisterRotationFunction) *Result {
		return t.registerRotationFunction(op)
	}),
	localChange(func(t *txn, _ time.Time, op *raftv1.DeregisterRotationFunction) *Result {
		return t.deregisterRotationFunction(op)
	}),

	// KMS keys are the region's own: a replica names a key of its region.
	localChange((*txn).createKMSKey),
	localChange((*txn).updateKMSKey),
	localChange(func(t *txn, _ time.Time, op *raftv1.SetKmsAlias) *Result { return t.setKMSAlias(op) }),
	localChange((*txn).deleteKMSKey),

	feedManager((*txn).setReplicas),
	feedManager(func(t *txn, _ time.Time, op *raftv1.ApplyReplicaChanges) *Result { return t.applyReplicaChanges(op) }),
	feedManager(func(t *txn, _ time.Time, op *raftv1.AckFeed) *Result { return t.ackFeed(op) }),
	feedManager((*txn).promoteReplica),
	feedManager((*txn).pairRegion),
	feedManager(func(t *txn, _ time.Time, op *raftv1.UnpairRegion) *Result { return t.unpairRegion(op) }),
	// Consent to overwrites is this region's own; nothing ships.
	localChange(func(t *txn, _ time.Time, op *raftv1.SetPairingOptions) *Result { return t.setPairingOptions(op) }),
	feedManager((*txn).resetFeed),
	// Failover controls: the fence and a switchover are the region's own
	// state; resolving a diverged version changes the secret and ships.
	localChange((*txn).setRegionFence),
	localChange((*txn).setSwitchover),
	secretChange((*txn).resolveDiverged),

	// The region's own housekeeping: its cluster id, and the consistency
	// check's point (ApplyBatch hashes the state as of it).
	localChange(func(t *txn, _ time.Time, op *raftv1.InitCluster) *Result { return t.initCluster(op) }),
	localChange(func(*txn, time.Time, *raftv1.CheckState) *Result { return &Result{} }),
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
	// arn is the secret a roleSecretChange command changes.
	arn   func(op proto.Message) string
	apply func(t *txn, now time.Time, op proto.Message) *Result
}

// arnOp is a command that names the secret it changes by full ARN.
type arnOp interface {
	proto.Message
	GetArn() string
}

func secretChange[M arnOp](apply func(*txn, time.Time, M) *Result) command {
	c := entry(roleSecretChange, apply)
	c.arn = func(op proto.Message) string { return op.(M).GetArn() }
	return c
}

func feedManager[M proto.Message](apply func(*txn, time.Time, M) *Result) command {
	return entry(roleFeedManager, apply)
}

func localChange[M proto.Message](apply func(*txn, time.Time, M) *Result) command {
	return entry(roleLocal, apply)
}

func entry[M proto.Message](feed feedRole, apply func(*txn, time.Time, M) *Result) command {
	var zero M
	return command{
		op:    zero.ProtoReflect().Descriptor().FullName(),
		feed:  feed,
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
