package server

import (
	"slices"
	"testing"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// TestCoalesceKeepsLastStateAndLiveValues: a batch's changes to one secret
// become its last change, carrying the values of every version that change
// still has (added anywhere in the batch) and none of the pruned ones; other
// secrets and a recreated secret (another ARN) stay separate, in order.
func TestCoalesceKeepsLastStateAndLiveValues(t *testing.T) {
	rec := func(arn string, versions ...string) *storagev1.Secret {
		s := &storagev1.Secret{Arn: arn}
		for _, v := range versions {
			s.Versions = append(s.Versions, &storagev1.Version{VersionId: v})
		}
		return s
	}
	val := func(ids ...string) []*storagev1.FeedValue {
		var out []*storagev1.FeedValue
		for _, id := range ids {
			out = append(out, &storagev1.FeedValue{VersionId: id, Value: &storagev1.SealedValue{Ciphertext: []byte(id)}})
		}
		return out
	}
	in := []*storagev1.ChangeFeedEntry{
		{Seq: 1, Arn: "a", Secret: rec("a", "1"), Values: val("1")},
		{Seq: 2, Arn: "b", Secret: rec("b", "x"), Values: val("x")},
		{Seq: 3, Arn: "a", Secret: rec("a", "1", "2"), Values: val("2")},
		{Seq: 4, Arn: "a", Secret: rec("a", "2", "3"), Values: val("3")}, // 1 pruned
		{Seq: 5, Arn: "c-old"}, // deleted
		{Seq: 6, Arn: "c-new", Secret: rec("c-new", "9"), Values: val("9")},
	}
	out := coalesce(in)
	var seqs []uint64
	for _, e := range out {
		seqs = append(seqs, e.GetSeq())
	}
	if !slices.Equal(seqs, []uint64{2, 4, 5, 6}) {
		t.Fatalf("coalesced positions %v, want [2 4 5 6]", seqs)
	}
	var ids []string
	for _, fv := range out[1].GetValues() {
		ids = append(ids, fv.GetVersionId())
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"2", "3"}) {
		t.Fatalf("secret a ships values %v, want [2 3]", ids)
	}
	if len(in[0].GetValues()) != 1 || in[3].GetValues()[0].GetVersionId() != "3" {
		t.Fatal("coalesce changed its input")
	}
}
