package storage

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// Cross-region replication in the state machine. A primary secret with
// replica regions appends every change to an ordered change feed; the
// region leader ships the feed and records what each destination
// acknowledged; entries every destination acknowledged are trimmed. A
// destination applies shipped changes through its own log, skipping what it
// already applied from that source. See docs/ARCHITECTURE.md.

// DivergedLabelPrefix starts the label under which a returning old primary
// keeps the versions it accepted but never shipped:
// COFFER_DIVERGED_<region> on the newest, _<region>_<n> on older ones.
const DivergedLabelPrefix = "COFFER_DIVERGED_"

// ValueARN is the ARN bound into the associated data of sec's values: the
// ARN the secret had where it was created, which every copy keeps.
func ValueARN(sec *storagev1.Secret) string {
	if sec.GetValueArn() != "" {
		return sec.GetValueArn()
	}
	return sec.GetArn()
}

func errReplicaReadOnly(primary string) *Error {
	return newError(ErrReplicaReadOnly,
		"Operation not permitted on a replica secret. Call must be made in primary secret's region: %s.", primary)
}

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

func replicaRegions(s *storagev1.Secret) []string {
	out := make([]string, 0, len(s.GetReplicas()))
	for _, r := range s.GetReplicas() {
		out = append(out, r.GetRegion())
	}
	return out
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

// setReplicas adds and removes replica regions of a primary secret. Each
// new region gets a full copy as its first feed entry; each removed one a
// deletion.
func (t *txn) setReplicas(now time.Time, op *raftv1.SetReplicas) *Result {
	s, err := t.liveSecretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	var added []string
	for _, a := range op.GetAdd() {
		if a.GetRegion() == op.GetRegion() {
			return &Result{Err: newError(ErrInvalidParameter, "Invalid replica region %s: it is the secret's primary region.", a.GetRegion())}
		}
		if slices.ContainsFunc(s.GetReplicas(), func(r *storagev1.ReplicaRegionConfig) bool { return r.GetRegion() == a.GetRegion() }) {
			continue // already a replica: AWS answers with the current status
		}
		s.Replicas = append(s.Replicas, proto.CloneOf(a))
		added = append(added, a.GetRegion())
	}
	var removed []string
	for _, region := range op.GetRemove() {
		i := slices.IndexFunc(s.GetReplicas(), func(r *storagev1.ReplicaRegionConfig) bool { return r.GetRegion() == region })
		if i < 0 {
			return &Result{Err: newError(ErrInvalidParameter, "The secret has no replica in region %s.", region)}
		}
		s.Replicas = slices.Delete(s.Replicas, i, i+1)
		removed = append(removed, region)
	}
	if len(added) == 0 && len(removed) == 0 {
		return &Result{ARN: s.GetArn(), Name: s.GetName()}
	}
	s.LastChangedDate = timestamppb.New(now)
	t.putSecret(s)
	if len(removed) > 0 {
		t.appendFeed(now, s.GetName(), s.GetArn(), removed, nil, nil)
	}
	if len(added) > 0 {
		t.appendFeed(now, s.GetName(), s.GetArn(), added, s, t.allValues(s))
	}
	return &Result{ARN: s.GetArn(), Name: s.GetName()}
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
	acks := t.tx.Bucket(bucketFeedAcks)
	if op.GetSeq() > u64(acks.Get([]byte(op.GetDestination()))) {
		t.fail(acks.Put([]byte(op.GetDestination()), u64b(op.GetSeq())))
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

// applyReplicaChanges applies changes shipped from a source region. Each
// change is applied at most once (its position is compared with the last
// one applied from that source); a refused change is recorded so the
// receiving node can report it back.
//
// A batch that breaks ValidateShipment is refused whole, before anything is
// written: the receiving node checks it before proposing, so only a batch
// proposed by an older build (or a bug) gets here, and refusing it keeps
// every node applying the log instead of panicking on a write bbolt refuses.
func (t *txn) applyReplicaChanges(op *raftv1.ApplyReplicaChanges) *Result {
	if err := ValidateShipment(op.GetRegion(), op.GetSourceRegion(), op.GetThroughSeq(), op.GetChanges()); err != nil {
		return &Result{Err: err}
	}
	src := []byte(op.GetSourceRegion())
	sources := t.tx.Bucket(bucketSources)
	last := u64(sources.Get(src))
	for _, ch := range op.GetChanges() {
		if ch.GetSeq() <= last {
			continue
		}
		key := rejectionKey(op.GetSourceRegion(), ch.GetName())
		if msg := t.applyShipped(op.GetRegion(), op.GetSourceRegion(), ch); msg != "" {
			t.fail(t.tx.Bucket(bucketRejections).Put(key, []byte(msg)))
		} else {
			t.fail(t.tx.Bucket(bucketRejections).Delete(key))
		}
	}
	if op.GetThroughSeq() > last {
		t.fail(sources.Put(src, u64b(op.GetThroughSeq())))
	}
	return &Result{}
}

func rejectionKey(source, name string) []byte {
	return append(append([]byte(source), 0), name...)
}

// applyShipped applies one shipped change (ValidateShipment passed: its
// record, if any, has the change's name and ARN and source as its primary
// region); it returns why it refused it, or "".
func (t *txn) applyShipped(region, source string, ch *storagev1.ChangeFeedEntry) string {
	local := t.secret(ch.GetName())
	in := ch.GetSecret()
	if in == nil { // the primary deleted the secret or removed this replica
		if local != nil && local.GetReplica() && local.GetPrimaryRegion() == source && local.GetArn() == WithRegion(ch.GetArn(), region) {
			t.removeSecret(local)
		}
		return ""
	}
	var diverged []*storagev1.Version
	replace := false
	switch {
	case local == nil:
	case local.GetReplica() && local.GetPrimaryRegion() == source && in.GetEpoch() >= local.GetEpoch(),
		local.GetReplica() && in.GetEpoch() > local.GetEpoch():
	case !local.GetReplica() && ValueARN(local) == ValueARN(in) && in.GetEpoch() > local.GetEpoch():
		// This region was the primary and another region promoted its
		// replica meanwhile: the higher epoch wins, and the writes accepted
		// here that never shipped are kept, labelled.
		for _, v := range local.GetVersions() {
			if findVersion(in, v.GetVersionId()) == nil {
				diverged = append(diverged, v)
			}
		}
	case !local.GetReplica() && forceOverwrite(in, region):
		replace = true // removed by writeReplica once it knows it can write the replica
	case local.GetReplica():
		return fmt.Sprintf("Region %s holds a replica of this secret from %s at epoch %d, newer than the shipped epoch %d.",
			region, local.GetPrimaryRegion(), local.GetEpoch(), in.GetEpoch())
	case ValueARN(local) == ValueARN(in) && local.GetEpoch() > in.GetEpoch():
		return fmt.Sprintf("The replica in region %s was promoted to a primary secret (epoch %d); it no longer takes changes from epoch %d.",
			region, local.GetEpoch(), in.GetEpoch())
	case ValueARN(local) == ValueARN(in):
		return fmt.Sprintf("The secret is also primary in region %s at the same epoch %d; promote one region's copy or remove the replica.",
			region, local.GetEpoch())
	default:
		return fmt.Sprintf("Destination region %s already has a secret named %s. Set ForceOverwriteReplicaSecret to replace it.", region, ch.GetName())
	}
	return t.writeReplica(region, local, replace, in, ch.GetValues(), diverged)
}

func forceOverwrite(s *storagev1.Secret, region string) bool {
	for _, r := range s.GetReplicas() {
		if r.GetRegion() == region {
			return r.GetForceOverwrite()
		}
	}
	return false
}

// writeReplica stores in (the primary's record) as this region's replica,
// with the replica's ARN and KMS key, keeping this region's access dates,
// the values already here (those of the same secret: same value ARN), and
// the diverged versions. With replace, local is a same-named secret that
// ForceOverwriteReplicaSecret replaces. It decides before it writes: a
// refusal leaves everything as it was.
func (t *txn) writeReplica(region string, local *storagev1.Secret, replace bool, in *storagev1.Secret, values []*storagev1.FeedValue, diverged []*storagev1.Version) string {
	replaced := local
	if replace || (local != nil && ValueARN(local) != ValueARN(in)) {
		// Nothing of another secret is kept: not its values, access dates or
		// diverged versions.
		local = nil
	}
	if !replace && replaced != nil && local == nil {
		replace = true // a replica of an older secret of this name: replaced whole
	}
	r := proto.CloneOf(in)
	r.Arn = WithRegion(in.GetArn(), region)
	r.ValueArn = ValueARN(in)
	r.Replica = true
	r.LastFeedSeq = 0
	r.KmsKeyId = ""
	for _, c := range in.GetReplicas() {
		if c.GetRegion() == region {
			r.KmsKeyId = c.GetKmsKeyId()
		}
	}
	shipped := map[string]*storagev1.SealedValue{}
	for _, fv := range values {
		shipped[fv.GetVersionId()] = fv.GetValue()
	}
	if local != nil {
		r.LastAccessedDate = local.GetLastAccessedDate()
		// A replica keeps the diverged versions it already holds.
		for _, v := range local.GetVersions() {
			if findVersion(r, v.GetVersionId()) == nil && slices.ContainsFunc(v.GetStages(), isDivergedLabel) {
				diverged = append(diverged, v)
			}
		}
	}
	for _, v := range r.GetVersions() {
		var lv *storagev1.Version
		if local != nil {
			lv = findVersion(local, v.GetVersionId())
		}
		if sv, ok := shipped[v.GetVersionId()]; ok {
			v.KmsKeyId = sv.GetKmsKeyId()
		} else if !HasValue(v) {
			v.KmsKeyId = "" // a rotation's AWSPENDING version, not filled yet
		} else if lv != nil && getValue(t.tx, local.GetArn(), v.GetVersionId()) != nil {
			v.KmsKeyId = lv.GetKmsKeyId()
		} else {
			return fmt.Sprintf("Version %s arrived without its value; the replica needs a full copy.", v.GetVersionId())
		}
		v.LastAccessedDate = nil
		if lv != nil {
			v.LastAccessedDate = lv.GetLastAccessedDate()
		}
	}
	labelDiverged(r, diverged, region)
	if replace {
		t.removeSecret(replaced)
	}
	if local != nil {
		for _, v := range local.GetVersions() {
			if findVersion(r, v.GetVersionId()) == nil {
				t.deleteValue(local.GetArn(), v.GetVersionId())
			}
		}
		if local.GetArn() != r.GetArn() {
			for _, v := range r.GetVersions() {
				if _, ok := shipped[v.GetVersionId()]; ok {
					continue
				}
				if lv := getValue(t.tx, local.GetArn(), v.GetVersionId()); lv != nil {
					t.putValue(r.GetArn(), v.GetVersionId(), lv)
					t.deleteValue(local.GetArn(), v.GetVersionId())
				}
			}
		}
	}
	for id, sv := range shipped {
		if findVersion(r, id) != nil {
			t.putValue(r.GetArn(), id, sv)
		}
	}
	t.putSecret(r)
	return ""
}

func isDivergedLabel(l string) bool { return strings.HasPrefix(l, DivergedLabelPrefix) }

// labelDiverged adds the diverged versions to r: the newest under
// COFFER_DIVERGED_<region>, older ones under COFFER_DIVERGED_<region>_<n>,
// so none is hidden as deprecated or pruned.
func labelDiverged(r *storagev1.Secret, diverged []*storagev1.Version, region string) {
	if len(diverged) == 0 {
		return
	}
	slices.SortStableFunc(diverged, func(a, b *storagev1.Version) int {
		return -a.GetCreatedDate().AsTime().Compare(b.GetCreatedDate().AsTime())
	})
	for i, v := range diverged {
		v = proto.CloneOf(v)
		label := DivergedLabelPrefix + region
		if i > 0 {
			label += "_" + strconv.Itoa(i+1)
		}
		keep := slices.DeleteFunc(slices.Clone(v.GetStages()), func(l string) bool {
			return !isDivergedLabel(l) // AWS labels belong to the new primary's versions
		})
		if len(keep) == 0 {
			keep = []string{label}
		}
		v.Stages = keep
		r.Versions = append(r.Versions, v)
	}
}

// promoteReplica makes a replica this region's primary: a higher epoch, the
// given replica regions, and a full copy fed to each of them.
func (t *txn) promoteReplica(now time.Time, op *raftv1.PromoteReplica) *Result {
	s, err := t.secretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	if !s.GetReplica() {
		return &Result{Err: newError(ErrInvalidParameter, "The secret %s is not a replica.", s.GetName())}
	}
	s.Replica = false
	s.PrimaryRegion = op.GetRegion()
	s.Epoch++
	s.Replicas = nil
	for _, r := range op.GetReplicas() {
		if r.GetRegion() != op.GetRegion() {
			s.Replicas = append(s.Replicas, proto.CloneOf(r))
		}
	}
	s.LastChangedDate = timestamppb.New(now)
	t.putSecret(s)
	t.appendFeed(now, s.GetName(), s.GetArn(), replicaRegions(s), s, t.allValues(s))
	return &Result{ARN: s.GetArn(), Name: s.GetName()}
}

// pairRegion records a paired region. A region paired anew (not a
// re-pairing that replaces the record) gets a full copy of every primary
// secret that still lists it as a replica region: what it holds from before
// an unpairing is stale, and the feed kept nothing for it meanwhile.
func (t *txn) pairRegion(now time.Time, op *raftv1.PairRegion) *Result {
	p := op.GetPeer()
	if !ValidRegion(p.GetRegion()) {
		return &Result{Err: newError(ErrInvalidParameter, "Invalid region: %s.", short(p.GetRegion()))}
	}
	peers := t.tx.Bucket(bucketRegionPeers)
	known := peers.Get([]byte(p.GetRegion())) != nil
	t.put(peers, []byte(p.GetRegion()), p)
	if known {
		return &Result{}
	}
	for _, s := range t.primariesReplicatingTo(p.GetRegion()) {
		t.setReplicaMessage(s, p.GetRegion(), "")
		t.appendFeed(now, s.GetName(), s.GetArn(), []string{p.GetRegion()}, s, t.allValues(s))
	}
	return &Result{}
}

// unpairRegion forgets a paired region: its record (so its certificates are
// no longer accepted and no shipper runs for it), its acknowledged position
// (so the feed entries kept for it are trimmed) and the position applied
// from it (a region paired again under that name starts a new feed). The
// primaries that replicate to it report Failed until it is paired again or
// removed from their replication; replicas here whose primary it was stay,
// readable, and can be promoted.
func (t *txn) unpairRegion(op *raftv1.UnpairRegion) *Result {
	region := op.GetRegion()
	peers := t.tx.Bucket(bucketRegionPeers)
	if peers.Get([]byte(region)) == nil {
		return &Result{Err: newError(ErrInvalidParameter, "Region %s is not paired with this region.", short(region))}
	}
	t.fail(peers.Delete([]byte(region)))
	t.fail(t.tx.Bucket(bucketFeedAcks).Delete([]byte(region)))
	t.fail(t.tx.Bucket(bucketSources).Delete([]byte(region)))
	for _, s := range t.primariesReplicatingTo(region) {
		t.setReplicaMessage(s, region, fmt.Sprintf("Region %s is no longer paired with %s; pair it again or remove it from the secret's replication.", region, s.GetPrimaryRegion()))
	}
	t.trimFeed()
	return &Result{}
}

// primariesReplicatingTo lists the primary secrets with a replica in region.
func (t *txn) primariesReplicatingTo(region string) []*storagev1.Secret {
	var out []*storagev1.Secret
	t.fail(t.tx.Bucket(bucketSecrets).ForEach(func(k, v []byte) error {
		s := &storagev1.Secret{}
		if err := proto.Unmarshal(v, s); err != nil {
			return fmt.Errorf("decode secret %q: %w", k, err)
		}
		if !s.GetReplica() && slices.ContainsFunc(s.GetReplicas(), func(r *storagev1.ReplicaRegionConfig) bool { return r.GetRegion() == region }) {
			out = append(out, s)
		}
		return nil
	}))
	return out
}

// setReplicaMessage sets the status message of s's replica in region and
// stores s when it changed.
func (t *txn) setReplicaMessage(s *storagev1.Secret, region, msg string) {
	for _, r := range s.GetReplicas() {
		if r.GetRegion() == region && r.GetStatusMessage() != msg {
			r.StatusMessage = msg
			t.putSecret(s)
		}
	}
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

// FeedLength counts the entries kept in the feed (not yet trimmed).
func (s *Store) FeedLength() int {
	var n int
	_ = s.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketFeed).Stats().KeyN
		return nil
	})
	return n
}

// ReplicaPosition is the last feed position applied from source.
func (s *Store) ReplicaPosition(source string) uint64 {
	var v uint64
	_ = s.view(func(tx *bolt.Tx) error {
		v = u64(tx.Bucket(bucketSources).Get([]byte(source)))
		return nil
	})
	return v
}

// ReplicaRejection is why this region last refused source's secret name, or "".
func (s *Store) ReplicaRejection(source, name string) string {
	var msg string
	_ = s.view(func(tx *bolt.Tx) error {
		msg = string(tx.Bucket(bucketRejections).Get(rejectionKey(source, name)))
		return nil
	})
	return msg
}

// RegionPeers lists the paired regions, by name.
func (s *Store) RegionPeers() ([]*storagev1.RegionPeer, error) {
	var out []*storagev1.RegionPeer
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRegionPeers).ForEach(func(k, v []byte) error {
			p := &storagev1.RegionPeer{}
			if err := proto.Unmarshal(v, p); err != nil {
				return fmt.Errorf("decode region peer %q: %w", k, err)
			}
			out = append(out, p)
			return nil
		})
	})
	return out, err
}
