package server

import (
	"errors"
	"testing"
)

// The root key is saved before the root principal is proposed: when it
// cannot be saved, no principal is created and the reason comes back.
func TestBootstrapRootSavesFirst(t *testing.T) {
	svc, store := newTestService(t)
	iam := NewIAM(svc, store)
	ctx := t.Context()
	disk := errors.New("read-only file system")
	_, _, created, err := iam.BootstrapRoot(ctx, "", "", func(string, string) error { return disk })
	if !errors.Is(err, ErrSaveRootCredentials) || !errors.Is(err, disk) || created {
		t.Fatalf("BootstrapRoot with a failing save: created %v, err %v; want ErrSaveRootCredentials wrapping the cause", created, err)
	}
	if entries, err := store.Principals(); err != nil || len(entries) != 0 {
		t.Fatalf("principals after a failed save: %v, %v; want none", entries, err)
	}
	var saved [2]string
	id, secret, created, err := iam.BootstrapRoot(ctx, "", "", func(id, secret string) error {
		if entries, _ := store.Principals(); len(entries) != 0 {
			t.Error("save called after the root principal was committed")
		}
		saved = [2]string{id, secret}
		return nil
	})
	if err != nil || !created || saved != [2]string{id, secret} {
		t.Fatalf("BootstrapRoot: created %v, err %v, saved %v; want the created key saved", created, err, saved)
	}
	if _, err := iam.CheckBearer(ctx, id+":"+secret); err != nil {
		t.Fatalf("the saved key does not authenticate: %v", err)
	}
}
