package e2e

import (
	"bytes"
	"maps"
	"regexp"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
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
// of a real node and checks what a caller sees. The groups of subtests run
// in order on the one node.
func TestGRPCLifecycle(t *testing.T) {
	t.Parallel()
	n := startNode(t, t.TempDir())
	sm := n.sm
	testCreateAndRead(t, sm)
	testVersionsAndLabels(t, sm)
	testListingTagsAndPolicies(t, sm)
	testPasswordsAndDeletion(t, sm)
	testConcurrencyAndAccess(t, sm)
}

// testCreateAndRead: creating a secret, idempotent retries, reading it.
func testCreateAndRead(t *testing.T, sm cofferv1.SecretsManagerServiceClient) {
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
}
