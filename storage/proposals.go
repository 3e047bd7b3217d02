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

// remember stores a proposal's result and expires old ones. Expiry is by
// command time, so every replica drops the same records.
func (t *txn) remember(id string, now time.Time, r *Result) {
	p := &storagev1.AppliedProposal{Time: timestamppb.New(now)}
	EncodeResult(r, p)
	t.put(t.tx.Bucket(bucketProposals), []byte(id), p)
	t.fail(t.tx.Bucket(bucketProposalTime).Put(proposalTimeKey(now, id), nil))

	c := t.tx.Bucket(bucketProposalTime).Cursor()
	cutoff := now.Add(-ProposalRetention).UnixNano()
	for k, _ := c.First(); k != nil && len(k) >= 8 && int64(binary.BigEndian.Uint64(k[:8])) < cutoff; k, _ = c.Next() {
		t.fail(t.tx.Bucket(bucketProposals).Delete(k[8:]))
		t.fail(c.Delete())
	}
}

func proposalTimeKey(now time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(now.UnixNano()))
	return append(k, id...)
}
