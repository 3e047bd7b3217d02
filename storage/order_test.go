package storage_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
)

// randomSecrets fills f with n secrets whose dates tie often (whole hours
// and days), some changed, some read, some scheduled for deletion, with
// names, descriptions and tags the filters below can tell apart.
func randomSecrets(f *fixture, n int, rng *rand.Rand) {
	f.t.Helper()
	prefixes := []string{"a/", "b/", "a/x/", "c"}
	var arns []string
	for range n {
		name := fmt.Sprintf("%s%03d", prefixes[rng.IntN(len(prefixes))], rng.IntN(1000))
		op := createOp(name, "AbCdEf")
		if rng.IntN(2) == 0 {
			op.Description = "x marks " + name
		}
		if rng.IntN(3) == 0 {
			op.Tags = tags("t1", "v"+name[:1])
		}
		if r := f.apply(time.Duration(rng.IntN(12))*time.Hour, op); r.Err == nil {
			arns = append(arns, op.GetArn())
		}
	}
	for _, arn := range arns {
		at := 12*time.Hour + time.Duration(rng.IntN(12))*time.Hour
		switch rng.IntN(5) {
		case 0:
			f.ok(at, &raftv1.TagResource{Arn: arn, Tags: tags("t2", "changed")})
		case 1:
			f.ok(at, &raftv1.RecordAccess{Entries: []*raftv1.AccessEntry{{Arn: arn, Day: timestamppb.New(base.Add(time.Duration(rng.IntN(3)) * day))}}})
		case 2:
			f.ok(at, deleteOp(arn, 7))
		}
	}
}

// tsKeyOf is the order the dates sort in, as ListSecrets has always used it.
func tsKeyOf(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return strings.Repeat("0", 20)
	}
	return fmt.Sprintf("%020d", ts.AsTime().UnixNano()+(1<<62))
}

// referencePages is ListSecrets as it was before the order index: read
// every record, filter, sort by (sort key, name), cut into pages.
func referencePages(t *testing.T, s *storage.Store, q storage.Query) [][]string {
	t.Helper()
	type item struct{ key, name string }
	var items []item
	if err := s.Secrets(func(sec *storagev1.Secret) bool {
		if (sec.GetDeletedDate() == nil || q.IncludePlannedDeletion) && storage.Matches(sec, q.Filters) {
			key := sec.GetName()
			switch q.SortBy {
			case "", storage.SortCreatedDate:
				key = tsKeyOf(sec.GetCreatedDate())
			case storage.SortLastChangedDate:
				key = tsKeyOf(sec.GetLastChangedDate())
			case storage.SortLastAccessedDate:
				key = tsKeyOf(sec.GetLastAccessedDate())
			}
			items = append(items, item{key, sec.GetName()})
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(items, func(a, b item) int {
		c := strings.Compare(a.key, b.key)
		if c == 0 {
			c = strings.Compare(a.name, b.name)
		}
		if q.SortOrder == storage.SortDesc {
			c = -c
		}
		return c
	})
	var pages [][]string
	for len(items) > 0 {
		k := min(q.MaxResults, len(items))
		var page []string
		for _, it := range items[:k] {
			page = append(page, it.name)
		}
		pages = append(pages, page)
		items = items[k:]
	}
	return pages
}

// listPages pages through q to the end.
func listPages(t *testing.T, s *storage.Store, q storage.Query) [][]string {
	t.Helper()
	var pages [][]string
	for {
		page, err := s.ListSecrets(q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		var names []string
		for _, sec := range page.Secrets {
			names = append(names, sec.GetName())
		}
		if len(names) > 0 || page.NextToken != "" {
			pages = append(pages, names)
		}
		if page.NextToken == "" {
			return pages
		}
		if len(pages) > 1000 {
			t.Fatalf("%+v: more than 1,000 pages", q)
		}
		q.NextToken = page.NextToken
	}
}

// TestListSecretsPagesMatchAFullSort: walking the order index gives, page
// for page, what sorting every record gave — in every order, with ties,
// filters, deleted secrets and page sizes that split ties.
func TestListSecretsPagesMatchAFullSort(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	randomSecrets(f, 120, rand.New(rand.NewPCG(13, 5)))
	filterSets := [][]storage.Filter{
		nil,
		{{Key: storage.FilterName, Values: []string{"a/"}}},
		{{Key: storage.FilterName, Values: []string{"!a/"}}, {Key: storage.FilterDescription, Values: []string{"X"}}},
		{{Key: storage.FilterTagKey, Values: []string{"t"}}},
	}
	for _, by := range []string{"", storage.SortCreatedDate, storage.SortLastChangedDate, storage.SortLastAccessedDate, storage.SortName} {
		for _, order := range []string{"", storage.SortAsc, storage.SortDesc} {
			for _, planned := range []bool{false, true} {
				for fi, filters := range filterSets {
					for _, max := range []int{1, 7, 100} {
						q := storage.Query{SortBy: by, SortOrder: order, IncludePlannedDeletion: planned, Filters: filters, MaxResults: max}
						got, want := listPages(t, f.store, q), referencePages(t, f.store, q)
						if !slices.EqualFunc(got, want, slices.Equal) {
							t.Fatalf("sort %q %q, planned %v, filters #%d, max %d:\n got %v\nwant %v", by, order, planned, fi, max, got, want)
						}
					}
				}
			}
		}
	}
}

// TestListSecretsWorkIsBounded: a filter that matches nothing among the
// first records no longer reads every secret for one page. The page reads
// at most the scan budget and answers with a NextToken and fewer results
// (here none), as AWS may; paging on reaches the match.
func TestListSecretsWorkIsBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for i := range 30 {
		f.ok(time.Duration(i)*time.Minute, createOp(fmt.Sprintf("bulk/%02d", i), "AbCdEf"))
	}
	f.ok(time.Hour, createOp("needle", "AbCdEf"))
	q := storage.Query{Filters: []storage.Filter{{Key: storage.FilterName, Values: []string{"needle"}}}, ScanBudget: 10}
	var pages [][]string
	for {
		page, err := f.store.ListSecrets(q)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range page.Secrets {
			names = append(names, s.GetName())
		}
		pages = append(pages, names)
		if page.NextToken == "" {
			break
		}
		q.NextToken = page.NextToken
	}
	want := [][]string{nil, nil, nil, {"needle"}}
	if !slices.EqualFunc(pages, want, slices.Equal) {
		t.Fatalf("pages with a scan budget of 10 over 31 secrets = %q, want %q", pages, want)
	}
}

// TestListSecretsOrderIndexRebuilt: a state file without the order index
// (written by an earlier build, or restored from its snapshot) is indexed
// when opened, and lists as before.
func TestListSecretsOrderIndexRebuilt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	randomSecrets(f, 40, rand.New(rand.NewPCG(7, 7)))
	q := storage.Query{SortBy: storage.SortLastChangedDate, SortOrder: storage.SortDesc, IncludePlannedDeletion: true, MaxResults: 5}
	want := referencePages(t, f.store, q)
	path := f.store.Path()
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	storage.DropOrderIndex(t, path)
	s, err := storage.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if got := listPages(t, s, q); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("after reindexing: %v, want %v", got, want)
	}
}
