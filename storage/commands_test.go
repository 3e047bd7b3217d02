package storage_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
)

// feedEnv is where a command of the feed test runs: a primary secret db
// (arn) in p's region with a replica in dest, both regions paired, the
// replica's first copy shipped to r and acknowledged.
type feedEnv struct {
	p, r *fixture
	arn  string
}

func newFeedEnv(t *testing.T) *feedEnv {
	t.Helper()
	p, r := primaryAndReplica(t)
	e := &feedEnv{p: p, r: r, arn: arnOf("db", "AbCdEf")}
	p.ok(0, createWithValue("db", "AbCdEf", 1, "v1"))
	p.ok(time.Second, &raftv1.SetReplicas{Arn: e.arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest}}})
	ship(t, p, r, 2*time.Second)
	return e
}

// feedCase exercises one command. setup (optional) brings the env to where
// the command applies; op is the command, applied at one hour, and the
// fixture it is applied on (the primary unless it says otherwise).
// newEntries is how many feed entries a command that manages the feed
// itself appends there; watched is the kind of change watchers must be
// told of for the secrets it writes ("" for none).
type feedCase struct {
	setup      func(e *feedEnv)
	op         func(e *feedEnv) (*fixture, proto.Message)
	newEntries int
	watched    storage.ChangeKind
}

func onPrimary(op func(arn string) proto.Message) func(e *feedEnv) (*fixture, proto.Message) {
	return func(e *feedEnv) (*fixture, proto.Message) { return e.p, op(e.arn) }
}

const policyDoc = `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"*","Resource":"*"}]}`
const trustDoc = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}`

// feedCases has a case for every case of the Command oneof, by field name.
// A command added to the oneof needs one here, or TestEveryCommand fails.
var feedCases = map[protoreflect.Name]feedCase{
	"init_keyring": {op: onPrimary(func(string) proto.Message {
		return &raftv1.InitKeyring{Keyring: &storagev1.Keyring{SealedFingerprintKey: []byte("fp")}}
	})},
	"create_secret":    {watched: storage.ChangeCreated, op: onPrimary(func(string) proto.Message { return createWithValue("other", "OtHeR1", 5, "x") })},
	"put_secret_value": {watched: storage.ChangeVersionAdded, op: onPrimary(func(arn string) proto.Message { return putOp(arn, 2, "v2") })},
	"update_secret": {watched: storage.ChangeUpdated, op: onPrimary(func(arn string) proto.Message {
		return &raftv1.UpdateSecret{Arn: arn, Description: proto.String("the database")}
	})},
	"update_version_stage": {watched: storage.ChangeStageMoved,
		setup: func(e *feedEnv) { e.p.ok(10*time.Minute, putOp(e.arn, 2, "v2")) },
		op:    onPrimary(func(arn string) proto.Message { return moveOp(arn, "AWSCURRENT", 1, 2) }),
	},
	"delete_secret": {watched: storage.ChangeDeleted, op: onPrimary(func(arn string) proto.Message { return deleteOp(arn, 7) })},
	"restore_secret": {watched: storage.ChangeRestored,
		setup: func(e *feedEnv) { e.p.ok(10*time.Minute, deleteOp(e.arn, 7)) },
		op:    onPrimary(func(arn string) proto.Message { return &raftv1.RestoreSecret{Arn: arn} }),
	},
	"tag_resource": {watched: storage.ChangeMetadata, op: onPrimary(func(arn string) proto.Message {
		return &raftv1.TagResource{Arn: arn, Tags: tags("team", "db")}
	})},
	"untag_resource": {watched: storage.ChangeMetadata,
		setup: func(e *feedEnv) { e.p.ok(10*time.Minute, &raftv1.TagResource{Arn: e.arn, Tags: tags("team", "db")}) },
		op: onPrimary(func(arn string) proto.Message {
			return &raftv1.UntagResource{Arn: arn, TagKeys: []string{"team"}}
		}),
	},
	"put_resource_policy": {watched: storage.ChangeMetadata, op: onPrimary(func(arn string) proto.Message {
		return &raftv1.PutResourcePolicy{Arn: arn, ResourcePolicy: policyDoc}
	})},
	"delete_resource_policy": {watched: storage.ChangeMetadata,
		setup: func(e *feedEnv) {
			e.p.ok(10*time.Minute, &raftv1.PutResourcePolicy{Arn: e.arn, ResourcePolicy: policyDoc})
		},
		op: onPrimary(func(arn string) proto.Message { return &raftv1.DeleteResourcePolicy{Arn: arn} }),
	},
	"purge_secret": {watched: storage.ChangePurged,
		// Deleted with no recovery window left by the time the purge applies.
		setup: func(e *feedEnv) { e.p.ok(10*time.Minute, deleteOp(e.arn, 0)) },
		op:    onPrimary(func(arn string) proto.Message { return &raftv1.PurgeSecret{Arn: arn} }),
	},
	"record_access": {op: onPrimary(func(arn string) proto.Message {
		return &raftv1.RecordAccess{Entries: []*raftv1.AccessEntry{{Arn: arn, VersionIds: []string{vid(1)}, Day: timestamppb.New(base)}}}
	})},
	"create_principal": {op: onPrimary(func(string) proto.Message {
		return &raftv1.CreatePrincipal{Principal: &storagev1.Principal{Name: "alice", Arn: "arn:aws:iam::123456789012:user/alice"}}
	})},
	"delete_principal": {
		setup: func(e *feedEnv) {
			e.p.ok(10*time.Minute, &raftv1.CreatePrincipal{Principal: &storagev1.Principal{Name: "alice"}})
		},
		op: onPrimary(func(string) proto.Message { return &raftv1.DeletePrincipal{Name: "alice"} }),
	},
	"create_access_key": {
		setup: func(e *feedEnv) {
			e.p.ok(10*time.Minute, &raftv1.CreatePrincipal{Principal: &storagev1.Principal{Name: "alice"}})
		},
		op: onPrimary(func(string) proto.Message {
			return &raftv1.CreateAccessKey{AccessKey: &storagev1.AccessKey{AccessKeyId: "AKIAEXAMPLE", Principal: "alice"}}
		}),
	},
	"delete_access_key": {
		setup: func(e *feedEnv) {
			e.p.ok(10*time.Minute, &raftv1.CreatePrincipal{Principal: &storagev1.Principal{Name: "alice"},
				AccessKey: &storagev1.AccessKey{AccessKeyId: "AKIAEXAMPLE", Principal: "alice"}})
		},
		op: onPrimary(func(string) proto.Message { return &raftv1.DeleteAccessKey{AccessKeyId: "AKIAEXAMPLE"} }),
	},
	"put_policy": {op: onPrimary(func(string) proto.Message {
		return &raftv1.PutPolicy{Policy: &storagev1.Policy{Name: "readers", Document: policyDoc}}
	})},
	"delete_policy": {
		setup: func(e *feedEnv) {
			e.p.ok(10*time.Minute, &raftv1.PutPolicy{Policy: &storagev1.Policy{Name: "readers", Document: policyDoc}})
		},
		op: onPrimary(func(string) proto.Message { return &raftv1.DeletePolicy{Name: "readers"} }),
	},
	"attach_policy": {
		setup: func(e *feedEnv) {
			e.p.ok(10*time.Minute, &raftv1.CreatePrincipal{Principal: &storagev1.Principal{Name: "alice"}})
			e.p.ok(10*time.Minute, &raftv1.PutPolicy{Policy: &storagev1.Policy{Name: "readers", Document: policyDoc}})
		},
		op: onPrimary(func(string) proto.Message { return &raftv1.AttachPolicy{Principal: "alice", Policy: "readers"} }),
	},
	"detach_policy": {
		setup: func(e *feedEnv) {
			e.p.ok(10*time.Minute, &raftv1.CreatePrincipal{Principal: &storagev1.Principal{Name: "alice"}})
			e.p.ok(10*time.Minute, &raftv1.PutPolicy{Policy: &storagev1.Policy{Name: "readers", Document: policyDoc}})
			e.p.ok(10*time.Minute, &raftv1.AttachPolicy{Principal: "alice", Policy: "readers"})
		},
		op: onPrimary(func(string) proto.Message { return &raftv1.DetachPolicy{Principal: "alice", Policy: "readers"} }),
	},
	"purge_sessions": {op: onPrimary(func(string) proto.Message { return &raftv1.PurgeSessions{} })},
	"create_role": {op: onPrimary(func(string) proto.Message {
		return &raftv1.CreateRole{Role: &storagev1.Role{Name: "app", TrustPolicy: trustDoc}}
	})},
	"delete_role": {
		setup: func(e *feedEnv) {
			e.p.ok(10*time.Minute, &raftv1.CreateRole{Role: &storagev1.Role{Name: "app", TrustPolicy: trustDoc}})
		},
		op: onPrimary(func(string) proto.Message { return &raftv1.DeleteRole{Name: "app"} }),
	},
	"update_role_trust_policy": {
		setup: func(e *feedEnv) {
			e.p.ok(10*time.Minute, &raftv1.CreateRole{Role: &storagev1.Role{Name: "app", TrustPolicy: trustDoc}})
		},
		op: onPrimary(func(string) proto.Message { return &raftv1.UpdateRoleTrustPolicy{Name: "app", TrustPolicy: trustDoc} }),
	},
	"attach_role_policy": {
		setup: func(e *feedEnv) {
			e.p.ok(10*time.Minute, &raftv1.CreateRole{Role: &storagev1.Role{Name: "app", TrustPolicy: trustDoc}})
			e.p.ok(10*time.Minute, &raftv1.PutPolicy{Policy: &storagev1.Policy{Name: "readers", Document: policyDoc}})
		},
		op: onPrimary(func(string) proto.Message { return &raftv1.AttachRolePolicy{Role: "app", Policy: "readers"} }),
	},
	"detach_role_policy": {
		setup: func(e *feedEnv) {
			e.p.ok(10*time.Minute, &raftv1.CreateRole{Role: &storagev1.Role{Name: "app", TrustPolicy: trustDoc}})
			e.p.ok(10*time.Minute, &raftv1.PutPolicy{Policy: &storagev1.Policy{Name: "readers", Document: policyDoc}})
			e.p.ok(10*time.Minute, &raftv1.AttachRolePolicy{Role: "app", Policy: "readers"})
		},
		op: onPrimary(func(string) proto.Message { return &raftv1.DetachRolePolicy{Role: "app", Policy: "readers"} }),
	},
	"configure_rotation": {watched: storage.ChangeRotation, op: onPrimary(func(arn string) proto.Message { return rotateOp(arn, 2, false) })},
	"start_rotation": {watched: storage.ChangeRotation,
		// A test-only run leaves rotation on and nothing in progress.
		setup: func(e *feedEnv) {
			e.p.ok(10*time.Minute, rotateOp(e.arn, 2, true))
			e.p.ok(11*time.Minute, stepOp(e.arn, 2, storage.StepTestSecret, "", 0))
		},
		op: onPrimary(func(arn string) proto.Message { return &raftv1.StartRotation{Arn: arn, Token: vid(3)} }),
	},
	"record_rotation_step": {watched: storage.ChangeRotation,
		setup: func(e *feedEnv) { e.p.ok(10*time.Minute, rotateOp(e.arn, 2, false)) },
		op: onPrimary(func(arn string) proto.Message {
			return stepOp(arn, 2, storage.StepCreateSecret, "", 0)
		}),
	},
	"cancel_rotation": {watched: storage.ChangeRotation,
		setup: func(e *feedEnv) { e.p.ok(10*time.Minute, rotateOp(e.arn, 2, false)) },
		op:    onPrimary(func(arn string) proto.Message { return &raftv1.CancelRotation{Arn: arn} }),
	},
	"register_rotation_function": {op: onPrimary(func(string) proto.Message {
		return &raftv1.RegisterRotationFunction{Function: &storagev1.RotationFunction{Name: "rot", Arn: fnARN, Url: "https://rot.example/"}}
	})},
	"deregister_rotation_function": {
		setup: func(e *feedEnv) {
			e.p.ok(10*time.Minute, &raftv1.RegisterRotationFunction{Function: &storagev1.RotationFunction{Name: "rot", Arn: fnARN, Url: "https://rot.example/"}})
		},
		op: onPrimary(func(string) proto.Message { return &raftv1.DeregisterRotationFunction{Name: "rot"} }),
	},
	// A new replica region gets a full copy.
	"set_replicas": {watched: storage.ChangeReplication,
		setup: func(e *feedEnv) { pair(e.p, "us-east-2") },
		op: onPrimary(func(arn string) proto.Message {
			return &raftv1.SetReplicas{Arn: arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: "us-east-2"}}}
		}),
		newEntries: 1,
	},
	// The replica region applies what the primary shipped; its own feed
	// does not grow.
	"apply_replica_changes": {watched: storage.ChangeReplicated,
		setup: func(e *feedEnv) { e.p.ok(10*time.Minute, putOp(e.arn, 2, "v2")) },
		op: func(e *feedEnv) (*fixture, proto.Message) {
			b, err := e.p.store.FeedAfter(dest, e.p.store.FeedAck(dest), 100)
			if err != nil {
				e.p.t.Fatal(err)
			}
			return e.r, &raftv1.ApplyReplicaChanges{SourceRegion: region, ThroughSeq: b.Through, Changes: b.Entries, Region: dest}
		},
	},
	"ack_feed": {
		setup: func(e *feedEnv) { e.p.ok(10*time.Minute, putOp(e.arn, 2, "v2")) },
		op: onPrimary(func(string) proto.Message {
			return &raftv1.AckFeed{Destination: dest, Seq: 2, Accepted: []string{"db"}}
		}),
	},
	// The replica region takes over and feeds the old primary a full copy.
	"promote_replica": {watched: storage.ChangePromoted,
		op: func(e *feedEnv) (*fixture, proto.Message) {
			return e.r, &raftv1.PromoteReplica{Arn: storage.WithRegion(e.arn, dest), Region: dest,
				Replicas: []*storagev1.ReplicaRegionConfig{{Region: region}}}
		},
		newEntries: 1,
	},
	// A region paired anew gets a full copy of every primary listing it.
	"pair_region": {
		setup: func(e *feedEnv) {
			e.p.ok(10*time.Minute, &raftv1.UnpairRegion{Region: dest})
		},
		op: onPrimary(func(string) proto.Message {
			return &raftv1.PairRegion{Peer: &storagev1.RegionPeer{Region: dest}}
		}),
		newEntries: 1,
	},
	"unpair_region": {op: onPrimary(func(string) proto.Message { return &raftv1.UnpairRegion{Region: dest} })},
	"set_pairing_options": {op: func(e *feedEnv) (*fixture, proto.Message) {
		return e.r, &raftv1.SetPairingOptions{Region: region, AcceptOverwrite: true}
	}},
	// A destination that cannot continue gets a full copy of db.
	"reset_feed":       {op: onPrimary(func(string) proto.Message { return &raftv1.ResetFeed{Destination: dest} }), newEntries: 1},
	"set_region_fence": {op: onPrimary(func(string) proto.Message { return &raftv1.SetRegionFence{Fenced: true, Reason: "drill"} })},
	"set_switchover":   {op: onPrimary(func(string) proto.Message { return &raftv1.SetSwitchover{ToRegion: dest} })},
	// The primary got back a diverged version (failover, an unshipped
	// write, failback) and adopts it.
	"resolve_diverged": {watched: storage.ChangeStageMoved,
		setup: func(e *feedEnv) { divergeAndFailBack(e.p.t, e.p, e.r, e.arn) },
		op: onPrimary(func(arn string) proto.Message {
			return &raftv1.ResolveDiverged{Arn: arn, VersionId: vid(2), Adopt: true}
		}),
	},
	"init_cluster": {op: onPrimary(func(string) proto.Message { return &raftv1.InitCluster{ClusterId: "0123456789abcdef0123456789abcdef"} })},
	"check_state":  {op: onPrimary(func(string) proto.Message { return &raftv1.CheckState{} })},

	// KMS keys are each region's own.
	"create_kms_key": {setup: withKeyring, op: onPrimary(func(string) proto.Message { return createKMSKeyOp("k2") })},
	"update_kms_key": {setup: withKMSKey, op: onPrimary(func(string) proto.Message {
		return &raftv1.UpdateKmsKey{KeyId: "k1", Disabled: proto.Bool(true)}
	})},
	"set_kms_alias": {setup: withKMSKey, op: onPrimary(func(string) proto.Message {
		return &raftv1.SetKmsAlias{Alias: "alias/app", KeyId: "k1", Create: true}
	})},
	"delete_kms_key": {
		setup: func(e *feedEnv) {
			withKMSKey(e)
			e.p.ok(10*time.Minute, &raftv1.UpdateKmsKey{KeyId: "k1", DeletionDate: timestamppb.New(base.Add(30 * time.Minute))})
		},
		op: onPrimary(func(string) proto.Message { return &raftv1.DeleteKmsKey{KeyId: "k1"} }),
	},
}

func withKeyring(e *feedEnv) {
	e.p.ok(5*time.Minute, &raftv1.InitKeyring{Keyring: &storagev1.Keyring{SealedFingerprintKey: []byte("fp")}})
}

func withKMSKey(e *feedEnv) {
	withKeyring(e)
	e.p.ok(6*time.Minute, createKMSKeyOp("k1"))
}

func createKMSKeyOp(id string) *raftv1.CreateKmsKey {
	return &raftv1.CreateKmsKey{Key: &storagev1.KmsKey{KeyId: id, PrimaryVersion: 1,
		Versions: []*storagev1.KmsKeyVersion{{Version: 1, SealedMaterial: []byte("sealed")}}}}
}

// TestEveryCommand walks every case of the Command oneof. Each must have an
// entry in storage's command table (what dispatch runs, and what decides
// whether the change reaches the cross-region feed) and a feedCase here;
// then, applied to a replicated primary secret, a command that changes a
// secret must append a feed entry for it, a local one must append none and
// leave the secret's replicated record as it was, and one that manages the
// feed must append what its case says. Watchers of the node it is applied
// on must be told of it with its entry's change kind, or, for an unwatched
// command, not at all.
func TestEveryCommand(t *testing.T) {
	cases := opCases()
	ready := true
	for i := range cases.Len() {
		fd := cases.Get(i)
		role, ok := storage.CommandFeedRole(fd.Message().FullName())
		if !ok {
			t.Errorf("command %s (%s) has no entry in storage's command table (storage/commands.go)", fd.Name(), fd.Message().FullName())
			ready = false
		}
		if _, ok := feedCases[fd.Name()]; !ok {
			t.Errorf("command %s (%v) has no case in feedCases (storage/commands_test.go)", fd.Name(), role)
			ready = false
		}
	}
	if !ready {
		t.FailNow() // a fixture may need the missing command
	}
	for i := range cases.Len() {
		fd := cases.Get(i)
		role, _ := storage.CommandFeedRole(fd.Message().FullName())
		c := feedCases[fd.Name()]
		t.Run(string(fd.Name()), func(t *testing.T) {
			e := newFeedEnv(t)
			if c.setup != nil {
				c.setup(e)
			}
			on, op := c.op(e)
			if got := op.ProtoReflect().Descriptor().FullName(); got != fd.Message().FullName() {
				t.Fatalf("the case builds a %s, want a %s", got, fd.Message().FullName())
			}
			seq := storage.FeedSeq(on.store)
			secretBefore, _ := on.store.Secret("db")
			watch, err := on.store.WatchChanges(0)
			if err != nil {
				t.Fatalf("WatchChanges: %v", err)
			}
			on.ok(time.Hour, op)
			checkWatched(t, fd, c.watched, watch)
			added := storage.FeedEntriesAfter(on.store, seq)
			switch role {
			case storage.RoleSecretChange:
				if len(added) != 1 || added[0].GetName() != "db" || added[0].GetArn() != e.arn {
					t.Fatalf("%s changed replicated primary db and appended %v to the feed, want one entry for db", fd.Name(), entryNames(added))
				}
			case storage.RoleLocal:
				if len(added) != 0 {
					t.Fatalf("%s stays local but appended %v to the feed", fd.Name(), entryNames(added))
				}
				secretAfter, _ := on.store.Secret("db")
				if !proto.Equal(withoutAccessDates(secretAfter), withoutAccessDates(secretBefore)) {
					t.Fatalf("%s stays local (no feed entry) but changed what replicated primary db ships to its replicas", fd.Name())
				}
			case storage.RoleFeedManager:
				if len(added) != c.newEntries {
					t.Fatalf("%s appended %v to the feed, want %d entries", fd.Name(), entryNames(added), c.newEntries)
				}
			default:
				t.Fatalf("%s has feed role %v", fd.Name(), role)
			}
		})
	}
}

// checkWatched checks the kind in the command's table entry against the
// case's, and what a watcher opened just before the command saw of it.
func checkWatched(t *testing.T, fd protoreflect.FieldDescriptor, want storage.ChangeKind, watch *storage.ChangeStream) {
	t.Helper()
	name := fd.Name()
	if kind, _ := storage.CommandChangeKind(fd.Message().FullName()); kind != want {
		t.Fatalf("%s has change kind %q in storage's command table, want %q", name, kind, want)
	}
	changes, _ := next(t, watch)
	if want == "" {
		if len(changes) != 0 {
			t.Fatalf("%s is unwatched but watchers were told of %v", name, changeKinds(changes))
		}
		return
	}
	if len(changes) == 0 {
		t.Fatalf("%s changes secrets as %s but watchers were told of nothing", name, want)
	}
	for _, c := range changes {
		if c.Kind != want {
			t.Fatalf("%s: watchers were told of %v, want every change of kind %s", name, changeKinds(changes), want)
		}
	}
}

func changeKinds(changes []storage.Change) []string {
	out := []string{}
	for _, c := range changes {
		out = append(out, c.Name+":"+string(c.Kind))
	}
	return out
}

func entryNames(entries []*storagev1.ChangeFeedEntry) []string {
	out := []string{}
	for _, e := range entries {
		out = append(out, e.GetName())
	}
	return out
}

// withoutAccessDates is s without what each region keeps for itself.
func withoutAccessDates(s *storagev1.Secret) *storagev1.Secret {
	if s == nil {
		return nil
	}
	s = proto.CloneOf(s)
	s.LastAccessedDate = nil
	for _, v := range s.GetVersions() {
		v.LastAccessedDate = nil
	}
	return s
}
