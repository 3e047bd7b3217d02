package server

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
)

// feedEntry is a change to secret n whose record is about size bytes and
// which carries one value of about valueSize bytes.
func feedEntry(seq uint64, n, size, valueSize int) *storagev1.ChangeFeedEntry {
	arn := fmt.Sprintf("arn:aws:secretsmanager:us-east-1:123456789012:secret:s%d-AbCdEf", n)
	return &storagev1.ChangeFeedEntry{
		Seq: seq, Arn: arn, Name: fmt.Sprintf("s%d", n),
		Secret: &storagev1.Secret{Arn: arn, Description: strings.Repeat("d", size)},
		Values: []*storagev1.FeedValue{{VersionId: fmt.Sprint(seq), Value: &storagev1.SealedValue{Ciphertext: make([]byte, valueSize)}}},
	}
}

func TestWithinBudget(t *testing.T) {
	t.Run("distinct large records are cut at a change boundary", func(t *testing.T) {
		b := &storage.FeedBatch{Through: 40}
		for i := range 10 {
			b.Entries = append(b.Entries, feedEntry(uint64(i+1), i, 1000, 10))
		}
		withinBudget(b, 3500)
		if len(b.Entries) != 3 || b.Through != 3 {
			t.Fatalf("kept %d entries through %d, want 3 through 3", len(b.Entries), b.Through)
		}
	})
	t.Run("changes to one secret count its record once", func(t *testing.T) {
		b := &storage.FeedBatch{Through: 100}
		for i := range 100 {
			b.Entries = append(b.Entries, feedEntry(uint64(i+1), 0, 1000, 10))
		}
		withinBudget(b, 3500)
		if len(b.Entries) != 100 || b.Through != 100 {
			t.Fatalf("kept %d entries through %d, want all 100 through 100 (one record, small values)", len(b.Entries), b.Through)
		}
	})
	t.Run("one change above the budget still ships alone", func(t *testing.T) {
		b := &storage.FeedBatch{Through: 9, Entries: []*storagev1.ChangeFeedEntry{feedEntry(7, 0, 10000, 10), feedEntry(9, 1, 10, 10)}}
		withinBudget(b, 100)
		if len(b.Entries) != 1 || b.Through != 7 {
			t.Fatalf("kept %d entries through %d, want the first alone through 7", len(b.Entries), b.Through)
		}
	})
	t.Run("what is kept fits the budget when merged", func(t *testing.T) {
		b := &storage.FeedBatch{}
		for i := range 400 {
			b.Entries = append(b.Entries, feedEntry(uint64(i+1), i%37, 800+i, 200))
		}
		const budget = 20000
		withinBudget(b, budget)
		size := 0
		for _, e := range coalesce(b.Entries) {
			size += proto.Size(e.GetSecret())
			for _, fv := range e.GetValues() {
				size += proto.Size(fv)
			}
		}
		if size > budget || len(b.Entries) == 0 {
			t.Fatalf("kept %d entries merging to %d bytes, want at most %d", len(b.Entries), size, budget)
		}
	})
}
