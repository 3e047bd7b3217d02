package storage

import (
	"encoding/binary"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// ProposalRetention is how long a proposal's result is remembered, measured
// in command time. A retry arriving later is applied again (and, for most
// operations, answered idempotently by the secret rules anyway).
const ProposalRetention = 10 * time.Minute

// MaxRememberedProposals bounds how many results are remembered, whatever
// the write rate: past it, the oldest go first, even inside the retention.
// A proposal is only ever retried within one Apply call (replication gives
// up after its apply timeout, 10 s by default), and 100,000 results cover
// well over a minute of writes at the fastest rate a region sustains, in at
// most a few tens of MB. It is a constant, not a setting: every replica must
// forget the same records.
const MaxRememberedProposals = 100_000

// maxRemembered is MaxRememberedProposals; tests lower it.
var maxRemembered = MaxRememberedProposals

// recalled returns the remembered result of proposal id, or nil.
func (t *txn) recalled(id string) *Result {
	buf := t.tx.Bucket(bucketProposals).Get([]byte(id))
	if buf == nil {
		return nil
	}
	p := &storagev1.AppliedProposal{}
	if err := proto.Unmarshal(buf, p); err != nil {
		panic(fmt.Sprintf("storage: corrupt proposal record %q: %v", id, err))
	}
	return DecodeResult(p)
}

// remember stores a proposal's result and expires old ones: those older
// than ProposalRetention and, past maxRemembered, the oldest. Expiry is by
// command time and count, so every replica drops the same records.
func (t *txn) remember(id string, now time.Time, r *Result) {
	p := &storagev1.AppliedProposal{Time: timestamppb.New(now)}
	EncodeResult(r, p)
	proposals, times := t.tx.Bucket(bucketProposals), t.tx.Bucket(bucketProposalTime)
	count := t.proposalCount()
	if proposals.Get([]byte(id)) == nil {
		count++
	}
	t.put(proposals, []byte(id), p)
	t.fail(times.Put(proposalTimeKey(now, id), nil))

	c := times.Cursor()
	cutoff := now.Add(-ProposalRetention).UnixNano()
	for k, _ := c.First(); k != nil && len(k) >= 8 && (count > uint64(maxRemembered) || int64(binary.BigEndian.Uint64(k[:8])) < cutoff); k, _ = c.First() {
		t.fail(proposals.Delete(k[8:]))
		t.fail(c.Delete())
		count--
	}
	t.fail(t.tx.Bucket(bucketMeta).Put(keyProposalCount, u64b(count)))
}

// proposalCount is how many results are remembered. A state file from
// before the count was kept has none: it is counted once, here.
func (t *txn) proposalCount() uint64 {
	if v := t.tx.Bucket(bucketMeta).Get(keyProposalCount); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	var n uint64
	c := t.tx.Bucket(bucketProposalTime).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

func proposalTimeKey(now time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(now.UnixNano()))
	return append(k, id...)
}
