package storage

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// The ListSecrets filter keys.
const (
	FilterDescription   = "description"
	FilterName          = "name"
	FilterTagKey        = "tag-key"
	FilterTagValue      = "tag-value"
	FilterPrimaryRegion = "primary-region"
	FilterOwningService = "owning-service"
	FilterAll           = "all"
)

// FilterKeys lists the accepted filter keys.
var FilterKeys = []string{FilterDescription, FilterName, FilterTagKey, FilterTagValue, FilterPrimaryRegion, FilterOwningService, FilterAll}

// The ListSecrets sort keys and orders.
const (
	SortCreatedDate      = "created-date"
	SortLastAccessedDate = "last-accessed-date"
	SortLastChangedDate  = "last-changed-date"
	SortName             = "name"
	SortAsc              = "asc"
	SortDesc             = "desc"
)

// Filter is one ListSecrets filter: a secret matches when any of its
// positive values matches (or it has none) and none of its "!" values does.
type Filter struct {
	Key    string
	Values []string
}

// Query is a ListSecrets request.
type Query struct {
	Filters                []Filter
	IncludePlannedDeletion bool
	SortBy                 string // default created-date
	SortOrder              string // default asc
	MaxResults             int    // default 100
	NextToken              string
	// ScanBudget bounds the records one page reads; 0 means
	// DefaultListScanBudget.
	ScanBudget int
}

// DefaultListScanBudget is how many secret records one ListSecrets page
// reads at most. A page whose filters skip that many returns what it found
// with a NextToken, as AWS may return fewer results than MaxResults (even
// none) with a NextToken: the work of a page is bounded whatever the
// filters and however many secrets there are.
const DefaultListScanBudget = 1000

// Page is one page of ListSecrets.
type Page struct {
	Secrets   []*storagev1.Secret
	NextToken string
}

// cursor is what a NextToken carries: the position after the last secret
// returned (or read, when the scan budget ran out), in a total order (sort
// key, then name), plus a digest of the query so a token cannot be
// replayed against another one. Because it names a position rather than an
// offset, secrets created or deleted between pages do not shift the pages.
type cursor struct {
	Query string `json:"q"`
	Key   string `json:"k"`
	Name  string `json:"n"`
}

// ListSecrets returns one page of the secrets that match q, walking the
// order q asks for from the token's position (the secrets bucket for name,
// the order index for a date), so a page reads the records it returns and
// those its filters skip, up to the scan budget — never all of them.
func (s *Store) ListSecrets(q Query) (*Page, error) {
	if q.SortBy == "" {
		q.SortBy = SortCreatedDate
	}
	if q.SortOrder == "" {
		q.SortOrder = SortAsc
	}
	if q.MaxResults <= 0 {
		q.MaxResults = 100
	}
	budget := q.ScanBudget
	if budget <= 0 {
		budget = DefaultListScanBudget
	}
	digest := q.digest()
	var after *cursor
	if q.NextToken != "" {
		c, err := decodeCursor(q.NextToken)
		if err != nil || c.Query != digest || !c.validFor(q.SortBy) {
			return nil, newError(ErrInvalidNextToken, "The NextToken value is invalid or does not belong to this request.")
		}
		after = c
	}
	page := &Page{}
	err := s.view(func(tx *bolt.Tx) error {
		it := newOrderedSecrets(tx, q.SortBy, q.SortOrder == SortDesc, after)
		var lastKey, lastName string // the last secret returned
		for scanned := 0; it.step() != nil; {
			key, name := it.position()
			sec, err := it.secret()
			if err != nil {
				return err
			}
			scanned++
			if (sec.GetDeletedDate() == nil || q.IncludePlannedDeletion) && Matches(sec, q.Filters) {
				if len(page.Secrets) == q.MaxResults {
					// Another match: the next page starts after the last returned.
					page.NextToken = encodeCursor(cursor{Query: digest, Key: lastKey, Name: lastName})
					return nil
				}
				page.Secrets = append(page.Secrets, sec)
				lastKey, lastName = key, name
			}
			if scanned >= budget {
				// Out of budget: the next page starts after the last record
				// read, if there is anything after it.
				if it.step() != nil {
					page.NextToken = encodeCursor(cursor{Query: digest, Key: key, Name: name})
				}
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

// validFor reports whether the cursor names a position in the order by:
// a name for name, a date's sort key and a name otherwise.
func (c *cursor) validFor(by string) bool {
	if !ValidName(c.Name) {
		return false
	}
	if by == SortName {
		return c.Key == c.Name
	}
	if len(c.Key) != sortKeyLen {
		return false
	}
	for i := 0; i < len(c.Key); i++ {
		if (c.Key[i] < '0' || c.Key[i] > '9') && !(i == 0 && c.Key[i] == '-') {
			return false
		}
	}
	return true
}

func (q Query) digest() string {
	b, _ := json.Marshal(struct {
		F []Filter
		D bool
		S string
		O string
	}{q.Filters, q.IncludePlannedDeletion, q.SortBy, q.SortOrder})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(tok string) (*cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return nil, fmt.Errorf("decode next token: %w", err)
	}
	c := &cursor{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("decode next token: %w", err)
	}
	return c, nil
}

func sortKey(sec *storagev1.Secret, by string) string {
	switch by {
	case SortName:
		return sec.GetName()
	case SortLastAccessedDate:
		return tsKey(sec.GetLastAccessedDate())
	case SortLastChangedDate:
		return tsKey(sec.GetLastChangedDate())
	default:
		return tsKey(sec.GetCreatedDate())
	}
}

// tsKey encodes a time so that string order is time order; unset sorts first.
func tsKey(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return strings.Repeat("0", 20)
	}
	return fmt.Sprintf("%020d", ts.AsTime().UnixNano()+(1<<62))
}

// Matches reports whether sec passes the filters as AWS combines them:
// the values of every filter with the same key are ORed (two filters
// {name: a} and {name: b} are one filter {name: a, b}), and the keys are
// ANDed.
func Matches(sec *storagev1.Secret, filters []Filter) bool {
	if len(filters) == 0 {
		return true
	}
	var keys []string
	byKey := map[string][]string{}
	for _, f := range filters {
		if _, seen := byKey[f.Key]; !seen {
			keys = append(keys, f.Key)
		}
		byKey[f.Key] = append(byKey[f.Key], f.Values...)
	}
	for _, k := range keys {
		if !matchFilter(sec, Filter{Key: k, Values: byKey[k]}) {
			return false
		}
	}
	return true
}

func matchFilter(sec *storagev1.Secret, f Filter) bool {
	anyPositive, positiveHit := false, false
	for _, v := range f.Values {
		neg := strings.HasPrefix(v, "!")
		if neg {
			v = v[1:]
		}
		hit := matchValue(sec, f.Key, v)
		if neg && hit {
			return false
		}
		if !neg {
			anyPositive = true
			positiveHit = positiveHit || hit
		}
	}
	return !anyPositive || positiveHit
}

// matchValue applies one filter value as AWS does: name, tag-key,
// tag-value, primary-region and owning-service are case-sensitive prefixes
// of the whole attribute; description and all match words (matchWords).
func matchValue(sec *storagev1.Secret, key, v string) bool {
	switch key {
	case FilterName:
		return strings.HasPrefix(sec.GetName(), v)
	case FilterDescription:
		return matchWords(v, sec.GetDescription())
	case FilterTagKey:
		for _, t := range sec.GetTags() {
			if strings.HasPrefix(t.GetKey(), v) {
				return true
			}
		}
		return false
	case FilterTagValue:
		for _, t := range sec.GetTags() {
			if strings.HasPrefix(t.GetValue(), v) {
				return true
			}
		}
		return false
	case FilterPrimaryRegion:
		return strings.HasPrefix(sec.GetPrimaryRegion(), v)
	case FilterOwningService:
		return strings.HasPrefix(sec.GetOwningService(), v)
	case FilterAll:
		attrs := []string{sec.GetName(), sec.GetDescription()}
		for _, t := range sec.GetTags() {
			attrs = append(attrs, t.GetKey(), t.GetValue())
		}
		return matchWords(v, attrs...)
	}
	return false
}

// matchWords breaks the filter value and the attributes into words
// (Words) and reports whether every word of the value is a
// case-insensitive prefix of some word of the attributes: "secret one"
// matches a secret named "SecretOne" or "my-secret" described as "one".
// A value with no words matches nothing.
func matchWords(v string, attrs ...string) bool {
	want := Words(v)
	if len(want) == 0 {
		return false
	}
	var have []string
	for _, a := range attrs {
		have = append(have, Words(a)...)
	}
	for _, w := range want {
		if !slices.ContainsFunc(have, func(x string) bool { return strings.HasPrefix(x, w) }) {
			return false
		}
	}
	return true
}

// Words breaks s into the lower-cased words AWS's description and all
// filters match: it splits on spaces and punctuation (/ _ + = . @ - and any
// other character that is not a letter or digit), between a lower-case
// letter and an upper-case one ("SecretOne": secret, one), before the last
// capital of a run followed by a lower-case letter ("HTTPServer": http,
// server), and between letters and digits ("db2prod": db, 2, prod).
func Words(s string) []string {
	var words []string
	rs := []rune(s)
	start := -1
	flush := func(end int) {
		if start >= 0 && end > start {
			words = append(words, strings.ToLower(string(rs[start:end])))
		}
		start = -1
	}
	for i, r := range rs {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush(i)
			continue
		}
		if start >= 0 {
			p := rs[i-1]
			switch {
			case unicode.IsLower(p) && unicode.IsUpper(r),
				unicode.IsDigit(p) != unicode.IsDigit(r),
				unicode.IsUpper(p) && unicode.IsUpper(r) && i+1 < len(rs) && unicode.IsLower(rs[i+1]):
				flush(i)
			}
		}
		if start < 0 {
			start = i
		}
	}
	flush(len(rs))
	return words
}

// VersionPage is one page of ListSecretVersionIds.
type VersionPage struct {
	Secret    *storagev1.Secret
	Versions  []*storagev1.Version
	NextToken string
}

// SecretVersions lists a secret's versions newest first; deprecated
// (unlabeled) versions only when includeDeprecated.
func (s *Store) SecretVersions(ref string, includeDeprecated bool, maxResults int, nextToken string) (*VersionPage, error) {
	sec, err := s.Secret(ref)
	if err != nil {
		return nil, err
	}
	if maxResults <= 0 {
		maxResults = 100
	}
	var all []*storagev1.Version
	for i := len(sec.GetVersions()) - 1; i >= 0; i-- {
		v := sec.GetVersions()[i]
		if includeDeprecated || len(v.GetStages()) > 0 {
			all = append(all, v)
		}
	}
	start := 0
	if nextToken != "" {
		c, err := decodeCursor(nextToken)
		if err != nil || c.Query != sec.GetArn() {
			return nil, newError(ErrInvalidNextToken, "The NextToken value is invalid or does not belong to this request.")
		}
		i := slices.IndexFunc(all, func(v *storagev1.Version) bool { return v.GetVersionId() == c.Name })
		if i < 0 {
			// The version the token points after was removed (pruned or
			// deprecated) between pages; say so rather than return nothing.
			return nil, newError(ErrInvalidNextToken, "The NextToken value is no longer valid because the secret's versions changed; list again from the start.")
		}
		start = i + 1
	}
	page := &VersionPage{Secret: sec}
	end := min(start+maxResults, len(all))
	page.Versions = all[start:end]
	if end < len(all) {
		page.NextToken = encodeCursor(cursor{Query: sec.GetArn(), Name: all[end-1].GetVersionId()})
	}
	return page, nil
}
