package e2e

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// describeJSON is the part of "coffer secrets describe -o json" the tests read.
type describeJSON struct {
	ARN                string `json:"arn"`
	Name               string `json:"name"`
	Description        string `json:"description"`
	CreatedDate        string `json:"createdDate"`
	LastChangedDate    string `json:"lastChangedDate"`
	DeletedDate        string `json:"deletedDate"`
	PrimaryRegion      string `json:"primaryRegion"`
	Tags               []struct{ Key, Value string }
	VersionIdsToStages map[string]struct {
		Stages []string `json:"stages"`
	} `json:"versionIdsToStages"`
}

func (d describeJSON) tags() map[string]string {
	m := map[string]string{}
	for _, tg := range d.Tags {
		m[tg.Key] = tg.Value
	}
	return m
}

func (d describeJSON) stages() map[string][]string {
	m := map[string][]string{}
	for id, s := range d.VersionIdsToStages {
		m[id] = slices.Sorted(slices.Values(s.Stages))
	}
	return m
}

// field returns the value of a FIELD/VALUE row of coffer's table output.
func field(t *testing.T, table, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s+(.*\S)\s*$`).FindStringSubmatch(table)
	if m == nil {
		t.Errorf("no %s row in:\n%s", name, table)
		return ""
	}
	return m[1]
}

// TestCLI runs the coffer binary against a real node: each command's output,
// and the exit statuses scripts rely on.
func TestCLI(t *testing.T) {
	t.Parallel()
	n := startNode(t, t.TempDir())

	// ok runs coffer and fails the test unless it exits 0.
	ok := func(t *testing.T, args ...string) string {
		t.Helper()
		out, errOut, code := n.cli(t, args...)
		if code != 0 {
			t.Fatalf("coffer %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	// fails runs coffer and checks its exit status and error type.
	fails := func(t *testing.T, wantCode int, wantStderr string, args ...string) {
		t.Helper()
		out, errOut, code := n.cli(t, args...)
		if code != wantCode || !strings.Contains(errOut, wantStderr) {
			t.Errorf("coffer %s: exit %d, stderr %q; want exit %d and %q\nstdout: %s", strings.Join(args, " "), code, errOut, wantCode, wantStderr, out)
		}
	}
	describe := func(t *testing.T, id string) describeJSON {
		t.Helper()
		var d describeJSON
		if out := ok(t, "secrets", "describe", id, "-o", "json"); json.Unmarshal([]byte(out), &d) != nil {
			t.Fatalf("describe -o json printed invalid JSON:\n%s", out)
		}
		return d
	}
	getValue := func(t *testing.T, args ...string) string {
		t.Helper()
		return ok(t, append([]string{"secrets", "get", "--value-only"}, args...)...)
	}

	const name = "e2e/cli/db"
	const v1 = `{"user":"app","password":"s3cr3t with spaces"}`
	var arn, ver1 string

	t.Run("create and get", func(t *testing.T) {
		out := ok(t, "secrets", "create", name, "--value", v1, "--description", "cli db", "--tag", "env=prod", "--tag", "team=db")
		arn, ver1 = field(t, out, "ARN"), field(t, out, "VersionId")
		if !arnPattern(name).MatchString(arn) || field(t, out, "Name") != name || len(ver1) != 36 {
			t.Fatalf("create printed:\n%s", out)
		}
		if strings.Contains(out, "s3cr3t") {
			t.Errorf("create echoed the value:\n%s", out)
		}
		if got := getValue(t, name); got != v1+"\n" {
			t.Errorf("get --value-only = %q, want %q", got, v1+"\n")
		}
		if got := getValue(t, arn); got != v1+"\n" {
			t.Errorf("get --value-only by ARN = %q", got)
		}
		table := ok(t, "secrets", "get", name)
		if field(t, table, "SecretString") != v1 || field(t, table, "VersionStages") != "AWSCURRENT" || field(t, table, "ARN") != arn {
			t.Errorf("get printed:\n%s", table)
		}
		fails(t, 4, "ResourceExistsException", "secrets", "create", name, "--value", "again")

		valueFile := filepath.Join(t.TempDir(), "value.bin")
		raw := []byte{0x00, 0x01, 0xfe, 0xff, '\n'}
		if err := os.WriteFile(valueFile, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		ok(t, "secrets", "create", "e2e/cli/binary", "--binary-file", valueFile)
		if got := getValue(t, "e2e/cli/binary"); got != string(raw) {
			t.Errorf("binary get --value-only = %x, want %x", got, raw)
		}
	})
	if arn == "" {
		t.FailNow()
	}

	var ver2, ver3 string
	t.Run("put, label, versions", func(t *testing.T) {
		out := ok(t, "secrets", "put", name, "--value", "v2")
		ver2 = field(t, out, "VersionId")
		if field(t, out, "VersionStages") != "AWSCURRENT" {
			t.Errorf("put printed:\n%s", out)
		}
		if got := getValue(t, name); got != "v2\n" {
			t.Errorf("value after put = %q", got)
		}
		if got := getValue(t, name, "--stage", "AWSPREVIOUS"); got != v1+"\n" {
			t.Errorf("AWSPREVIOUS after put = %q", got)
		}

		ver3 = newToken(t)
		out = ok(t, "secrets", "put", name, "--value", "v3", "--stage", "AWSPENDING", "--token", ver3)
		if field(t, out, "VersionId") != ver3 || field(t, out, "VersionStages") != "AWSPENDING" {
			t.Errorf("put --stage AWSPENDING printed:\n%s", out)
		}
		if got := getValue(t, name); got != "v2\n" {
			t.Errorf("AWSPENDING put changed the current value to %q", got)
		}

		fails(t, 5, "InvalidParameterException", "secrets", "label", name, "AWSCURRENT", "--move-to", ver3)
		ok(t, "secrets", "label", name, "AWSCURRENT", "--move-to", ver3, "--remove-from", ver2)
		if got := getValue(t, name); got != "v3\n" {
			t.Errorf("value after moving AWSCURRENT = %q", got)
		}
		if got := getValue(t, name, "--version-id", ver2); got != "v2\n" {
			t.Errorf("value of %s = %q", ver2, got)
		}

		table := ok(t, "secrets", "versions", name)
		rows := strings.Split(strings.TrimSpace(table), "\n")
		if len(rows) != 3 || !strings.HasPrefix(rows[0], "VERSION ID") {
			t.Fatalf("versions printed:\n%s", table)
		}
		wantRows := map[string]string{ver3: "AWSCURRENT,AWSPENDING", ver2: "AWSPREVIOUS"}
		for _, row := range rows[1:] {
			f := strings.Fields(row)
			if len(f) < 2 || wantRows[f[0]] != strings.Join(slices.Sorted(slices.Values(strings.Split(f[1], ","))), ",") {
				t.Errorf("versions row %q; want one of %v", row, wantRows)
			}
		}
		var all struct {
			Versions []struct {
				VersionID     string   `json:"versionId"`
				VersionStages []string `json:"versionStages"`
			} `json:"versions"`
		}
		if err := json.Unmarshal([]byte(ok(t, "secrets", "versions", name, "--include-deprecated", "-o", "json")), &all); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, v := range all.Versions {
			ids = append(ids, v.VersionID)
		}
		if want := []string{ver3, ver2, ver1}; !slices.Equal(ids, want) {
			t.Errorf("versions --include-deprecated = %v, want %v", ids, want)
		}
	})

	t.Run("describe and update", func(t *testing.T) {
		d := describe(t, name)
		if d.ARN != arn || d.Name != name || d.Description != "cli db" || d.CreatedDate == "" || d.LastChangedDate == "" || d.PrimaryRegion != "" {
			t.Errorf("describe = %+v", d)
		}
		if !maps.Equal(d.tags(), map[string]string{"env": "prod", "team": "db"}) {
			t.Errorf("tags = %v", d.tags())
		}
		want := map[string][]string{ver3: {"AWSCURRENT", "AWSPENDING"}, ver2: {"AWSPREVIOUS"}}
		if !maps.EqualFunc(d.stages(), want, slices.Equal) {
			t.Errorf("versionIdsToStages = %v, want %v", d.stages(), want)
		}
		table := ok(t, "secrets", "describe", name)
		if field(t, table, "ARN") != arn || !strings.Contains(table, ver3+": AWS") || strings.Contains(table, "SecretString") {
			t.Errorf("describe printed:\n%s", table)
		}

		ok(t, "secrets", "update", name, "--description", "updated by cli")
		if d := describe(t, name); d.Description != "updated by cli" {
			t.Errorf("description after update = %q", d.Description)
		}
		fails(t, 2, "nothing to update", "secrets", "update", name)
	})

	t.Run("list", func(t *testing.T) {
		ok(t, "secrets", "create", "e2e/cli/other", "--value", "x", "--tag", "env=dev")
		ok(t, "secrets", "create", "e2e/cliother", "--value", "x")
		var list struct {
			SecretList []struct {
				Name string `json:"name"`
				ARN  string `json:"arn"`
			} `json:"secretList"`
		}
		out := ok(t, "secrets", "list", "--filter", "name=e2e/cli/", "--sort-by", "name", "--page-size", "1", "-o", "json")
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("list -o json: %v\n%s", err, out)
		}
		var got []string
		for _, s := range list.SecretList {
			got = append(got, s.Name)
		}
		if want := []string{"e2e/cli/binary", name, "e2e/cli/other"}; !slices.Equal(got, want) {
			t.Errorf("list --filter name=e2e/cli/ = %v, want %v", got, want)
		}

		table := ok(t, "secrets", "list", "--filter", "name=e2e/cli/", "--filter", "tag-key=env", "--sort-order", "desc", "--sort-by", "name")
		rows := strings.Split(strings.TrimSpace(table), "\n")
		if len(rows) != 3 || !strings.HasPrefix(rows[0], "NAME") || !strings.HasPrefix(rows[1], "e2e/cli/other ") ||
			!strings.HasPrefix(rows[2], name+" ") || !strings.Contains(rows[2], arn) {
			t.Errorf("list table:\n%s", table)
		}
	})

	t.Run("tag and untag", func(t *testing.T) {
		if out := ok(t, "secrets", "tag", name, "owner=alice", "env=staging"); out != "" {
			t.Errorf("tag printed %q, want nothing", out)
		}
		if got := describe(t, name).tags(); !maps.Equal(got, map[string]string{"env": "staging", "team": "db", "owner": "alice"}) {
			t.Errorf("tags after tag = %v", got)
		}
		ok(t, "secrets", "untag", name, "team", "owner")
		if got := describe(t, name).tags(); !maps.Equal(got, map[string]string{"env": "staging"}) {
			t.Errorf("tags after untag = %v", got)
		}
	})

	t.Run("policy", func(t *testing.T) {
		const doc = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/app"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`
		const public = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`
		if got := field(t, ok(t, "secrets", "policy", "get", name), "ResourcePolicy"); got != "(none)" {
			t.Errorf("policy before put = %q", got)
		}
		file := filepath.Join(t.TempDir(), "policy.json")
		if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		ok(t, "secrets", "policy", "put", name, "--file", file)
		var got struct {
			ResourcePolicy string `json:"resourcePolicy"`
			ARN            string `json:"arn"`
		}
		if err := json.Unmarshal([]byte(ok(t, "secrets", "policy", "get", name, "-o", "json")), &got); err != nil {
			t.Fatal(err)
		}
		if got.ResourcePolicy != doc || got.ARN != arn {
			t.Errorf("policy get = %+v, want %s", got, doc)
		}
		if out := ok(t, "secrets", "policy", "validate", "--policy", doc); field(t, out, "PolicyValidationPassed") != "true" {
			t.Errorf("validate of a good policy printed:\n%s", out)
		}
		out, _, code := n.cli(t, "secrets", "policy", "validate", name, "--policy", public)
		if code != 5 || field(t, out, "PolicyValidationPassed") != "false" || !strings.Contains(out, "PUBLIC_ACCESS_CHECK") {
			t.Errorf("validate of a public policy: exit %d, printed:\n%s", code, out)
		}
		fails(t, 5, "PublicPolicyException", "secrets", "policy", "put", name, "--policy", public, "--block-public-policy")
		fails(t, 5, "MalformedPolicyDocumentException", "secrets", "policy", "put", name, "--policy", `{"Version":`)
		ok(t, "secrets", "policy", "delete", name)
		if got := field(t, ok(t, "secrets", "policy", "get", name), "ResourcePolicy"); got != "(none)" {
			t.Errorf("policy after delete = %q", got)
		}
	})

	t.Run("random-password", func(t *testing.T) {
		out := ok(t, "secrets", "random-password", "--length", "24", "--exclude-characters", "xyz")
		pw, found := strings.CutSuffix(out, "\n")
		if !found || len(pw) != 24 || strings.ContainsAny(pw, "xyz\n") {
			t.Errorf("random-password --length 24 printed %q", out)
		}
	})

	t.Run("delete and restore", func(t *testing.T) {
		out := ok(t, "secrets", "delete", name, "--recovery-window-days", "7")
		if field(t, out, "DeletionDate") == "" || field(t, out, "ARN") != arn {
			t.Errorf("delete printed:\n%s", out)
		}
		fails(t, 5, "InvalidRequestException", "secrets", "get", name)
		if d := describe(t, name); d.DeletedDate == "" {
			t.Errorf("describe of a deleted secret has no deletedDate")
		}
		if out := ok(t, "secrets", "list", "--filter", "name="+name, "--include-deleted"); !strings.Contains(out, arn) {
			t.Errorf("list --include-deleted:\n%s", out)
		}
		ok(t, "secrets", "restore", name)
		if got := getValue(t, name); got != "v3\n" {
			t.Errorf("value after restore = %q", got)
		}

		ok(t, "secrets", "delete", name, "--force")
		fails(t, 3, "ResourceNotFoundException", "secrets", "describe", name)
		fails(t, 3, "ResourceNotFoundException", "secrets", "get", name)
		ok(t, "secrets", "delete", name, "--force") // a forced delete of a missing secret succeeds
	})

	t.Run("exit statuses", func(t *testing.T) {
		fails(t, 3, "coffer: ResourceNotFoundException: ", "secrets", "get", "e2e/cli/missing")
		fails(t, 3, "ResourceNotFoundException", "secrets", "put", "e2e/cli/missing", "--value", "x")
		fails(t, 4, "coffer: ResourceExistsException: ", "secrets", "create", "e2e/cli/other", "--value", "x")
		fails(t, 2, "", "secrets", "get", "e2e/cli/other", "--no-such-flag")
		fails(t, 2, "", "secrets", "create")
		fails(t, 2, "", "secrets", "frobnicate")
		fails(t, 2, "", "secrets", "delete", "e2e/cli/other", "--force", "--recovery-window-days", "7")
		fails(t, 5, "coffer: ValidationException: ", "secrets", "create", "e2e/cli/bad name", "--value", "x")
		fails(t, 5, "ValidationException", "secrets", "create", "e2e/cli:bad", "--value", "x")
		fails(t, 5, "ValidationException", "secrets", "list", "--filter", "colour=red")

		// Nothing listens on port 1 (tcpmux, unused in practice), so the
		// connection is refused at once.
		_, errOut, code := runCLI(t, "--endpoint", "127.0.0.1:1", "secrets", "get", "e2e/cli/other")
		if code != 6 {
			t.Errorf("against a closed port: exit %d, stderr %q; want 6", code, errOut)
		}
	})
}
