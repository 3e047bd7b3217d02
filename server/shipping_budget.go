package server

import (
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/storage"
)

// ShipBatchBytes bounds the encoded size of one shipment's changes. A batch
// is cut at a change boundary once the merged records plus the values it
// carries would pass it, so a backlog of large records (secrets with many
// versions) ships in several requests instead of one the receiver refuses.
// A single change bigger than the bound (a first full copy of a secret with
// 100 large versions) still ships alone; the region port accepts messages
// far larger (replication/region).
const ShipBatchBytes = 4 << 20

// withinBudget trims b to the longest prefix of its entries whose merged
// size (each secret's last record once, every value) stays within budget,
// always keeping the first entry, and moves b.Through back to the last kept
// entry so the rest is read again next time.
func withinBudget(b *storage.FeedBatch, budget int) {
	latest := map[string]int{}
	records, values := 0, 0
	for i, e := range b.Entries {
		size := proto.Size(e.GetSecret())
		records += size - latest[e.GetArn()]
		latest[e.GetArn()] = size
		for _, fv := range e.GetValues() {
			values += proto.Size(fv)
		}
		if i > 0 && records+values > budget {
			b.Entries = b.Entries[:i]
			b.Through = b.Entries[i-1].GetSeq()
			return
		}
	}
}
