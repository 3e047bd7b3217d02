package compat

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestAWSCLIListFilters drives list-secrets and batch-get-secret-value's
// filters through the real aws CLIs as AWS matches them: description and
// all match words (split on punctuation and camelCase), the other keys
// are case-sensitive prefixes, values of one key are ORed and keys ANDed,
// and bad filters get AWS's error types.
func TestAWSCLIListFilters(t *testing.T) {
	s := startServer(t)
	for i, c := range awsCLIs(t) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := fmt.Sprintf("filters%d", i)
			one, two, three := p+"/SecretOne", p+"/db-password", p+"/api.key"
			c.ok(t, s, "create-secret", "--name", one, "--secret-string", "1", "--description", "Payments primary", "--tags", "Key=env,Value=prod")
			c.ok(t, s, "create-secret", "--name", two, "--secret-string", "2", "--description", "postgres login", "--tags", "Key=env,Value=staging")
			c.ok(t, s, "create-secret", "--name", three, "--secret-string", "3", "--tags", "Key=Team,Value=checkout")

			list := func(filters ...string) []string {
				t.Helper()
				out := c.ok(t, s, append([]string{"list-secrets", "--filters"}, filters...)...)
				var names []string
				l, _ := out["SecretList"].([]any)
				for _, e := range l {
					if m, ok := e.(map[string]any); ok && strings.HasPrefix(str(m, "Name"), p+"/") {
						names = append(names, str(m, "Name"))
					}
				}
				slices.Sort(names)
				return names
			}
			for _, tc := range []struct {
				filters []string
				want    []string
			}{
				{[]string{"Key=all,Values=one"}, []string{one}},             // camelCase word of the name
				{[]string{"Key=all,Values=SECRET"}, []string{one}},          // case-insensitive
				{[]string{"Key=all,Values=pass"}, []string{two}},            // word after "-"
				{[]string{"Key=all,Values=key"}, []string{three}},           // word after "."
				{[]string{"Key=all,Values=check"}, []string{three}},         // tag value
				{[]string{"Key=all,Values=team"}, []string{three}},          // tag key, case-insensitive
				{[]string{"Key=all,Values=payments prim"}, []string{one}},   // every word must match
				{[]string{"Key=description,Values=primary"}, []string{one}}, // a word, not only the start
				{[]string{"Key=description,Values=gres"}, nil},              // not a substring
				{[]string{"Key=name,Values=" + p + "/db"}, []string{two}},
				{[]string{"Key=name,Values=" + p + "/secret"}, nil}, // name is case-sensitive
				{[]string{"Key=tag-value,Values=prod,staging"}, []string{two, one}},
				// The same key twice is ORed, other keys ANDed.
				{[]string{"Key=name,Values=" + p + "/S", "Key=name,Values=" + p + "/db", "Key=tag-key,Values=env"}, []string{two, one}},
				{[]string{"Key=name,Values=" + p + "/", "Key=tag-value,Values=!prod"}, []string{three, two}},
			} {
				// The full table runs on the first CLI; the others (each
				// call a Python start) check a few words and the ORed keys.
				if i > 0 && !strings.HasPrefix(tc.filters[0], "Key=all,Values=one") && len(tc.filters) < 3 {
					continue
				}
				want := slices.Clone(tc.want)
				slices.Sort(want)
				if got := list(tc.filters...); !slices.Equal(got, want) {
					t.Errorf("list-secrets --filters %v = %v, want %v", tc.filters, got, want)
				}
			}

			c.fails(t, s, "ValidationException", "list-secrets", "--filters", "Key=colour,Values=x")
			// Debian's aws-cli 2.9 predates BatchGetSecretValue (2023).
			if _, stderr, code := c.run(t, s, "batch-get-secret-value"); code != 0 && strings.Contains(stderr, "Invalid choice") {
				t.Logf("%s has no batch-get-secret-value", c.name)
				return
			}
			batch := c.ok(t, s, "batch-get-secret-value", "--filters", "Key=all,Values=one "+p)
			if vals, _ := batch["SecretValues"].([]any); len(vals) != 1 || str(vals[0].(map[string]any), "SecretString") != "1" {
				t.Errorf("batch-get-secret-value by filter: %v", batch)
			}
			c.fails(t, s, "InvalidParameterException", "batch-get-secret-value", "--secret-id-list", one, "--filters", "Key=name,Values=x")
		})
	}
}
