package compat

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

var (
	arnPattern  = regexp.MustCompile(`^arn:aws:secretsmanager:us-east-1:123456789012:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$`)
	uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

func str(v map[string]any, key string) string {
	s, _ := v[key].(string)
	return s
}

func strs(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			s, _ := x.(string)
			out = append(out, s)
		}
	}
	return out
}

// TestAWSCLILifecycle drives the real aws CLIs (the one on PATH and
// Debian's awscli) through the lifecycle an AWS user knows.
func TestAWSCLILifecycle(t *testing.T) {
	s := startServer(t)
	for i, c := range awsCLIs(t) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			name := fmt.Sprintf("compat/cli%d/db", i)

			created := c.ok(t, s, "create-secret", "--name", name, "--secret-string", "v1", "--description", "primary db",
				"--tags", "Key=env,Value=prod", "Key=team,Value=payments")
			arn := str(created, "ARN")
			if !arnPattern.MatchString(arn) || str(created, "Name") != name || !uuidPattern.MatchString(str(created, "VersionId")) {
				t.Fatalf("create-secret answered %v", created)
			}
			v1 := str(created, "VersionId")

			got := c.ok(t, s, "get-secret-value", "--secret-id", name)
			if str(got, "SecretString") != "v1" || str(got, "ARN") != arn || str(got, "VersionId") != v1 ||
				!slices.Equal(strs(got["VersionStages"]), []string{"AWSCURRENT"}) || got["CreatedDate"] == nil {
				t.Fatalf("get-secret-value answered %v", got)
			}
			// By ARN, and by partial ARN (without the suffix).
			if got := c.ok(t, s, "get-secret-value", "--secret-id", arn); str(got, "SecretString") != "v1" {
				t.Fatalf("get by ARN: %v", got)
			}
			if got := c.ok(t, s, "get-secret-value", "--secret-id", arn[:len(arn)-7]); str(got, "SecretString") != "v1" {
				t.Fatalf("get by partial ARN: %v", got)
			}

			put := c.ok(t, s, "put-secret-value", "--secret-id", name, "--secret-string", "v2")
			v2 := str(put, "VersionId")
			if !slices.Equal(strs(put["VersionStages"]), []string{"AWSCURRENT"}) {
				t.Fatalf("put-secret-value answered %v", put)
			}
			if got := c.ok(t, s, "get-secret-value", "--secret-id", name, "--version-stage", "AWSPREVIOUS"); str(got, "SecretString") != "v1" || str(got, "VersionId") != v1 {
				t.Fatalf("AWSPREVIOUS: %v", got)
			}

			// A pending version leaves AWSCURRENT alone until the label moves.
			token := "cccccccc-1111-4222-8333-" + fmt.Sprintf("%012d", i)
			c.ok(t, s, "put-secret-value", "--secret-id", name, "--secret-string", "v3", "--version-stages", "AWSPENDING", "--client-request-token", token)
			if got := c.ok(t, s, "get-secret-value", "--secret-id", name); str(got, "SecretString") != "v2" {
				t.Fatalf("current after a pending put: %v", got)
			}
			c.fails(t, s, "InvalidParameterException", "update-secret-version-stage", "--secret-id", name, "--version-stage", "AWSCURRENT", "--move-to-version-id", token)
			c.ok(t, s, "update-secret-version-stage", "--secret-id", name, "--version-stage", "AWSCURRENT", "--move-to-version-id", token, "--remove-from-version-id", v2)
			desc := c.ok(t, s, "describe-secret", "--secret-id", name)
			stages, _ := desc["VersionIdsToStages"].(map[string]any)
			if !slices.Contains(strs(stages[token]), "AWSCURRENT") || !slices.Contains(strs(stages[token]), "AWSPENDING") ||
				!slices.Equal(strs(stages[v2]), []string{"AWSPREVIOUS"}) || stages[v1] != nil {
				t.Fatalf("VersionIdsToStages after the move: %v", stages)
			}
			if str(desc, "Description") != "primary db" || desc["CreatedDate"] == nil || desc["LastChangedDate"] == nil || len(desc["Tags"].([]any)) != 2 {
				t.Fatalf("describe-secret answered %v", desc)
			}
			versions := c.ok(t, s, "list-secret-version-ids", "--secret-id", name, "--include-deprecated")
			if n := len(versions["Versions"].([]any)); n != 3 {
				t.Fatalf("list-secret-version-ids: %d versions, want 3: %v", n, versions)
			}

			// Lists with filters.
			list := c.ok(t, s, "list-secrets", "--filters", fmt.Sprintf("Key=name,Values=compat/cli%d/", i), "Key=tag-key,Values=team")
			if l := list["SecretList"].([]any); len(l) != 1 || str(l[0].(map[string]any), "ARN") != arn {
				t.Fatalf("list-secrets with filters: %v", list)
			}
			if l, _ := c.ok(t, s, "list-secrets", "--filters", "Key=tag-value,Values=!payments", fmt.Sprintf("Key=name,Values=compat/cli%d/", i))["SecretList"].([]any); len(l) != 0 {
				t.Fatalf("negated tag-value filter still lists the secret: %v", l)
			}

			// Tags.
			c.ok(t, s, "tag-resource", "--secret-id", name, "--tags", "Key=tier,Value=gold")
			c.ok(t, s, "untag-resource", "--secret-id", name, "--tag-keys", "env")
			tags := map[string]string{}
			for _, x := range c.ok(t, s, "describe-secret", "--secret-id", name)["Tags"].([]any) {
				m := x.(map[string]any)
				tags[str(m, "Key")] = str(m, "Value")
			}
			if tags["tier"] != "gold" || tags["team"] != "payments" || tags["env"] != "" {
				t.Fatalf("tags after tag/untag: %v", tags)
			}

			// Random password.
			pw := str(c.ok(t, s, "get-random-password", "--password-length", "24", "--exclude-punctuation"), "RandomPassword")
			if len(pw) != 24 || strings.IndexFunc(pw, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) >= 0 {
				t.Fatalf("random password %q", pw)
			}

			// Resource policy.
			policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`
			c.ok(t, s, "put-resource-policy", "--secret-id", name, "--resource-policy", policy)
			if got := c.ok(t, s, "get-resource-policy", "--secret-id", name); str(got, "ResourcePolicy") != policy || str(got, "ARN") != arn {
				t.Fatalf("get-resource-policy: %v", got)
			}
			if got := c.ok(t, s, "validate-resource-policy", "--resource-policy", policy); got["PolicyValidationPassed"] != true {
				t.Fatalf("validate-resource-policy: %v", got)
			}
			c.fails(t, s, "MalformedPolicyDocumentException", "put-resource-policy", "--secret-id", name, "--resource-policy", "{not json")
			c.ok(t, s, "delete-resource-policy", "--secret-id", name)

			// Deletion with a recovery window, restore, force delete.
			del := c.ok(t, s, "delete-secret", "--secret-id", name, "--recovery-window-in-days", "7")
			if del["DeletionDate"] == nil || str(del, "ARN") != arn {
				t.Fatalf("delete-secret: %v", del)
			}
			c.fails(t, s, "InvalidRequestException", "get-secret-value", "--secret-id", name)
			c.fails(t, s, "InvalidRequestException", "create-secret", "--name", name, "--secret-string", "again")
			if d := c.ok(t, s, "describe-secret", "--secret-id", name); d["DeletedDate"] == nil {
				t.Fatalf("describe of a deleted secret lacks DeletedDate: %v", d)
			}
			c.ok(t, s, "restore-secret", "--secret-id", name)
			if got := c.ok(t, s, "get-secret-value", "--secret-id", name); str(got, "SecretString") != "v3" {
				t.Fatalf("after restore: %v", got)
			}
			c.ok(t, s, "delete-secret", "--secret-id", name, "--force-delete-without-recovery")
			c.fails(t, s, "ResourceNotFoundException", "get-secret-value", "--secret-id", name)
			c.ok(t, s, "delete-secret", "--secret-id", name, "--force-delete-without-recovery") // AWS: idempotent

			// Errors by type.
			c.fails(t, s, "ResourceNotFoundException", "describe-secret", "--secret-id", "compat/never-created")
			c.fails(t, s, "InvalidParameterException", "delete-secret", "--secret-id", "compat/x", "--recovery-window-in-days", "3")
		})
	}
}
