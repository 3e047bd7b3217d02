package storage_test

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
)

func TestPoliciesAttachDetachDelete(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.ok(0, &raftv1.CreatePrincipal{Principal: &storagev1.Principal{Name: "alice", Tags: map[string]string{"team": "db"}}})
	doc := `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`
	f.ok(time.Second, &raftv1.PutPolicy{Policy: &storagev1.Policy{Name: "read", Document: doc, CreatedDate: timestamppb.New(base.Add(time.Second))}})
	// A second put keeps the first creation date.
	f.ok(2*time.Second, &raftv1.PutPolicy{Policy: &storagev1.Policy{Name: "read", Document: doc + " ", CreatedDate: timestamppb.New(base.Add(2 * time.Second))}})
	p, err := f.store.Policy("read")
	if err != nil || p == nil {
		t.Fatalf("Policy(read) = %v, %v", p, err)
	}
	wantTime(t, "created date", p.GetCreatedDate(), base.Add(time.Second))
	if p.GetDocument() != doc+" " {
		t.Fatalf("document = %q, want the second put's", p.GetDocument())
	}

	f.fails(3*time.Second, &raftv1.AttachPolicy{Principal: "alice", Policy: "nope"}, storage.ErrPolicyNotFound, "No policy named nope.")
	f.fails(3*time.Second, &raftv1.AttachPolicy{Principal: "bob", Policy: "read"}, storage.ErrPrincipalNotFound, "No principal named bob.")
	f.ok(3*time.Second, &raftv1.AttachPolicy{Principal: "alice", Policy: "read"})
	f.ok(4*time.Second, &raftv1.AttachPolicy{Principal: "alice", Policy: "read"}) // idempotent
	pr, _ := f.store.Principal("alice")
	if !slices.Equal(pr.GetAttachedPolicies(), []string{"read"}) || pr.GetTags()["team"] != "db" {
		t.Fatalf("alice = %v", pr)
	}
	f.fails(5*time.Second, &raftv1.DeletePolicy{Name: "read"}, storage.ErrPolicyInUse,
		"Cannot delete policy read: it is attached to 1 principal(s), such as alice; detach it first.")
	f.ok(6*time.Second, &raftv1.DetachPolicy{Principal: "alice", Policy: "read"})
	f.fails(7*time.Second, &raftv1.DetachPolicy{Principal: "alice", Policy: "read"}, storage.ErrPolicyNotFound,
		"Policy read is not attached to principal alice.")
	f.ok(8*time.Second, &raftv1.DeletePolicy{Name: "read"})
	if p, _ := f.store.Policy("read"); p != nil {
		t.Fatalf("policy still there after delete: %v", p)
	}
}

func TestSessionsRevokedWithParentAndPurged(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.ok(0, &raftv1.CreatePrincipal{Principal: &storagev1.Principal{Name: "alice"},
		AccessKey: &storagev1.AccessKey{AccessKeyId: "AKIAPARENT", Principal: "alice", Status: "Active"}})
	session := func(id, parent string, exp time.Duration) *raftv1.CreateAccessKey {
		return &raftv1.CreateAccessKey{AccessKey: &storagev1.AccessKey{AccessKeyId: id, Principal: "alice", Status: "Active",
			ParentAccessKeyId: parent, Expiration: timestamppb.New(base.Add(exp))}}
	}
	f.ok(time.Second, session("ASIAONE", "AKIAPARENT", time.Hour))
	f.ok(time.Second, session("ASIATWO", "AKIAPARENT", 2*time.Hour))
	f.fails(time.Second, session("ASIAORPHAN", "AKIAGONE", time.Hour), storage.ErrAccessKeyNotFound, "No access key AKIAGONE.")

	entries, err := f.store.Principals()
	if err != nil || len(entries) != 1 || !slices.Equal(entries[0].AccessKeyIDs, []string{"AKIAPARENT"}) {
		t.Fatalf("Principals() = %+v, %v; want alice with only her long-term key", entries, err)
	}

	// Purge at 90 minutes removes the one-hour session only.
	if has, _ := f.store.HasExpiredSessions(base.Add(90 * time.Minute)); !has {
		t.Fatal("HasExpiredSessions = false at 90 minutes")
	}
	f.ok(90*time.Minute, &raftv1.PurgeSessions{})
	if k, _ := f.store.AccessKey("ASIAONE"); k != nil {
		t.Fatal("expired session survived the purge")
	}
	if k, _ := f.store.AccessKey("ASIATWO"); k == nil {
		t.Fatal("live session was purged")
	}
	// Deleting the parent revokes the remaining session.
	f.ok(91*time.Minute, &raftv1.DeleteAccessKey{AccessKeyId: "AKIAPARENT"})
	if k, _ := f.store.AccessKey("ASIATWO"); k != nil {
		t.Fatal("session survived its parent key's deletion")
	}
}
