package storage

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// Changes shipped from a paired region: ValidateShipment checks a batch on
// the receiving node before it is proposed and again in Apply;
// applyReplicaChanges writes what passes, at most once per position.

// Bounds a shipped change must keep beyond the API's own limits. A paired
// region is trusted to send its own secrets, not to make this region store
// something it could never store itself: a change that breaks one of them is
// refused before it is proposed and again in Apply, so a malformed or forged
// batch can neither crash a node (a write bbolt refuses aborts the whole
// apply transaction) nor overwrite an unrelated local secret.
const (
	// maxShippedVersions allows a promoted copy to keep, beside its own
	// versions, the diverged versions a failback labelled.
	maxShippedVersions = 2 * MaxVersions
	// maxSealedBytes is a sealed value's ciphertext: nonce and GCM tag over
	// at most MaxValueBytes, with room to spare.
	maxSealedBytes = MaxValueBytes + 1024
	// maxWrappedKeyBytes bounds a wrapped data key.
	maxWrappedKeyBytes = 1024
	// maxRefLength bounds ARNs and KMS key references, as the API does.
	maxRefLength = 2048
	// MaxResourcePolicyLength is the AWS limit on a resource policy document.
	MaxResourcePolicyLength = 20480
	// maxShippedReplicas bounds a record's replica regions.
	maxShippedReplicas = 64
)

func invalidShipment(format string, args ...any) *Error {
	return newError(ErrInvalidShipment, "Refused a batch shipped from another region: "+format, args...)
}

// reason is fmt.Sprintf, named for what it builds.
func reason(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// short quotes s for an error message, cut to a readable length: a forged
// name may be any size.
func short(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// ValidRegion reports whether s looks like a region name (us-east-1):
// a lower-case letter, then up to 62 lower-case letters, digits and dashes.
func ValidRegion(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// validVersionID: 1 to MaxTokenLength bytes, no control characters.
func validVersionID(id string) bool {
	if len(id) == 0 || len(id) > MaxTokenLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] == 0x7f {
			return false
		}
	}
	return true
}

// ValidateShipment checks a batch of changes region received from source
// through position through. Every change must name a valid secret whose
// full ARN is in the source region; its record (unless it is a deletion)
// must be that same secret, a primary of source, within the limits every
// record here keeps; its values must belong to versions of the record;
// positions must increase and not pass through. The error is an *Error of
// kind ErrInvalidShipment naming the first problem (names and version ids,
// never a value).
func ValidateShipment(region, source string, through uint64, changes []*storagev1.ChangeFeedEntry) error {
	switch {
	case !ValidRegion(source):
		return invalidShipment("invalid source region %s.", short(source))
	case !ValidRegion(region):
		return invalidShipment("invalid destination region %s.", short(region))
	case source == region:
		return invalidShipment("region %s shipped to itself.", region)
	}
	var prev uint64
	for i, ch := range changes {
		if ch.GetSeq() <= prev || ch.GetSeq() > through {
			return invalidShipment("change %d is at position %d, after %d and through %d: positions must increase up to the batch's.",
				i, ch.GetSeq(), prev, through)
		}
		prev = ch.GetSeq()
		if why := validateShipped(source, ch); why != "" {
			return invalidShipment("change %d (position %d): %s", i, ch.GetSeq(), why)
		}
	}
	return nil
}

func validateShipped(source string, ch *storagev1.ChangeFeedEntry) string {
	name := ch.GetName()
	if !ValidName(name) {
		return reason("invalid secret name %s.", short(name))
	}
	if len(ch.GetArn()) > maxRefLength {
		return reason("the ARN of %s is too long.", name)
	}
	p, ok := ParseARN(ch.GetArn())
	if arnName, full := nameFromFullARN(ch.GetArn()); !ok || !full || arnName != name {
		return reason("%s is not a full ARN of secret %s.", short(ch.GetArn()), name)
	}
	if p.Region != source {
		return reason("the ARN of %s is in region %s, but %s shipped it.", name, short(p.Region), source)
	}
	in := ch.GetSecret()
	if in == nil {
		if len(ch.GetValues()) > 0 {
			return reason("the deletion of %s carries values.", name)
		}
		return ""
	}
	switch {
	case in.GetName() != name || in.GetArn() != ch.GetArn():
		return reason("the change for %s carries the record of %s (%s).", name, short(in.GetName()), short(in.GetArn()))
	case in.GetPrimaryRegion() != source:
		return reason("%s names primary region %s but was shipped by %s.", name, short(in.GetPrimaryRegion()), source)
	case in.GetReplica():
		return reason("%s is shipped as a replica; only a primary's record ships.", name)
	case in.GetValueArn() != "" && WithRegion(in.GetValueArn(), source) != in.GetArn():
		return reason("the value ARN of %s is not the ARN of the same secret.", name)
	case len(in.GetDescription()) > MaxDescription:
		return reason("the description of %s is over %d characters.", name, MaxDescription)
	case len(in.GetKmsKeyId()) > maxRefLength:
		return reason("the KMS key reference of %s is too long.", name)
	case len(in.GetResourcePolicy()) > MaxResourcePolicyLength:
		return reason("the resource policy of %s is over %d characters.", name, MaxResourcePolicyLength)
	case len(in.GetTags()) > MaxTagsPerSecret:
		return reason("%s has over %d tags.", name, MaxTagsPerSecret)
	case len(in.GetVersions()) > maxShippedVersions:
		return reason("%s has %d versions, over %d.", name, len(in.GetVersions()), maxShippedVersions)
	case len(in.GetReplicas()) > maxShippedReplicas:
		return reason("%s has over %d replica regions.", name, maxShippedReplicas)
	}
	for _, tag := range in.GetTags() {
		if len(tag.GetKey()) == 0 || len(tag.GetKey()) > MaxTagKeyLength || len(tag.GetValue()) > MaxTagValueLength {
			return reason("a tag of %s is empty or too long.", name)
		}
	}
	regions := map[string]bool{}
	for _, r := range in.GetReplicas() {
		if !ValidRegion(r.GetRegion()) || regions[r.GetRegion()] || len(r.GetKmsKeyId()) > maxRefLength {
			return reason("%s lists an invalid or repeated replica region %s.", name, short(r.GetRegion()))
		}
		regions[r.GetRegion()] = true
	}
	versions := map[string]*storagev1.Version{}
	labels := map[string]bool{}
	for _, v := range in.GetVersions() {
		id := v.GetVersionId()
		if !validVersionID(id) || versions[id] != nil {
			return reason("%s has an invalid or repeated version id %s.", name, short(id))
		}
		versions[id] = v
		if len(v.GetStages()) > MaxStagesPerVersion {
			return reason("version %s of %s has over %d labels.", id, name, MaxStagesPerVersion)
		}
		for _, l := range v.GetStages() {
			// A staging label is on one version at most; the diverged labels
			// a failback gives are only kept, never moved, so they are left
			// out of that rule.
			if len(l) == 0 || len(l) > MaxStageLength || (labels[l] && !isDivergedLabel(l)) {
				return reason("version %s of %s has an invalid or repeated label %s.", id, name, short(l))
			}
			labels[l] = true
		}
	}
	valued := map[string]bool{}
	for _, fv := range ch.GetValues() {
		id := fv.GetVersionId()
		v := versions[id]
		switch {
		case v == nil:
			return reason("a value of %s is for version %s, which the record does not have.", name, short(id))
		case !HasValue(v):
			return reason("a value of %s is for version %s, which has none.", name, id)
		case valued[id]:
			return reason("%s carries two values for version %s.", name, id)
		}
		valued[id] = true
		sv := fv.GetValue()
		if len(sv.GetCiphertext()) == 0 || len(sv.GetCiphertext()) > maxSealedBytes ||
			len(sv.GetWrappedDataKey()) == 0 || len(sv.GetWrappedDataKey()) > maxWrappedKeyBytes ||
			len(sv.GetKmsKeyId()) > maxRefLength {
			return reason("the value of version %s of %s is empty or too large.", id, name)
		}
	}
	return ""
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
	sources, gens := t.tx.Bucket(bucketSources), t.tx.Bucket(bucketSourceGenerations)
	last, gen := u64(sources.Get(src)), string(gens.Get(src))
	switch {
	case op.GetResync() && (op.GetGeneration() != gen || op.GetAfter() > last):
		// The source reset this region's feed: full copies follow after,
		// in its generation. What was applied before counts no more.
		last, gen = op.GetAfter(), op.GetGeneration()
		t.fail(sources.Put(src, u64b(last)))
		if gen == "" {
			t.fail(gens.Delete(src))
		} else {
			t.fail(gens.Put(src, []byte(gen)))
		}
		t.dropStaleReplicas(op.GetSourceRegion(), op.GetResyncNames())
	case op.GetGeneration() != gen || op.GetAfter() > last:
		// Another generation of the source's feed (it, or this region,
		// restored a snapshot), or a batch that would skip positions never
		// applied here: nothing is applied, and the receiving node tells
		// the source (a reset, or a resend from the position applied).
		return &Result{}
	}
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

// dropStaleReplicas removes this region's replicas of source's secrets
// that source no longer replicates here (names lists those it does): on a
// resync, what the feed would have deleted may be behind the reset, or
// exist only in a state source restored away from.
func (t *txn) dropStaleReplicas(source string, names []string) {
	keep := make(map[string]bool, len(names))
	for _, n := range names {
		keep[n] = true
	}
	var stale []*storagev1.Secret
	t.fail(t.tx.Bucket(bucketSecrets).ForEach(func(k, v []byte) error {
		if keep[string(k)] {
			return nil
		}
		s := &storagev1.Secret{}
		if err := proto.Unmarshal(v, s); err != nil {
			return fmt.Errorf("decode secret %q: %w", k, err)
		}
		if s.GetReplica() && s.GetPrimaryRegion() == source {
			stale = append(stale, s)
		}
		return nil
	}))
	for _, s := range stale {
		t.removeSecret(s)
	}
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
	case !local.GetReplica() && forceOverwrite(in, region) && !t.acceptsOverwrite(source):
		// A paired region's callers are not this region's: replacing a
		// secret that is primary here needs this region's consent.
		return fmt.Sprintf("Replication failed: destination region %s already has a primary secret named %s, and its pairing with %s does not accept overwrites (accept_overwrite). ForceOverwriteReplicaSecret cannot replace it.",
			region, ch.GetName(), source)
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
		// A replica keeps the diverged versions it labelled itself (its
		// primary never had them); those it got from a primary follow the
		// primary, which may have adopted or discarded them.
		for _, v := range local.GetVersions() {
			if findVersion(r, v.GetVersionId()) == nil && slices.ContainsFunc(v.GetStages(), divergedIn(region)) {
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

// DivergedLabelPrefix starts the label under which a returning old primary
// keeps the versions it accepted but never shipped:
// COFFER_DIVERGED_<region> on the newest, _<region>_<n> on older ones.
const DivergedLabelPrefix = "COFFER_DIVERGED_"

func isDivergedLabel(l string) bool { return strings.HasPrefix(l, DivergedLabelPrefix) }

// divergedIn matches the diverged labels region gave its own versions.
func divergedIn(region string) func(string) bool {
	own := DivergedLabelPrefix + region
	return func(l string) bool { return l == own || strings.HasPrefix(l, own+"_") }
}

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

// ReplicaPosition is the last feed position applied from source.
func (s *Store) ReplicaPosition(source string) uint64 {
	var v uint64
	_ = s.view(func(tx *bolt.Tx) error {
		v = u64(tx.Bucket(bucketSources).Get([]byte(source)))
		return nil
	})
	return v
}

// ReplicaGeneration is the generation of source's feed the position
// applied from it counts in.
func (s *Store) ReplicaGeneration(source string) string {
	var g string
	_ = s.view(func(tx *bolt.Tx) error {
		g = string(tx.Bucket(bucketSourceGenerations).Get([]byte(source)))
		return nil
	})
	return g
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
