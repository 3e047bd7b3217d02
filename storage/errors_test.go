package storage_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cofferhq/coffer/storage"
)

// TestSentinels pins the order of Sentinels: a result crosses the network
// as an index into it, so reordering would turn one kind into another on a
// node running the other build.
func TestSentinels(t *testing.T) {
	t.Parallel()
	want := []error{
		storage.ErrSecretNotFound, storage.ErrVersionNotFound, storage.ErrStageNotFound, storage.ErrSecretExists,
		storage.ErrTokenInUse, storage.ErrMarkedForDeletion, storage.ErrStageMismatch, storage.ErrInvalidParameter,
		storage.ErrLimitExceeded, storage.ErrInvalidNextToken,
		storage.ErrPrincipalNotFound, storage.ErrPrincipalExists, storage.ErrAccessKeyNotFound,
		storage.ErrPolicyNotFound, storage.ErrPolicyInUse,
		storage.ErrRotationInProgress, storage.ErrNoRotationFunction, storage.ErrFunctionNotFound,
		storage.ErrReplicaReadOnly,
		storage.ErrInvalidShipment,
		storage.ErrRegionFenced, storage.ErrSwitchingOver,
		storage.ErrKMSKeyNotFound, storage.ErrKMSAliasExists, storage.ErrKMSAliasNotFound, storage.ErrKMSKeyDisabled, storage.ErrKMSInvalidState,
	}
	got := storage.Sentinels()
	if len(got) != len(want) {
		t.Fatalf("Sentinels() has %d kinds, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Sentinels()[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestErrorWrapsKind(t *testing.T) {
	t.Parallel()
	e := &storage.Error{Kind: storage.ErrTokenInUse, Msg: "the user's message"}
	wrapped := fmt.Errorf("apply: %w", e)
	if !errors.Is(wrapped, storage.ErrTokenInUse) || errors.Is(wrapped, storage.ErrSecretExists) {
		t.Fatal("errors.Is does not see the kind through *Error")
	}
	if e.Error() != "the user's message" {
		t.Fatalf("Error() = %q, want the message alone", e.Error())
	}
}

// TestKindNumberRoundTrip: every kind survives the trip through its wire
// number with its message; other errors have no number.
func TestKindNumberRoundTrip(t *testing.T) {
	t.Parallel()
	for i, k := range storage.Sentinels() {
		n := storage.KindNumber(fmt.Errorf("wrapped: %w", &storage.Error{Kind: k, Msg: "m"}))
		if n != uint32(i+1) {
			t.Fatalf("KindNumber(%v) = %d, want %d", k, n, i+1)
		}
		back := storage.FromKindNumber(n, "m")
		if back == nil || !errors.Is(back, k) || back.Error() != "m" {
			t.Fatalf("FromKindNumber(%d) = %v", n, back)
		}
	}
	if storage.KindNumber(errors.New("plain")) != 0 || storage.FromKindNumber(0, "x") != nil || storage.FromKindNumber(999, "x") != nil {
		t.Fatal("a non-domain error or unknown number mapped to a kind")
	}
}
