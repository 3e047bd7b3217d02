package server

import (
	"strings"
	"testing"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage"
)

// TestWatchSelection: ids (names or ARNs) and prefixes select, tags narrow;
// oversized or empty selections are refused with ValidationException.
func TestWatchSelection(t *testing.T) {
	change := func(name string, tags ...string) *storage.Change {
		sec := &storagev1.Secret{Name: name, Arn: "arn:aws:secretsmanager:us-east-1:000000000000:secret:" + name + "-AbCdEf"}
		for i := 0; i+1 < len(tags); i += 2 {
			sec.Tags = append(sec.Tags, &cofferv1.Tag{Key: tags[i], Value: tags[i+1]})
		}
		return &storage.Change{Name: name, ARN: sec.GetArn(), Secret: sec}
	}
	for _, tc := range []struct {
		req  *cofferv1.WatchSecretsRequest
		c    *storage.Change
		want bool
	}{
		{&cofferv1.WatchSecretsRequest{}, change("any"), true},
		{&cofferv1.WatchSecretsRequest{SecretIds: []string{"app/db"}}, change("app/db"), true},
		{&cofferv1.WatchSecretsRequest{SecretIds: []string{change("app/db").ARN}}, change("app/db"), true},
		{&cofferv1.WatchSecretsRequest{SecretIds: []string{"app/db"}}, change("app/dbx"), false},
		{&cofferv1.WatchSecretsRequest{NamePrefixes: []string{"app/"}}, change("app/x"), true},
		{&cofferv1.WatchSecretsRequest{NamePrefixes: []string{"app/"}}, change("ops/x"), false},
		{&cofferv1.WatchSecretsRequest{Tags: []*cofferv1.WatchTag{{Key: "team", Value: "a"}}}, change("x", "team", "a"), true},
		{&cofferv1.WatchSecretsRequest{Tags: []*cofferv1.WatchTag{{Key: "team", Value: "a"}}}, change("x", "team", "b"), false},
		{&cofferv1.WatchSecretsRequest{NamePrefixes: []string{"app/"}, Tags: []*cofferv1.WatchTag{{Key: "team", Value: "a"}}}, change("ops/x", "team", "a"), false},
	} {
		sel, err := newWatchSelection(tc.req)
		if err != nil {
			t.Fatal(err)
		}
		if got := sel.match(tc.c); got != tc.want {
			t.Errorf("%v matches %s: %v, want %v", tc.req, tc.c.Name, got, tc.want)
		}
	}
	for _, bad := range []*cofferv1.WatchSecretsRequest{
		{SecretIds: make([]string, 101)},
		{SecretIds: []string{""}},
		{NamePrefixes: []string{strings.Repeat("a", 513)}},
		{Tags: []*cofferv1.WatchTag{{Key: ""}}},
	} {
		if _, err := newWatchSelection(bad); AsAPIError(err).Type != TypeValidation {
			t.Errorf("%v: %v, want ValidationException", bad, err)
		}
	}
}
