package e2e

import (
	"bytes"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/wait"
)

// arnPattern matches the ARN of the secret called name in the test region:
// the name, a dash and six random characters.
func arnPattern(name string) *regexp.Regexp {
	return regexp.MustCompile(`^arn:aws:secretsmanager:` + testRegion + `:` + testAccount + `:secret:` + regexp.QuoteMeta(name) + `-[A-Za-z0-9]{6}$`)
}

// stagesOf returns DescribeSecret's VersionIdsToStages with each label list sorted.
func stagesOf(t *testing.T, sm cofferv1.SecretsManagerServiceClient, id string) map[string][]string {
	t.Helper()
	d := must(sm.DescribeSecret(t.Context(), &cofferv1.DescribeSecretRequest{SecretId: id}))(t)
	out := map[string][]string{}
	for v, s := range d.GetVersionIdsToStages() {
		out[v] = slices.Sorted(slices.Values(s.GetStages()))
	}
	return out
}

func wantStages(t *testing.T, sm cofferv1.SecretsManagerServiceClient, id string, want map[string][]string) {
	t.Helper()
	for _, s := range want {
		slices.Sort(s)
	}
	if got := stagesOf(t, sm, id); !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("VersionIdsToStages of %s = %v, want %v", id, got, want)
	}
}

// wantValue checks what GetSecretValue returns for a version selected by id
// or stage.
func wantValue(t *testing.T, sm cofferv1.SecretsManagerServiceClient, req *cofferv1.GetSecretValueRequest, wantVersion, wantString string) {
	t.Helper()
	got := must(sm.GetSecretValue(t.Context(), req))(t)
	if got.GetVersionId() != wantVersion || got.SecretString == nil || got.GetSecretString() != wantString {
		t.Errorf("GetSecretValue(%v) = version %s value %q, want version %s value %q",
			req, got.GetVersionId(), got.GetSecretString(), wantVersion, wantString)
	}
}

func tagMap(tags []*cofferv1.Tag) map[string]string {
	m := map[string]string{}
	for _, tg := range tags {
		m[tg.GetKey()] = tg.GetValue()
	}
	return m
}

func names(list []*cofferv1.SecretListEntry) []string {
	var out []string
	for _, e := range list {
		out = append(out, e.GetName())
	}
	return out
}

// TestGRPCLifecycle drives every implemented operation through the gRPC API
// of a real node and checks what a caller sees.
func TestGRPCLifecycle(t *testing.T) {
	t.Parallel()
	n := startNode(t, t.TempDir())
	sm := n.sm

	t.Run("CreateSecret and idempotent retries", func(t *testing.T) {
		ctx := t.Context()
		name := "e2e/life/create"
		tok := newToken(t)
		req := &cofferv1.CreateSecretRequest{
			Name: name, ClientRequestToken: tok, Description: "first",
			SecretString: ptr("value-one"), Tags: []*cofferv1.Tag{{Key: "env", Value: "prod"}},
		}
		first := must(sm.CreateSecret(ctx, req))(t)
		if !arnPattern(name).MatchString(first.GetArn()) {
			t.Errorf("ARN %q does not match %v", first.GetArn(), arnPattern(name))
		}
		if first.GetName() != name || first.GetVersionId() != tok {
			t.Errorf("CreateSecret = name %q version %q, want %q %q", first.GetName(), first.GetVersionId(), name, tok)
		}

		again := must(sm.CreateSecret(ctx, req))(t)
		if !proto.Equal(first, again) {
			t.Errorf("retry with the same token and value = %v, want the first answer %v", again, first)
		}

		other := proto.CloneOf(req)
		other.SecretString = ptr("value-two")
		_, err := sm.CreateSecret(ctx, other)
		wantType(t, err, "ResourceExistsException")

		other = proto.CloneOf(req)
		other.ClientRequestToken = newToken(t)
		_, err = sm.CreateSecret(ctx, other)
		wantType(t, err, "ResourceExistsException")

		// The retries created nothing: one version, the first value.
		wantStages(t, sm, name, map[string][]string{tok: {"AWSCURRENT"}})
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: name}, tok, "value-one")
	})

	t.Run("GetSecretValue of string and binary secrets", func(t *testing.T) {
		ctx := t.Context()
		str := must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{
			Name: "e2e/life/get-string", ClientRequestToken: newToken(t), SecretString: ptr(`{"user":"app","password":"pä$$ 🔑"}`),
		}))(t)
		partialARN := str.GetArn()[:len(str.GetArn())-len("-XXXXXX")]
		for _, id := range []string{str.GetName(), str.GetArn(), partialARN} {
			got := must(sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: id}))(t)
			if got.GetArn() != str.GetArn() || got.GetName() != str.GetName() || got.GetVersionId() != str.GetVersionId() {
				t.Errorf("GetSecretValue(%s) = %s %s %s, want %s %s %s", id, got.GetArn(), got.GetName(), got.GetVersionId(), str.GetArn(), str.GetName(), str.GetVersionId())
			}
			if got.SecretString == nil || got.GetSecretString() != `{"user":"app","password":"pä$$ 🔑"}` || got.SecretBinary != nil {
				t.Errorf("GetSecretValue(%s) value = %q / %x, want the string only", id, got.GetSecretString(), got.GetSecretBinary())
			}
			if !slices.Equal(got.GetVersionStages(), []string{"AWSCURRENT"}) || got.GetCreatedDate() == nil {
				t.Errorf("GetSecretValue(%s) stages %v created %v, want [AWSCURRENT] and a date", id, got.GetVersionStages(), got.GetCreatedDate())
			}
		}

		raw := []byte{0x00, 0xff, 0x10, 'b', 'i', 'n', 0x00, 0x80}
		bin := must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{
			Name: "e2e/life/get-binary", ClientRequestToken: newToken(t), SecretBinary: raw,
		}))(t)
		got := must(sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: bin.GetName()}))(t)
		if !bytes.Equal(got.GetSecretBinary(), raw) || got.SecretString != nil {
			t.Errorf("binary secret = %x / %v, want %x and no string", got.GetSecretBinary(), got.SecretString, raw)
		}
	})

	t.Run("the first version is AWSCURRENT whatever its stages", func(t *testing.T) {
		ctx := t.Context()
		name := "e2e/life/no-value"
		created := must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: newToken(t)}))(t)
		if created.GetVersionId() != "" {
			t.Errorf("CreateSecret without a value made version %q", created.GetVersionId())
		}
		_, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: name})
		wantType(t, err, "ResourceNotFoundException")
		tok := newToken(t)
		put := must(sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, ClientRequestToken: tok, SecretString: ptr("first"), VersionStages: []string{"AWSPENDING"}}))(t)
		if got := slices.Sorted(slices.Values(put.GetVersionStages())); !slices.Equal(got, []string{"AWSCURRENT", "AWSPENDING"}) {
			t.Errorf("first PutSecretValue with [AWSPENDING] gave stages %v, want AWSCURRENT added", got)
		}
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: name}, tok, "first")
	})

	// One secret walks through versions and labels; the subtests below build
	// on each other in order.
	const vs = "e2e/life/versions"
	tok1, tok2, tok3, tok4 := newToken(t), newToken(t), newToken(t), newToken(t)

	t.Run("PutSecretValue moves AWSCURRENT and AWSPREVIOUS", func(t *testing.T) {
		ctx := t.Context()
		must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: vs, ClientRequestToken: tok1, SecretString: ptr("v1"),
			Tags: []*cofferv1.Tag{{Key: "env", Value: "prod"}, {Key: "team", Value: "db"}}, Description: "versions"}))(t)

		put := must(sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: vs, ClientRequestToken: tok2, SecretString: ptr("v2")}))(t)
		if put.GetVersionId() != tok2 || !slices.Equal(put.GetVersionStages(), []string{"AWSCURRENT"}) || !arnPattern(vs).MatchString(put.GetArn()) {
			t.Errorf("PutSecretValue = %v, want version %s with [AWSCURRENT]", put, tok2)
		}
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: vs}, tok2, "v2")
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: vs, VersionStage: "AWSPREVIOUS"}, tok1, "v1")
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: vs, VersionId: tok1}, tok1, "v1")

		pending := must(sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: vs, ClientRequestToken: tok3,
			SecretString: ptr("v3"), VersionStages: []string{"AWSPENDING"}}))(t)
		if !slices.Equal(pending.GetVersionStages(), []string{"AWSPENDING"}) {
			t.Errorf("PutSecretValue with [AWSPENDING] gave stages %v", pending.GetVersionStages())
		}
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: vs}, tok2, "v2")
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: vs, VersionStage: "AWSPENDING"}, tok3, "v3")
		wantStages(t, sm, vs, map[string][]string{tok1: {"AWSPREVIOUS"}, tok2: {"AWSCURRENT"}, tok3: {"AWSPENDING"}})

		retry := must(sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: vs, ClientRequestToken: tok2, SecretString: ptr("v2")}))(t)
		if retry.GetVersionId() != tok2 || !slices.Equal(retry.GetVersionStages(), []string{"AWSCURRENT"}) {
			t.Errorf("retried PutSecretValue = %v, want version %s with [AWSCURRENT]", retry, tok2)
		}
		_, err := sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: vs, ClientRequestToken: tok2, SecretString: ptr("not v2")})
		wantType(t, err, "ResourceExistsException")
		wantStages(t, sm, vs, map[string][]string{tok1: {"AWSPREVIOUS"}, tok2: {"AWSCURRENT"}, tok3: {"AWSPENDING"}})
	})

	t.Run("UpdateSecret changes the description and the value", func(t *testing.T) {
		ctx := t.Context()
		upd := must(sm.UpdateSecret(ctx, &cofferv1.UpdateSecretRequest{SecretId: vs, Description: ptr("versions, updated")}))(t)
		if upd.GetVersionId() != "" || upd.GetName() != vs {
			t.Errorf("UpdateSecret of the description = %v, want no version id", upd)
		}
		if d := must(sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: vs}))(t); d.GetDescription() != "versions, updated" {
			t.Errorf("description = %q after UpdateSecret", d.GetDescription())
		}

		upd = must(sm.UpdateSecret(ctx, &cofferv1.UpdateSecretRequest{SecretId: vs, ClientRequestToken: tok4, SecretString: ptr("v4")}))(t)
		if upd.GetVersionId() != tok4 {
			t.Errorf("UpdateSecret with a value = version %q, want %s", upd.GetVersionId(), tok4)
		}
		again := must(sm.UpdateSecret(ctx, &cofferv1.UpdateSecretRequest{SecretId: vs, ClientRequestToken: tok4, SecretString: ptr("v4")}))(t)
		if again.GetVersionId() != tok4 {
			t.Errorf("retried UpdateSecret = version %q, want %s", again.GetVersionId(), tok4)
		}
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: vs}, tok4, "v4")
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: vs, VersionStage: "AWSPREVIOUS"}, tok2, "v2")
		// v1 lost its last label, so it is deprecated and leaves the map.
		wantStages(t, sm, vs, map[string][]string{tok2: {"AWSPREVIOUS"}, tok3: {"AWSPENDING"}, tok4: {"AWSCURRENT"}})
	})

	t.Run("UpdateSecretVersionStage", func(t *testing.T) {
		ctx := t.Context()
		_, err := sm.UpdateSecretVersionStage(ctx, &cofferv1.UpdateSecretVersionStageRequest{
			SecretId: vs, VersionStage: "AWSCURRENT", MoveToVersionId: tok3})
		wantType(t, err, "InvalidParameterException")
		wantStages(t, sm, vs, map[string][]string{tok2: {"AWSPREVIOUS"}, tok3: {"AWSPENDING"}, tok4: {"AWSCURRENT"}})

		resp := must(sm.UpdateSecretVersionStage(ctx, &cofferv1.UpdateSecretVersionStageRequest{
			SecretId: vs, VersionStage: "AWSCURRENT", MoveToVersionId: tok3, RemoveFromVersionId: tok4}))(t)
		if resp.GetName() != vs || !arnPattern(vs).MatchString(resp.GetArn()) {
			t.Errorf("UpdateSecretVersionStage = %v", resp)
		}
		wantStages(t, sm, vs, map[string][]string{tok3: {"AWSCURRENT", "AWSPENDING"}, tok4: {"AWSPREVIOUS"}})
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: vs}, tok3, "v3")

		must(sm.UpdateSecretVersionStage(ctx, &cofferv1.UpdateSecretVersionStageRequest{
			SecretId: vs, VersionStage: "AWSPENDING", RemoveFromVersionId: tok3}))(t)
		must(sm.UpdateSecretVersionStage(ctx, &cofferv1.UpdateSecretVersionStageRequest{
			SecretId: vs, VersionStage: "blue", MoveToVersionId: tok1}))(t)
		wantStages(t, sm, vs, map[string][]string{tok1: {"blue"}, tok3: {"AWSCURRENT"}, tok4: {"AWSPREVIOUS"}})
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: vs, VersionStage: "blue"}, tok1, "v1")
	})

	t.Run("DescribeSecret", func(t *testing.T) {
		d := must(sm.DescribeSecret(t.Context(), &cofferv1.DescribeSecretRequest{SecretId: vs}))(t)
		if !arnPattern(vs).MatchString(d.GetArn()) || d.GetName() != vs || d.GetDescription() != "versions, updated" {
			t.Errorf("DescribeSecret = arn %q name %q description %q", d.GetArn(), d.GetName(), d.GetDescription())
		}
		if got := tagMap(d.GetTags()); !maps.Equal(got, map[string]string{"env": "prod", "team": "db"}) {
			t.Errorf("tags = %v", got)
		}
		if d.GetCreatedDate() == nil || d.GetLastChangedDate() == nil || d.GetLastChangedDate().AsTime().Before(d.GetCreatedDate().AsTime()) {
			t.Errorf("CreatedDate %v LastChangedDate %v: want both, changed not before created", d.GetCreatedDate(), d.GetLastChangedDate())
		}
		if since := time.Since(d.GetCreatedDate().AsTime()); since < 0 || since > time.Hour {
			t.Errorf("CreatedDate %v is not about now", d.GetCreatedDate().AsTime())
		}
		if d.GetDeletedDate() != nil || d.GetRotationEnabled() || d.GetPrimaryRegion() != testRegion {
			t.Errorf("DeletedDate %v RotationEnabled %v PrimaryRegion %q", d.GetDeletedDate(), d.GetRotationEnabled(), d.GetPrimaryRegion())
		}
		if len(d.GetVersionIdsToStages()) != 3 {
			t.Errorf("VersionIdsToStages = %v, want the 3 labeled versions", d.GetVersionIdsToStages())
		}
	})

	t.Run("ListSecretVersionIds hides deprecated versions", func(t *testing.T) {
		ctx := t.Context()
		ids := func(resp *cofferv1.ListSecretVersionIdsResponse) []string {
			var out []string
			for _, v := range resp.GetVersions() {
				out = append(out, v.GetVersionId())
				if v.GetCreatedDate() == nil || len(v.GetKmsKeyIds()) == 0 {
					t.Errorf("version %s has created %v, KMS keys %v", v.GetVersionId(), v.GetCreatedDate(), v.GetKmsKeyIds())
				}
			}
			return out
		}
		live := must(sm.ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: vs}))(t)
		if got, want := ids(live), []string{tok4, tok3, tok1}; !slices.Equal(got, want) {
			t.Errorf("versions = %v, want newest first without deprecated %s: %v", got, tok2, want)
		}
		if live.GetName() != vs || !arnPattern(vs).MatchString(live.GetArn()) {
			t.Errorf("ListSecretVersionIds names %q %q", live.GetName(), live.GetArn())
		}
		all := must(sm.ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: vs, IncludeDeprecated: true}))(t)
		if got, want := ids(all), []string{tok4, tok3, tok2, tok1}; !slices.Equal(got, want) {
			t.Errorf("versions with deprecated = %v, want %v", got, want)
		}
		for _, v := range all.GetVersions() {
			if v.GetVersionId() == tok2 && len(v.GetVersionStages()) != 0 {
				t.Errorf("deprecated version %s has stages %v", tok2, v.GetVersionStages())
			}
		}
	})

	// Four secrets for listing and batch reads, created in this order.
	const lp = "e2e/list/"
	listed := []string{lp + "alpha", lp + "beta", lp + "gamma", lp + "delta"}
	listTags := map[string][]*cofferv1.Tag{
		lp + "alpha": {{Key: "env", Value: "prod"}},
		lp + "beta":  {{Key: "env", Value: "dev"}},
		lp + "gamma": {{Key: "team", Value: "x"}},
	}
	for _, name := range listed {
		must(sm.CreateSecret(t.Context(), &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: newToken(t),
			SecretString: ptr("value of " + name), Tags: listTags[name], Description: "listed " + name}))(t)
	}

	t.Run("ListSecrets filters and sorts", func(t *testing.T) {
		list := func(req *cofferv1.ListSecretsRequest) []string {
			t.Helper()
			resp := must(sm.ListSecrets(t.Context(), req))(t)
			if resp.GetNextToken() != "" {
				t.Errorf("ListSecrets(%v) has a next token with fewer than 100 secrets", req)
			}
			return names(resp.GetSecretList())
		}
		byName := &cofferv1.Filter{Key: "name", Values: []string{lp}}
		tests := []struct {
			name string
			req  *cofferv1.ListSecretsRequest
			want []string
		}{
			{"name prefix", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{byName}}, listed},
			{"name and tag-key", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{byName, {Key: "tag-key", Values: []string{"env"}}}},
				[]string{lp + "alpha", lp + "beta"}},
			{"negated name", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{{Key: "name", Values: []string{lp, "!" + lp + "b"}}}},
				[]string{lp + "alpha", lp + "gamma", lp + "delta"}},
			{"negated tag-key", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{byName, {Key: "tag-key", Values: []string{"!env"}}}},
				[]string{lp + "gamma", lp + "delta"}},
			{"all", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{{Key: "all", Values: []string{"PROD"}}, byName}},
				[]string{lp + "alpha"}},
			{"tag-value", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{{Key: "tag-value", Values: []string{"pro"}}, byName}},
				[]string{lp + "alpha"}},
			{"name descending", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{byName}, SortBy: "name", SortOrder: "desc"},
				[]string{lp + "gamma", lp + "delta", lp + "beta", lp + "alpha"}},
			{"name ascending", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{byName}, SortBy: "name"},
				[]string{lp + "alpha", lp + "beta", lp + "delta", lp + "gamma"}},
		}
		for _, tt := range tests {
			if got := list(tt.req); !slices.Equal(got, tt.want) {
				t.Errorf("%s: ListSecrets = %v, want %v", tt.name, got, tt.want)
			}
		}
		resp := must(sm.ListSecrets(t.Context(), &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{{Key: "name", Values: []string{lp + "alpha"}}}}))(t)
		if len(resp.GetSecretList()) != 1 {
			t.Fatalf("ListSecrets of alpha = %v", names(resp.GetSecretList()))
		}
		e := resp.GetSecretList()[0]
		if !arnPattern(lp+"alpha").MatchString(e.GetArn()) || e.GetDescription() != "listed "+lp+"alpha" ||
			len(e.GetSecretVersionsToStages()) != 1 || e.GetCreatedDate() == nil || !maps.Equal(tagMap(e.GetTags()), map[string]string{"env": "prod"}) {
			t.Errorf("list entry = %v", e)
		}
	})

	t.Run("ListSecrets pages visit every secret once, in order", func(t *testing.T) {
		for _, order := range []struct{ by, order string }{{"", ""}, {"name", "desc"}, {"created-date", "desc"}, {"last-changed-date", "asc"}} {
			var visited []*cofferv1.SecretListEntry
			token := ""
			for pages := 0; ; pages++ {
				if pages > len(listed) {
					t.Fatalf("sort %v: more pages than secrets; visited %v", order, names(visited))
				}
				resp := must(sm.ListSecrets(t.Context(), &cofferv1.ListSecretsRequest{
					Filters: []*cofferv1.Filter{{Key: "name", Values: []string{lp}}}, MaxResults: ptr(int32(1)),
					NextToken: token, SortBy: order.by, SortOrder: order.order,
				}))(t)
				if len(resp.GetSecretList()) > 1 {
					t.Errorf("sort %v: page of %d secrets with max_results 1", order, len(resp.GetSecretList()))
				}
				visited = append(visited, resp.GetSecretList()...)
				if token = resp.GetNextToken(); token == "" {
					break
				}
			}
			if got := slices.Sorted(slices.Values(names(visited))); !slices.Equal(got, slices.Sorted(slices.Values(listed))) {
				t.Errorf("sort %v: visited %v, want each of %v once", order, names(visited), listed)
			}
			// Each page follows the one before in the sort order; names
			// break ties between equal dates (which have millisecond
			// resolution), in the same direction.
			key := func(e *cofferv1.SecretListEntry) string {
				switch order.by {
				case "name":
					return e.GetName()
				case "last-changed-date":
					return fmt.Sprintf("%020d %s", e.GetLastChangedDate().AsTime().UnixNano(), e.GetName())
				}
				// Fixed-width nanoseconds: RFC 3339 strings trim trailing
				// zeros and do not sort in time order.
				return fmt.Sprintf("%020d %s", e.GetCreatedDate().AsTime().UnixNano(), e.GetName())
			}
			for i := 1; i < len(visited); i++ {
				a, b := key(visited[i-1]), key(visited[i])
				if order.order == "desc" {
					a, b = b, a
				}
				if a > b {
					t.Errorf("sort %v: %s listed before %s", order, visited[i-1].GetName(), visited[i].GetName())
				}
			}
		}
	})

	t.Run("BatchGetSecretValue", func(t *testing.T) {
		ctx := t.Context()
		missing := lp + "missing"
		resp := must(sm.BatchGetSecretValue(ctx, &cofferv1.BatchGetSecretValueRequest{
			SecretIdList: []string{lp + "alpha", missing, lp + "beta"}}))(t)
		got := map[string]string{}
		for _, v := range resp.GetSecretValues() {
			got[v.GetName()] = v.GetSecretString()
			if v.GetVersionId() == "" || !slices.Equal(v.GetVersionStages(), []string{"AWSCURRENT"}) || !arnPattern(v.GetName()).MatchString(v.GetArn()) {
				t.Errorf("batch entry %v", v)
			}
		}
		want := map[string]string{lp + "alpha": "value of " + lp + "alpha", lp + "beta": "value of " + lp + "beta"}
		if !maps.Equal(got, want) {
			t.Errorf("batch values = %v, want %v", got, want)
		}
		if len(resp.GetErrors()) != 1 || resp.GetErrors()[0].GetSecretId() != missing ||
			resp.GetErrors()[0].GetErrorCode() != "ResourceNotFoundException" || resp.GetErrors()[0].GetMessage() == "" {
			t.Errorf("batch errors = %v, want one ResourceNotFoundException for %s", resp.GetErrors(), missing)
		}

		resp = must(sm.BatchGetSecretValue(ctx, &cofferv1.BatchGetSecretValueRequest{Filters: []*cofferv1.Filter{
			{Key: "name", Values: []string{lp}}, {Key: "tag-key", Values: []string{"env"}}}}))(t)
		got = map[string]string{}
		for _, v := range resp.GetSecretValues() {
			got[v.GetName()] = v.GetSecretString()
		}
		if !maps.Equal(got, want) || len(resp.GetErrors()) != 0 {
			t.Errorf("batch by filters = %v, errors %v; want %v", got, resp.GetErrors(), want)
		}
	})

	t.Run("TagResource and UntagResource", func(t *testing.T) {
		ctx := t.Context()
		id := lp + "gamma"
		must(sm.TagResource(ctx, &cofferv1.TagResourceRequest{SecretId: id, Tags: []*cofferv1.Tag{{Key: "team", Value: "y"}, {Key: "owner", Value: "alice"}}}))(t)
		d := must(sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: id}))(t)
		if got := tagMap(d.GetTags()); !maps.Equal(got, map[string]string{"team": "y", "owner": "alice"}) {
			t.Errorf("tags after TagResource = %v", got)
		}
		must(sm.UntagResource(ctx, &cofferv1.UntagResourceRequest{SecretId: id, TagKeys: []string{"team", "nope"}}))(t)
		d = must(sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: id}))(t)
		if got := tagMap(d.GetTags()); !maps.Equal(got, map[string]string{"owner": "alice"}) {
			t.Errorf("tags after UntagResource = %v", got)
		}
		_, err := sm.TagResource(ctx, &cofferv1.TagResourceRequest{SecretId: lp + "missing", Tags: []*cofferv1.Tag{{Key: "a", Value: "b"}}})
		wantType(t, err, "ResourceNotFoundException")
	})

	t.Run("resource policies", func(t *testing.T) {
		ctx := t.Context()
		id := lp + "delta"
		const doc = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/app"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`
		const public = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`

		got := must(sm.GetResourcePolicy(ctx, &cofferv1.GetResourcePolicyRequest{SecretId: id}))(t)
		if got.ResourcePolicy != nil || got.GetName() != id || !arnPattern(id).MatchString(got.GetArn()) {
			t.Errorf("GetResourcePolicy before any = %v, want no policy", got)
		}
		must(sm.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: id, ResourcePolicy: doc}))(t)
		if got := must(sm.GetResourcePolicy(ctx, &cofferv1.GetResourcePolicyRequest{SecretId: id}))(t); got.ResourcePolicy == nil || got.GetResourcePolicy() != doc {
			t.Errorf("GetResourcePolicy = %v, want %s", got.ResourcePolicy, doc)
		}

		_, err := sm.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: id, ResourcePolicy: `{"Version": "2012-10-17", "Statement": [`})
		wantType(t, err, "MalformedPolicyDocumentException")
		_, err = sm.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: id, ResourcePolicy: public, BlockPublicPolicy: ptr(true)})
		wantType(t, err, "PublicPolicyException")
		if got := must(sm.GetResourcePolicy(ctx, &cofferv1.GetResourcePolicyRequest{SecretId: id}))(t); got.GetResourcePolicy() != doc {
			t.Errorf("refused puts changed the policy to %q", got.GetResourcePolicy())
		}

		ok := must(sm.ValidateResourcePolicy(ctx, &cofferv1.ValidateResourcePolicyRequest{SecretId: id, ResourcePolicy: doc}))(t)
		if !ok.GetPolicyValidationPassed() || len(ok.GetValidationErrors()) != 0 {
			t.Errorf("ValidateResourcePolicy(valid) = %v", ok)
		}
		bad := must(sm.ValidateResourcePolicy(ctx, &cofferv1.ValidateResourcePolicyRequest{ResourcePolicy: `{"Version":"2012-10-17"`}))(t)
		if bad.GetPolicyValidationPassed() || len(bad.GetValidationErrors()) == 0 || bad.GetValidationErrors()[0].GetCheckName() != "SYNTAX_CHECK" {
			t.Errorf("ValidateResourcePolicy(malformed) = %v, want a SYNTAX_CHECK failure", bad)
		}
		pub := must(sm.ValidateResourcePolicy(ctx, &cofferv1.ValidateResourcePolicyRequest{ResourcePolicy: public}))(t)
		if pub.GetPolicyValidationPassed() || len(pub.GetValidationErrors()) != 1 || pub.GetValidationErrors()[0].GetCheckName() != "PUBLIC_ACCESS_CHECK" {
			t.Errorf("ValidateResourcePolicy(public) = %v, want one PUBLIC_ACCESS_CHECK failure", pub)
		}

		del := must(sm.DeleteResourcePolicy(ctx, &cofferv1.DeleteResourcePolicyRequest{SecretId: id}))(t)
		if del.GetName() != id {
			t.Errorf("DeleteResourcePolicy = %v", del)
		}
		if got := must(sm.GetResourcePolicy(ctx, &cofferv1.GetResourcePolicyRequest{SecretId: id}))(t); got.ResourcePolicy != nil {
			t.Errorf("policy after delete = %q", got.GetResourcePolicy())
		}
		must(sm.DeleteResourcePolicy(ctx, &cofferv1.DeleteResourcePolicyRequest{SecretId: id}))(t)
	})

	t.Run("GetRandomPassword", func(t *testing.T) {
		const punctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
		def := must(sm.GetRandomPassword(t.Context(), &cofferv1.GetRandomPasswordRequest{}))(t).GetRandomPassword()
		if len(def) != 32 {
			t.Errorf("default password %q has length %d, want 32", def, len(def))
		}
		for _, class := range []string{"abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", punctuation} {
			if !strings.ContainsAny(def, class) {
				t.Errorf("default password %q has no character of %q", def, class)
			}
		}
		for range 5 {
			pw := must(sm.GetRandomPassword(t.Context(), &cofferv1.GetRandomPasswordRequest{
				PasswordLength: ptr(int64(40)), ExcludeCharacters: "abcXYZ012", ExcludePunctuation: true,
			}))(t).GetRandomPassword()
			if len(pw) != 40 || strings.ContainsAny(pw, "abcXYZ012"+punctuation+" ") {
				t.Errorf("password %q: want 40 characters without abcXYZ012, punctuation or space", pw)
			}
		}
	})

	t.Run("DeleteSecret with a recovery window, then RestoreSecret", func(t *testing.T) {
		ctx := t.Context()
		name := "e2e/life/deleted"
		created := must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: newToken(t), SecretString: ptr("keep me")}))(t)
		before := time.Now()
		del := must(sm.DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: name, RecoveryWindowInDays: ptr(int64(7))}))(t)
		after := time.Now()
		if del.GetArn() != created.GetArn() || del.GetName() != name {
			t.Errorf("DeleteSecret = %v", del)
		}
		lo, hi := before.Add(7*24*time.Hour-time.Minute), after.Add(7*24*time.Hour+time.Minute)
		if dd := del.GetDeletionDate().AsTime(); dd.Before(lo) || dd.After(hi) {
			t.Errorf("DeletionDate %v, want about now + 7 days (%v to %v)", dd, lo, hi)
		}

		_, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: name})
		wantType(t, err, "InvalidRequestException")
		_, err = sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: newToken(t), SecretString: ptr("again")})
		wantType(t, err, "InvalidRequestException")
		_, err = sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, ClientRequestToken: newToken(t), SecretString: ptr("again")})
		wantType(t, err, "InvalidRequestException")
		_, err = sm.TagResource(ctx, &cofferv1.TagResourceRequest{SecretId: name, Tags: []*cofferv1.Tag{{Key: "a", Value: "b"}}})
		wantType(t, err, "InvalidRequestException")
		_, err = sm.DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: name})
		wantType(t, err, "InvalidRequestException")

		filter := []*cofferv1.Filter{{Key: "name", Values: []string{name}}}
		if got := must(sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{Filters: filter}))(t); len(got.GetSecretList()) != 0 {
			t.Errorf("ListSecrets shows the deleted secret: %v", names(got.GetSecretList()))
		}
		got := must(sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{Filters: filter, IncludePlannedDeletion: true}))(t)
		if len(got.GetSecretList()) != 1 || got.GetSecretList()[0].GetDeletedDate() == nil {
			t.Errorf("ListSecrets with include_planned_deletion = %v, want the secret with a DeletedDate", got.GetSecretList())
		}
		if d := must(sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: name}))(t); d.GetDeletedDate() == nil {
			t.Errorf("DescribeSecret of a deleted secret has no DeletedDate")
		}

		res := must(sm.RestoreSecret(ctx, &cofferv1.RestoreSecretRequest{SecretId: name}))(t)
		if res.GetArn() != created.GetArn() || res.GetName() != name {
			t.Errorf("RestoreSecret = %v", res)
		}
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: name}, created.GetVersionId(), "keep me")
		if d := must(sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: name}))(t); d.GetDeletedDate() != nil {
			t.Errorf("DeletedDate %v after RestoreSecret", d.GetDeletedDate())
		}
		if got := must(sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{Filters: filter}))(t); len(got.GetSecretList()) != 1 {
			t.Errorf("ListSecrets after restore = %v", names(got.GetSecretList()))
		}
	})

	t.Run("force delete", func(t *testing.T) {
		ctx := t.Context()
		name := "e2e/life/forced"
		created := must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: newToken(t), SecretString: ptr("gone")}))(t)
		_, err := sm.DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: name, ForceDeleteWithoutRecovery: ptr(true), RecoveryWindowInDays: ptr(int64(7))})
		wantType(t, err, "InvalidParameterException")

		del := must(sm.DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: name, ForceDeleteWithoutRecovery: ptr(true)}))(t)
		if del.GetArn() != created.GetArn() || del.GetDeletionDate() == nil {
			t.Errorf("forced DeleteSecret = %v", del)
		}
		_, err = sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: name})
		wantType(t, err, "ResourceNotFoundException")
		_, err = sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: created.GetArn()})
		wantType(t, err, "ResourceNotFoundException")

		again := must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: newToken(t), SecretString: ptr("new")}))(t)
		if again.GetArn() == created.GetArn() || !arnPattern(name).MatchString(again.GetArn()) {
			t.Errorf("recreated secret has ARN %q; the deleted one had %q, want a new suffix", again.GetArn(), created.GetArn())
		}
		_, err = sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: created.GetArn()})
		wantType(t, err, "ResourceNotFoundException")
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: again.GetArn()}, again.GetVersionId(), "new")

		// A secret already scheduled for deletion (by default for 30 days)
		// can still be forced out.
		before := time.Now()
		scheduled := must(sm.DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: name}))(t)
		if dd, want := scheduled.GetDeletionDate().AsTime(), before.Add(30*24*time.Hour); dd.Before(want.Add(-time.Minute)) || dd.After(time.Now().Add(30*24*time.Hour+time.Minute)) {
			t.Errorf("DeletionDate %v with the default window, want about %v", dd, want)
		}
		must(sm.DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: name, ForceDeleteWithoutRecovery: ptr(true)}))(t)
		_, err = sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: name})
		wantType(t, err, "ResourceNotFoundException")

		ghost := must(sm.DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: "e2e/life/never-existed", ForceDeleteWithoutRecovery: ptr(true)}))(t)
		if ghost.GetName() != "e2e/life/never-existed" {
			t.Errorf("forced delete of a missing secret = %v", ghost)
		}
	})

	t.Run("rotation needs a function", func(t *testing.T) {
		_, err := sm.RotateSecret(t.Context(), &cofferv1.RotateSecretRequest{SecretId: vs, ClientRequestToken: newToken(t)})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "No Lambda rotation function ARN is associated with this secret.") {
			t.Errorf("RotateSecret: %v, want FailedPrecondition (InvalidRequestException)", err)
		}
		if _, err = sm.CancelRotateSecret(t.Context(), &cofferv1.CancelRotateSecretRequest{SecretId: vs}); err != nil {
			t.Errorf("CancelRotateSecret: %v", err)
		}
	})

	t.Run("concurrent writers", func(t *testing.T) {
		ctx := t.Context()
		const writers = 12
		run := func(call func(i int) error) []error {
			errs := make([]error, writers)
			var wg sync.WaitGroup
			for i := range writers {
				wg.Go(func() { errs[i] = call(i) })
			}
			wg.Wait()
			return errs
		}

		tokens := func() []string {
			toks := make([]string, writers)
			for i := range toks {
				toks[i] = newToken(t)
			}
			return toks
		}
		toks := tokens()

		// Racing creates of one name with different tokens: one wins.
		name := "e2e/life/race-create"
		errs := run(func(i int) error {
			_, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: toks[i], SecretString: ptr(fmt.Sprint("racer ", i))})
			return err
		})
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
			} else {
				wantType(t, err, "ResourceExistsException")
			}
		}
		if won != 1 {
			t.Errorf("%d of %d racing CreateSecret calls succeeded, want exactly 1", won, writers)
		}

		// Racing retries of one create (same token, same value) all get the
		// same answer, and make one secret with one version.
		name, tok := "e2e/life/race-retry", newToken(t)
		answers := make([]*cofferv1.CreateSecretResponse, writers)
		errs = run(func(i int) error {
			var err error
			answers[i], err = sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: tok, SecretString: ptr("same")})
			return err
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("retry %d of an idempotent CreateSecret: %v", i, err)
			} else if !proto.Equal(answers[i], answers[0]) {
				t.Errorf("retry %d answered %v, retry 0 %v", i, answers[i], answers[0])
			}
		}
		wantStages(t, sm, name, map[string][]string{tok: {"AWSCURRENT"}})
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: answers[0].GetArn()}, tok, "same")

		// Racing puts with different tokens each add a version; the labels
		// end up on two of them.
		name = "e2e/life/race-put"
		first := must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: newToken(t), SecretString: ptr("v0")}))(t)
		toks = tokens()
		errs = run(func(i int) error {
			_, err := sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, ClientRequestToken: toks[i], SecretString: ptr(fmt.Sprint("v", i+1))})
			return err
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("racing PutSecretValue %d: %v", i, err)
			}
		}
		all := must(sm.ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: name, IncludeDeprecated: true}))(t)
		var got []string
		for _, v := range all.GetVersions() {
			got = append(got, v.GetVersionId())
		}
		want := append(slices.Clone(toks), first.GetVersionId())
		if slices.Sort(got); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
			t.Errorf("versions after racing puts = %v, want %v", got, want)
		}
		stages := stagesOf(t, sm, name)
		labels := map[string]int{}
		for _, ss := range stages {
			for _, s := range ss {
				labels[s]++
			}
		}
		if len(stages) != 2 || labels["AWSCURRENT"] != 1 || labels["AWSPREVIOUS"] != 1 {
			t.Errorf("labels after racing puts = %v, want AWSCURRENT and AWSPREVIOUS on two versions", stages)
		}
	})

	t.Run("LastAccessedDate", func(t *testing.T) {
		ctx := t.Context()
		name := "e2e/life/accessed"
		created := must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: newToken(t), SecretString: ptr("read me")}))(t)
		if d := must(sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: name}))(t); d.GetLastAccessedDate() != nil {
			t.Errorf("LastAccessedDate %v before any read", d.GetLastAccessedDate())
		}
		dayBefore := utcMidnight(time.Now())
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: name}, created.GetVersionId(), "read me")
		wait.Until(t, 30*time.Second, func() error {
			d, err := sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: name})
			if err != nil {
				return err
			}
			got := d.GetLastAccessedDate()
			if got == nil {
				return fmt.Errorf("no LastAccessedDate yet")
			}
			if day := got.AsTime(); !day.Equal(dayBefore) && !day.Equal(utcMidnight(time.Now())) {
				return fmt.Errorf("LastAccessedDate %v, want today's UTC midnight %v", day, dayBefore)
			}
			return nil
		})
		versions := must(sm.ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: name}))(t)
		if len(versions.GetVersions()) != 1 || versions.GetVersions()[0].GetLastAccessedDate() == nil {
			t.Errorf("version list %v: want the read version with a LastAccessedDate", versions.GetVersions())
		}
	})
}
