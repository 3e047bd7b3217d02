package storage_test

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	"github.com/cofferhq/coffer/storage"
)

// listFixture holds five secrets created in this order (so created-date asc
// is the order below); dev-token is scheduled for deletion.
func listFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	type spec struct {
		name, desc, region string
		tags               []string
	}
	for i, s := range []spec{
		{"prod/db/password", "Primary Postgres password", "eu-west-1", []string{"env", "prod", "team", "payments"}},
		{"prod/api-key", "Stripe API key", "eu-west-1", []string{"env", "prod", "team", "Checkout"}},
		{"staging/db/password", "primary postgres password for staging", "us-east-1", []string{"env", "staging"}},
		{"Prod/legacy", "", "eu-west-2", []string{"Env", "Prod"}},
		{"dev-token", "developer token", "us-east-1", nil},
	} {
		op := createWithValue(s.name, "SUFFIX", i+1, s.name)
		op.Description, op.PrimaryRegion, op.Tags = s.desc, s.region, tags(s.tags...)
		f.ok(time.Duration(i)*time.Hour, op)
	}
	f.ok(10*time.Hour, deleteOp(arnOf("dev-token", "SUFFIX"), 7))
	return f
}

func TestWords(t *testing.T) {
	for in, want := range map[string][]string{
		"SecretOne":           {"secret", "one"},
		"my-secret_2.x@y+z=w": {"my", "secret", "2", "x", "y", "z", "w"},
		"HTTPServer db2prod":  {"http", "server", "db", "2", "prod"},
		"prod/API-key":        {"prod", "api", "key"},
		"/-":                  nil,
	} {
		if got := storage.Words(in); !slices.Equal(got, want) {
			t.Errorf("Words(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestListSecretsFilters(t *testing.T) {
	t.Parallel()
	f := listFixture(t)
	const (
		db      = "prod/db/password"
		api     = "prod/api-key"
		staging = "staging/db/password"
		legacy  = "Prod/legacy"
		dev     = "dev-token"
	)
	filter := func(key string, values ...string) storage.Filter { return storage.Filter{Key: key, Values: values} }
	tests := []struct {
		name    string
		filters []storage.Filter
		planned bool
		want    []string
	}{
		{"no filter", nil, false, []string{db, api, staging, legacy}},
		{"include planned deletion", nil, true, []string{db, api, staging, legacy, dev}},

		{"name prefix", []storage.Filter{filter("name", "prod/")}, false, []string{db, api}},
		{"name is case-sensitive", []storage.Filter{filter("name", "Prod")}, false, []string{legacy}},
		{"name is a prefix, not a substring", []storage.Filter{filter("name", "db")}, false, []string{}},
		{"name whole", []storage.Filter{filter("name", "prod/api-key")}, false, []string{api}},
		{"name of a deleted secret", []storage.Filter{filter("name", "dev")}, false, []string{}},
		{"name of a deleted secret, included", []storage.Filter{filter("name", "dev")}, true, []string{dev}},

		{"description is case-insensitive", []storage.Filter{filter("description", "PRIMARY")}, false, []string{db, staging}},
		{"description matches words, not only its start", []storage.Filter{filter("description", "postgres")}, false, []string{db, staging}},
		{"description word prefix", []storage.Filter{filter("description", "pass")}, false, []string{db, staging}},
		{"description is not a substring", []storage.Filter{filter("description", "gres")}, false, []string{}},
		{"description multiword", []storage.Filter{filter("description", "stripe api")}, false, []string{api}},

		{"tag-key", []storage.Filter{filter("tag-key", "env")}, false, []string{db, api, staging}},
		{"tag-key is case-sensitive", []storage.Filter{filter("tag-key", "Env")}, false, []string{legacy}},
		{"tag-key prefix", []storage.Filter{filter("tag-key", "te")}, false, []string{db, api}},
		{"tag-value", []storage.Filter{filter("tag-value", "prod")}, false, []string{db, api}},
		{"tag-value is case-sensitive", []storage.Filter{filter("tag-value", "Prod")}, false, []string{legacy}},
		{"tag-value prefix", []storage.Filter{filter("tag-value", "pay")}, false, []string{db}},
		{"tag-value does not match keys", []storage.Filter{filter("tag-value", "team")}, false, []string{}},

		{"primary-region", []storage.Filter{filter("primary-region", "eu-west-1")}, false, []string{db, api}},
		{"primary-region prefix", []storage.Filter{filter("primary-region", "eu-west")}, false, []string{db, api, legacy}},
		{"primary-region is case-sensitive", []storage.Filter{filter("primary-region", "EU")}, false, []string{}},
		{"owning-service", []storage.Filter{filter("owning-service", "rds")}, false, []string{}},

		{"all matches a description word", []storage.Filter{filter("all", "postgres")}, false, []string{db, staging}},
		{"all is case-insensitive", []storage.Filter{filter("all", "PAYMENTS")}, false, []string{db}},
		{"all matches word prefixes", []storage.Filter{filter("all", "pay")}, false, []string{db}},
		{"all needs every word", []storage.Filter{filter("all", "primary staging")}, false, []string{staging}},
		{"all matches name parts", []storage.Filter{filter("all", "legacy")}, false, []string{legacy}},
		{"all matches tag keys and values", []storage.Filter{filter("all", "checkout")}, false, []string{api}},
		{"all does not cover regions", []storage.Filter{filter("all", "west")}, false, []string{}},
		{"all splits names on punctuation", []storage.Filter{filter("all", "key")}, false, []string{api}},
		{"all splits values on punctuation", []storage.Filter{filter("all", "prod/api")}, false, []string{api}},
		{"all matches tag values case-insensitively", []storage.Filter{filter("all", "check")}, false, []string{api}},
		{"all words from several attributes", []storage.Filter{filter("all", "stripe checkout")}, false, []string{api}},
		{"same key twice is ORed", []storage.Filter{filter("name", "prod/db"), filter("name", "staging/")}, false, []string{db, staging}},
		{"same key ORed, other key ANDed", []storage.Filter{filter("name", "prod/db"), filter("tag-value", "staging"), filter("name", "staging/")}, false, []string{staging}},
		{"all with no hit", []storage.Filter{filter("all", "mysql")}, false, []string{}},

		{"negation", []storage.Filter{filter("name", "!prod/")}, false, []string{staging, legacy}},
		{"negated description", []storage.Filter{filter("description", "!primary")}, false, []string{api, legacy}},
		{"negated tag-key", []storage.Filter{filter("tag-key", "!team")}, false, []string{staging, legacy}},
		{"negated all", []storage.Filter{filter("all", "!prod")}, false, []string{staging}},
		{"values are ORed", []storage.Filter{filter("name", "prod/", "staging/")}, false, []string{db, api, staging}},
		{"negation beside a positive value", []storage.Filter{filter("name", "prod/", "!prod/db")}, false, []string{api}},
		{"two negations", []storage.Filter{filter("name", "!prod/", "!staging/")}, false, []string{legacy}},
		{"filters are ANDed", []storage.Filter{filter("name", "prod/"), filter("tag-value", "pay")}, false, []string{db}},
		{"ANDed with no overlap", []storage.Filter{filter("name", "staging/"), filter("primary-region", "eu")}, false, []string{}},
		{
			"three filters",
			[]storage.Filter{filter("tag-key", "env"), filter("description", "primary", "stripe"), filter("primary-region", "!us-")},
			false, []string{db, api},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			page, err := f.store.ListSecrets(storage.Query{Filters: tt.filters, IncludePlannedDeletion: tt.planned})
			if err != nil {
				t.Fatalf("ListSecrets: %v", err)
			}
			if got := names(page.Secrets); !slices.Equal(got, tt.want) {
				t.Fatalf("ListSecrets = %v, want %v", got, tt.want)
			}
			if page.NextToken != "" {
				t.Fatalf("NextToken = %q on a single page", page.NextToken)
			}
		})
	}
}

// sortFixture has four secrets whose created, changed, accessed and name
// orders all differ; alpha and charlie were last read on the same day.
func sortFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	for i, n := range []string{"bravo", "delta", "alpha", "charlie"} {
		f.ok(time.Duration(i)*time.Hour, createOp(n, "SUFFIX"))
	}
	f.ok(10*time.Hour, &raftv1.UpdateSecret{Arn: arnOf("bravo", "SUFFIX"), Description: proto.String("b")})
	f.ok(11*time.Hour, &raftv1.UpdateSecret{Arn: arnOf("delta", "SUFFIX"), Description: proto.String("d")})
	entry := func(name string, d int) *raftv1.AccessEntry {
		return &raftv1.AccessEntry{Arn: arnOf(name, "SUFFIX"), Day: timestamppb.New(base.Add(time.Duration(d) * day))}
	}
	f.ok(12*time.Hour, &raftv1.RecordAccess{Entries: []*raftv1.AccessEntry{
		entry("charlie", 5), entry("alpha", 5), entry("delta", 7),
	}})
	return f
}

func TestListSecretsSort(t *testing.T) {
	t.Parallel()
	f := sortFixture(t)
	tests := []struct {
		by   string
		asc  []string
		desc []string
	}{
		{"", []string{"bravo", "delta", "alpha", "charlie"}, nil},
		{storage.SortCreatedDate, []string{"bravo", "delta", "alpha", "charlie"}, []string{"charlie", "alpha", "delta", "bravo"}},
		{storage.SortLastChangedDate, []string{"alpha", "charlie", "bravo", "delta"}, []string{"delta", "bravo", "charlie", "alpha"}},
		{storage.SortLastAccessedDate, []string{"bravo", "alpha", "charlie", "delta"}, []string{"delta", "charlie", "alpha", "bravo"}},
		{storage.SortName, []string{"alpha", "bravo", "charlie", "delta"}, []string{"delta", "charlie", "bravo", "alpha"}},
	}
	for _, tt := range tests {
		for _, order := range []string{"", storage.SortAsc, storage.SortDesc} {
			want := tt.asc
			if order == storage.SortDesc {
				want = tt.desc
			}
			if want == nil {
				continue
			}
			t.Run(tt.by+"/"+order, func(t *testing.T) {
				t.Parallel()
				page, err := f.store.ListSecrets(storage.Query{SortBy: tt.by, SortOrder: order})
				if err != nil {
					t.Fatalf("ListSecrets: %v", err)
				}
				if got := names(page.Secrets); !slices.Equal(got, want) {
					t.Fatalf("ListSecrets(%s %s) = %v, want %v", tt.by, order, got, want)
				}
				// Paging one at a time gives the same order.
				if got := listAll(t, f.store, storage.Query{SortBy: tt.by, SortOrder: order, MaxResults: 1}, nil); !slices.Equal(got, want) {
					t.Fatalf("paged ListSecrets(%s %s) = %v, want %v", tt.by, order, got, want)
				}
			})
		}
	}
}

// listAll pages through q, calling between (when not nil) after each page.
func listAll(t *testing.T, s *storage.Store, q storage.Query, between func(page int)) []string {
	t.Helper()
	var out []string
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatal("ListSecrets paging does not end")
		}
		p, err := s.ListSecrets(q)
		if err != nil {
			t.Fatalf("ListSecrets page %d: %v", page, err)
		}
		if q.MaxResults > 0 && len(p.Secrets) > q.MaxResults {
			t.Fatalf("page %d has %d secrets, MaxResults is %d", page, len(p.Secrets), q.MaxResults)
		}
		if p.NextToken != "" && len(p.Secrets) == 0 {
			t.Fatalf("page %d is empty but has a NextToken", page)
		}
		out = append(out, names(p.Secrets)...)
		if p.NextToken == "" {
			return out
		}
		q.NextToken = p.NextToken
		if between != nil {
			between(page)
		}
	}
}

func TestListSecretsPaging(t *testing.T) {
	t.Parallel()
	const n = 23
	var all []string
	for i := range n {
		all = append(all, fmt.Sprintf("s%02d", i))
	}
	for _, sortBy := range []string{storage.SortCreatedDate, storage.SortName, storage.SortLastChangedDate, storage.SortLastAccessedDate} {
		for _, order := range []string{storage.SortAsc, storage.SortDesc} {
			for _, size := range []int{1, 5, 23, 100} {
				t.Run(fmt.Sprintf("%s/%s/%d", sortBy, order, size), func(t *testing.T) {
					t.Parallel()
					f := newFixture(t)
					var ops []proto.Message
					// Create out of name order so name and date orders differ.
					for i := range n {
						ops = append(ops, createOp(all[(i*7)%n], "SUFFIX"))
					}
					f.batch(0, ops...)
					q := storage.Query{SortBy: sortBy, SortOrder: order, MaxResults: size}
					full, err := f.store.ListSecrets(storage.Query{SortBy: sortBy, SortOrder: order})
					if err != nil {
						t.Fatal(err)
					}
					want := names(full.Secrets)
					if len(want) != n {
						t.Fatalf("one page holds %d secrets, want %d", len(want), n)
					}

					if got := listAll(t, f.store, q, nil); !slices.Equal(got, want) {
						t.Fatalf("pages = %v\nwant %v", got, want)
					}

					// Create secrets (that sort before and after everything)
					// and delete one between pages: every original secret
					// still appears exactly once and in order.
					created := 0
					got := listAll(t, f.store, q, func(page int) {
						if page >= 3 {
							return // with one per page, creating forever would never end
						}
						created++
						f.ok(time.Hour+time.Duration(created)*time.Minute, createOp(fmt.Sprintf("a-new%02d", created), "SUFFIX"))
						f.ok(time.Hour+time.Duration(created)*time.Minute, createOp(fmt.Sprintf("z-new%02d", created), "SUFFIX"))
					})
					var originals []string
					seen := map[string]bool{}
					for _, name := range got {
						if seen[name] {
							t.Fatalf("%s listed twice: %v", name, got)
						}
						seen[name] = true
						if !strings.Contains(name, "-new") {
							originals = append(originals, name)
						}
					}
					if !slices.Equal(originals, want) {
						t.Fatalf("with creates between pages, originals = %v\nwant %v", originals, want)
					}
				})
			}
		}
	}
}

func TestListSecretsPagingSkipsDeleted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for i := range 6 {
		f.ok(time.Duration(i)*time.Minute, createOp(fmt.Sprintf("s%d", i), "SUFFIX"))
	}
	q := storage.Query{MaxResults: 2}
	got := listAll(t, f.store, q, func(page int) {
		if page == 0 {
			f.ok(time.Hour, deleteOp(arnOf("s1", "SUFFIX"), 7)) // already listed
			f.ok(time.Hour, forceDeleteOp(arnOf("s2", "SUFFIX")))
			f.ok(time.Hour, deleteOp(arnOf("s4", "SUFFIX"), 7))
		}
	})
	if want := []string{"s0", "s1", "s3", "s5"}; !slices.Equal(got, want) {
		t.Fatalf("pages = %v, want %v", got, want)
	}
}

func TestListSecretsBadNextToken(t *testing.T) {
	t.Parallel()
	f := sortFixture(t)
	q := storage.Query{SortBy: storage.SortName, MaxResults: 2}
	p, err := f.store.ListSecrets(q)
	if err != nil {
		t.Fatal(err)
	}
	tok := p.NextToken
	if tok == "" {
		t.Fatal("no NextToken on the first of two pages")
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatalf("token is not base64url: %v", err)
	}
	f.ok(20*time.Hour, putOp(arnOf("alpha", "SUFFIX"), 1, "a"))
	f.ok(21*time.Hour, putOp(arnOf("alpha", "SUFFIX"), 2, "b"))
	vp, err := f.store.SecretVersions("alpha", true, 1, "")
	if err != nil || vp.NextToken == "" {
		t.Fatalf("SecretVersions: %v, token %q", err, vp.NextToken)
	}

	tests := []struct {
		name string
		q    storage.Query
	}{
		{"not base64", storage.Query{SortBy: storage.SortName, NextToken: "!!!not a token!!!"}},
		{"truncated", storage.Query{SortBy: storage.SortName, NextToken: tok[:len(tok)/2]}},
		{"base64 of garbage", storage.Query{SortBy: storage.SortName, NextToken: base64.RawURLEncoding.EncodeToString([]byte("garbage"))}},
		{"json of nothing", storage.Query{SortBy: storage.SortName, NextToken: base64.RawURLEncoding.EncodeToString([]byte("{}"))}},
		{"query digest changed", storage.Query{SortBy: storage.SortName,
			NextToken: base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), `"q":"`, `"q":"0`, 1)))}},
		{"other sort key", storage.Query{SortBy: storage.SortCreatedDate, NextToken: tok}},
		{"other sort order", storage.Query{SortBy: storage.SortName, SortOrder: storage.SortDesc, NextToken: tok}},
		{"other filter", storage.Query{SortBy: storage.SortName, NextToken: tok, Filters: []storage.Filter{{Key: "name", Values: []string{"a"}}}}},
		{"planned deletion added", storage.Query{SortBy: storage.SortName, NextToken: tok, IncludePlannedDeletion: true}},
		{"token from ListSecretVersionIds", storage.Query{SortBy: storage.SortName, NextToken: vp.NextToken}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := f.store.ListSecrets(tt.q)
			wantErr(t, err, storage.ErrInvalidNextToken, "The NextToken value is invalid or does not belong to this request.")
			if page != nil {
				t.Fatalf("got a page with the error: %v", names(page.Secrets))
			}
		})
	}
	// The genuine token still works, and MaxResults may change between pages.
	q.NextToken, q.MaxResults = tok, 10
	p, err = f.store.ListSecrets(q)
	if err != nil {
		t.Fatalf("genuine token: %v", err)
	}
	if got := names(p.Secrets); !slices.Equal(got, []string{"charlie", "delta"}) {
		t.Fatalf("second page = %v, want [charlie delta]", got)
	}
}

func TestSecretVersionsPaging(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app", "AAAAAA")
	f.ok(0, createWithValue("app", "AAAAAA", 1, "v1"))
	for i := 2; i <= 7; i++ {
		f.ok(time.Duration(i)*time.Hour, putOp(arn, i, fmt.Sprintf("v%d", i)))
	}
	f.ok(8*time.Hour, createWithValue("other", "OOOOOO", 50, "o"))
	f.ok(9*time.Hour, putOp(arnOf("other", "OOOOOO"), 51, "o2"))

	for _, tt := range []struct {
		deprecated bool
		size       int
		want       []int
	}{
		{true, 3, []int{7, 6, 5, 4, 3, 2, 1}},
		{true, 1, []int{7, 6, 5, 4, 3, 2, 1}},
		{true, 7, []int{7, 6, 5, 4, 3, 2, 1}},
		{false, 1, []int{7, 6}},
		{false, 2, []int{7, 6}},
	} {
		var got []string
		token := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("paging does not end")
			}
			p, err := f.store.SecretVersions("app", tt.deprecated, tt.size, token)
			if err != nil {
				t.Fatalf("SecretVersions page %d: %v", pages, err)
			}
			if len(p.Versions) > tt.size {
				t.Fatalf("page of %d versions, max %d", len(p.Versions), tt.size)
			}
			got = append(got, versionIDs(p.Versions)...)
			if p.NextToken == "" {
				break
			}
			token = p.NextToken
		}
		if want := vids(tt.want...); !slices.Equal(got, want) {
			t.Fatalf("SecretVersions(deprecated=%v, size %d) = %v, want %v", tt.deprecated, tt.size, got, want)
		}
	}

	p, err := f.store.SecretVersions("app", true, 2, "")
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.store.SecretVersions("other", true, 1, "")
	if err != nil || other.NextToken == "" {
		t.Fatalf("SecretVersions(other): %v, token %q", err, other.NextToken)
	}
	list, err := f.store.ListSecrets(storage.Query{MaxResults: 1})
	if err != nil || list.NextToken == "" {
		t.Fatalf("ListSecrets: %v, token %q", err, list.NextToken)
	}
	for name, tok := range map[string]string{
		"garbage":                "%%%",
		"another secret's token": other.NextToken,
		"a ListSecrets token":    list.NextToken,
		"truncated":              p.NextToken[:len(p.NextToken)-3],
	} {
		_, err := f.store.SecretVersions("app", true, 2, tok)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		wantErr(t, err, storage.ErrInvalidNextToken, "The NextToken value is invalid or does not belong to this request.")
	}
	_, err = f.store.SecretVersions("nope", true, 2, "")
	wantErr(t, err, storage.ErrSecretNotFound, msgNoARN)
}
