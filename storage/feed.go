package storage

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// The change feed. A command that changes a primary secret with replica
// regions appends an entry in the same transaction (feedChange): the record
// after the change, nil once deleted, and the sealed values of the versions
// it added or filled. Positions are a gap-free sequence (meta/feed_seq). The
// region leader ships each paired destination its entries; AckFeed records
// what a destination applied, and entries every paired destination they
// name acknowledged are trimmed.

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func u64b(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// feedChange appends to the feed what a command did to a replicated
// primary secret: the record after it (nil once deleted) and the values of
// the versions it added or filled (a rotation's AWSPENDING version is
// created without a value, which its createSecret step fills later).
func (t *txn) feedChange(now time.Time, before *storagev1.Secret) {
	after := t.secret(before.GetName())
	if after != nil && after.GetArn() != before.GetArn() {
		after = nil
	}
	if after != nil && proto.Equal(before, after) {
		return
	}
	regions := replicaRegions(before)
	var values []*storagev1.FeedValue
	if after != nil {
		for _, v := range after.GetVersions() {
			if old := findVersion(before, v.GetVersionId()); HasValue(v) && (old == nil || !HasValue(old)) {
				values = append(values, t.feedValue(after, v.GetVersionId()))
			}
		}
	}
	t.appendFeed(now, before.GetName(), before.GetArn(), regions, after, values)
}

func (t *txn) feedValue(s *storagev1.Secret, versionID string) *storagev1.FeedValue {
	v := getValue(t.tx, s.GetArn(), versionID)
	if v == nil {
		panic(fmt.Sprintf("storage: value of %s version %s is missing", s.GetArn(), versionID))
	}
	return &storagev1.FeedValue{VersionId: versionID, Value: v}
}

// appendFeed writes one feed entry for the destinations that are paired
// and, for a live secret, stamps the record with the entry's position (so
// status can tell InSync from InProgress). A region that is not paired gets
// nothing: no shipper would deliver it, and pairing it (again) feeds it a
// full copy of every secret that lists it.
func (t *txn) appendFeed(now time.Time, name, arn string, dest []string, after *storagev1.Secret, values []*storagev1.FeedValue) {
	peers := t.tx.Bucket(bucketRegionPeers)
	dest = slices.DeleteFunc(slices.Clone(dest), func(d string) bool { return peers.Get([]byte(d)) == nil })
	if len(dest) == 0 {
		return
	}
	meta := t.tx.Bucket(bucketMeta)
	seq := u64(meta.Get(keyFeedSeq)) + 1
	t.fail(meta.Put(keyFeedSeq, u64b(seq)))
	if after != nil {
		after.LastFeedSeq = seq
		t.putSecret(after)
		after = proto.CloneOf(after)
	}
	t.put(t.tx.Bucket(bucketFeed), u64b(seq), &storagev1.ChangeFeedEntry{
		Seq: seq, Name: name, Arn: arn, Destinations: dest, Secret: after, Values: values, Time: timestamppb.New(now),
	})
}

// allValues is every version's value, for a destination's first copy. A
// rotation's value-less AWSPENDING version has none yet; it ships when filled.
func (t *txn) allValues(s *storagev1.Secret) []*storagev1.FeedValue {
	out := make([]*storagev1.FeedValue, 0, len(s.GetVersions()))
	for _, v := range s.GetVersions() {
		if HasValue(v) {
			out = append(out, t.feedValue(s, v.GetVersionId()))
		}
	}
	return out
}

// ackFeed records a destination's position, its refusals and acceptances,
// and trims the feed entries every destination has acknowledged.
//
// An answer from a region no longer paired (a shipper racing the
// unpairing) is dropped: its position was released with it.
func (t *txn) ackFeed(op *raftv1.AckFeed) *Result {
	if t.tx.Bucket(bucketRegionPeers).Get([]byte(op.GetDestination())) == nil {
		return &Result{}
	}
	// A position counts in one generation of the feed, and no further than
	// the feed reaches: an answer racing a restore, or a destination that
	// applied more of an older generation, must not acknowledge (and trim)
	// entries it never received.
	acks := t.tx.Bucket(bucketFeedAcks)
	seq := min(op.GetSeq(), u64(t.tx.Bucket(bucketMeta).Get(keyFeedSeq)))
	if op.GetGeneration() == feedGeneration(t.tx) {
		if seq > u64(acks.Get([]byte(op.GetDestination()))) {
			t.fail(acks.Put([]byte(op.GetDestination()), u64b(seq)))
		}
		// The destination answered in this generation from the resync
		// mark on: it took the resync, and later batches are none.
		resyncs := t.tx.Bucket(bucketFeedResyncs)
		if base := resyncs.Get([]byte(op.GetDestination())); base != nil && op.GetSeq() >= u64(base) {
			t.fail(resyncs.Delete([]byte(op.GetDestination())))
		}
	}
	setMessage := func(name, msg string) {
		s := t.secret(name)
		if s == nil || s.GetReplica() {
			return
		}
		for _, r := range s.GetReplicas() {
			if r.GetRegion() == op.GetDestination() && r.GetStatusMessage() != msg {
				r.StatusMessage = msg
				t.putSecret(s)
				return
			}
		}
	}
	for _, name := range op.GetAccepted() {
		setMessage(name, "")
	}
	for _, rej := range op.GetRejected() {
		setMessage(rej.GetName(), rej.GetMessage())
	}
	for _, a := range op.GetAccessed() {
		s := t.secret(a.GetName())
		if s == nil || s.GetReplica() || a.GetDay() == nil {
			continue
		}
		for _, r := range s.GetReplicas() {
			if r.GetRegion() == op.GetDestination() && (r.GetLastAccessedDate() == nil || r.GetLastAccessedDate().AsTime().Before(a.GetDay().AsTime())) {
				r.LastAccessedDate = a.GetDay()
				t.putSecret(s)
			}
		}
	}
	t.trimFeed()
	return &Result{}
}

// resetFeed restarts dest's feed from the current position with a full
// copy of every primary secret replicating to it: its acknowledged position
// becomes the position before the copies (the entries up to there are
// superseded by them) and the first batch from there is shipped as a
// resync. A reset proposed in another generation (before a restore) or for
// a region no longer paired changes nothing.
func (t *txn) resetFeed(now time.Time, op *raftv1.ResetFeed) *Result {
	dest := op.GetDestination()
	if t.tx.Bucket(bucketRegionPeers).Get([]byte(dest)) == nil || op.GetGeneration() != feedGeneration(t.tx) {
		return &Result{}
	}
	t.startResync(now, dest)
	t.trimFeed()
	return &Result{}
}

// startResync marks dest's feed as restarting at the current position and
// appends a full copy of every primary secret that replicates to it.
func (t *txn) startResync(now time.Time, dest string) {
	base := u64b(u64(t.tx.Bucket(bucketMeta).Get(keyFeedSeq)))
	t.fail(t.tx.Bucket(bucketFeedAcks).Put([]byte(dest), base))
	t.fail(t.tx.Bucket(bucketFeedResyncs).Put([]byte(dest), base))
	for _, s := range t.primariesReplicatingTo(dest) {
		t.appendFeed(now, s.GetName(), s.GetArn(), []string{dest}, s, t.allValues(s))
	}
}

func feedGeneration(tx *bolt.Tx) string {
	return string(tx.Bucket(bucketMeta).Get(keyFeedGeneration))
}

// trimFeed drops the oldest entries every destination still paired has
// acknowledged. A destination that is not (or no longer) paired holds
// nothing back: no shipper will ever deliver to it, and an entry kept for it
// would keep the feed growing forever (promotion naming an unpaired region
// once, a deletion for a region unpaired since).
func (t *txn) trimFeed() {
	feed, acks, peers := t.tx.Bucket(bucketFeed), t.tx.Bucket(bucketFeedAcks), t.tx.Bucket(bucketRegionPeers)
	c := feed.Cursor()
	for k, v := c.First(); k != nil; k, v = c.First() {
		e := decodeFeedEntry(k, v)
		for _, d := range e.GetDestinations() {
			if peers.Get([]byte(d)) != nil && u64(acks.Get([]byte(d))) < e.GetSeq() {
				return
			}
		}
		t.fail(c.Delete())
		if t.err != nil {
			return
		}
	}
}

func decodeFeedEntry(k, v []byte) *storagev1.ChangeFeedEntry {
	e := &storagev1.ChangeFeedEntry{}
	if err := proto.Unmarshal(v, e); err != nil {
		panic(fmt.Sprintf("storage: corrupt feed entry %d: %v", u64(k), err))
	}
	return e
}

// FeedBatch is the part of the change feed one destination has not yet
// acknowledged.
type FeedBatch struct {
	// Entries are the entries for the destination, in order.
	Entries []*storagev1.ChangeFeedEntry
	// Through is the last position scanned (entries for other destinations
	// in between are skipped); acknowledging it is safe once Entries are applied.
	Through uint64
}

// FeedAfter returns up to limit entries for dest after position after.
func (s *Store) FeedAfter(dest string, after uint64, limit int) (*FeedBatch, error) {
	out := &FeedBatch{Through: after}
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketFeed).Cursor()
		for k, v := c.Seek(u64b(after + 1)); k != nil && len(out.Entries) < limit; k, v = c.Next() {
			e := decodeFeedEntry(k, v)
			out.Through = e.GetSeq()
			if slices.Contains(e.GetDestinations(), dest) {
				out.Entries = append(out.Entries, e)
			}
		}
		return nil
	})
	return out, err
}

// FeedStatus is how far behind one destination is.
type FeedStatus struct {
	// Acked is the position it acknowledged.
	Acked uint64
	// Pending counts entries for it after Acked.
	Pending uint64
	// Oldest is the command time of the oldest pending entry.
	Oldest time.Time
}

// FeedStatus reports dest's position and backlog.
func (s *Store) FeedStatus(dest string) (FeedStatus, error) {
	var st FeedStatus
	err := s.view(func(tx *bolt.Tx) error {
		st.Acked = u64(tx.Bucket(bucketFeedAcks).Get([]byte(dest)))
		c := tx.Bucket(bucketFeed).Cursor()
		for k, v := c.Seek(u64b(st.Acked + 1)); k != nil; k, v = c.Next() {
			e := decodeFeedEntry(k, v)
			if slices.Contains(e.GetDestinations(), dest) {
				if st.Pending == 0 {
					st.Oldest = e.GetTime().AsTime()
				}
				st.Pending++
			}
		}
		return nil
	})
	return st, err
}

// FeedAck is the position dest acknowledged.
func (s *Store) FeedAck(dest string) uint64 {
	var v uint64
	_ = s.view(func(tx *bolt.Tx) error {
		v = u64(tx.Bucket(bucketFeedAcks).Get([]byte(dest)))
		return nil
	})
	return v
}

// FeedGeneration is the generation the feed's positions count in.
func (s *Store) FeedGeneration() string {
	var g string
	_ = s.view(func(tx *bolt.Tx) error {
		g = feedGeneration(tx)
		return nil
	})
	return g
}

// FeedResync is where dest's feed was last reset (a batch continuing from
// there is a resync), and whether it ever was.
func (s *Store) FeedResync(dest string) (uint64, bool) {
	var v []byte
	_ = s.view(func(tx *bolt.Tx) error {
		v = tx.Bucket(bucketFeedResyncs).Get([]byte(dest))
		return nil
	})
	return u64(v), v != nil
}

// FeedLength counts the entries kept in the feed (not yet trimmed).
func (s *Store) FeedLength() int {
	var n int
	_ = s.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketFeed).Stats().KeyN
		return nil
	})
	return n
}
