package storage

import (
	"fmt"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

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
