package storage_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	"github.com/cofferhq/coffer/storage"
)

// TestStateStaysFlatAtTheVersionsQuota is one writer putting to one secret
// far faster than AWS's guidance, with a versions quota of 5 carried in the
// command header. Once the quota is reached every put is refused with
// LimitExceededException, and each refusal is still a remembered proposal
// result — which, bounded only by 10 minutes of command time, grew the
// state file with the write rate. With the count bound the state file stops
// growing: its size after 2N refused puts is its size after N, once bbolt
// reuses the pages it freed. (Before the bound: about 660 KiB more per 1,200
// refused puts.)
func TestStateStaysFlatAtTheVersionsQuota(t *testing.T) {
	const (
		quota    = 5
		remember = 200
		rounds   = 1200 // N
		perBatch = 50
	)
	defer storage.SetMaxRememberedProposals(remember)()
	f := newFixture(t)
	arn := arnOf("busy", "AbCdEf")
	next := 0
	// put builds the next put, 100 ms of command time after the one before:
	// all well inside ProposalRetention and the 24 hours that keep versions.
	put := func() *raftv1.Command {
		next++
		c := command(time.Duration(next)*100*time.Millisecond, putOp(arn, next, fmt.Sprintf("value %d %0500d", next, 0)))
		c.Header.MaxVersions = quota
		c.Header.ProposalId = fmt.Sprintf("proposal-%d", next)
		return c
	}
	create := command(0, createWithValue("busy", "AbCdEf", 0, "first"))
	create.Header.MaxVersions = quota
	f.index++
	if r := f.store.Apply(f.index, create); r.Err != nil {
		t.Fatal(r.Err)
	}
	load := func(n int) (accepted, limited int) {
		for i := 0; i < n; i += perBatch {
			entries := make([]storage.Entry, perBatch)
			for j := range entries {
				f.index++
				entries[j] = storage.Entry{Index: f.index, Cmd: put()}
			}
			for _, r := range f.store.ApplyBatch(entries) {
				switch {
				case r.Err == nil:
					accepted++
				case errors.Is(r.Err, storage.ErrLimitExceeded):
					limited++
				default:
					t.Fatalf("put: %v", r.Err)
				}
			}
		}
		return accepted, limited
	}
	// The state's size is what a full snapshot of it writes: the pages in
	// use up to bbolt's high-water mark, which grows only when no freed
	// page can be reused. (The file itself grows in 16 MiB steps.)
	size := func() int64 {
		sn, err := f.store.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		defer sn.Release()
		return sn.Size()
	}

	accepted, limited := load(rounds)
	if accepted != quota-1 || limited != rounds-accepted {
		t.Fatalf("first %d puts: %d accepted, %d LimitExceeded; want %d accepted (the quota), the rest refused", rounds, accepted, limited, quota-1)
	}
	afterN := size()
	if _, limited := load(rounds); limited != rounds {
		t.Fatalf("at the quota %d of %d puts were refused, want all", limited, rounds)
	}
	after2N := size()
	t.Logf("state after %d puts at the quota: %d bytes; after %d: %d bytes", rounds, afterN, 2*rounds, after2N)
	if after2N > afterN {
		t.Errorf("the state grew from %d to %d bytes over %d more puts at the quota, want flat", afterN, after2N, rounds)
	}
	sec, err := f.store.Secret(arn)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(sec.GetVersions()); n != quota {
		t.Errorf("the secret has %d versions, want the quota %d", n, quota)
	}
	if n := storage.RememberedProposals(f.store); n != remember {
		t.Errorf("%d proposal results remembered, want the bound %d", n, remember)
	}
}
