package awsjson

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/server"
)

const (
	tokA = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
	tokB = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
	tokC = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"
)

var arnPattern = regexp.MustCompile(`^arn:aws:secretsmanager:us-east-1:123456789012:secret:(.+)-[A-Za-z0-9]{6}$`)

// wantAPIError asserts err is the SDK's typed error *E with a message
// containing msg.
func wantAPIError[E interface {
	*T
	error
	ErrorMessage() string
}, T any](t *testing.T, err error, msg string) {
	t.Helper()
	var typed E
	if !errors.As(err, &typed) {
		t.Fatalf("error %v (%T), want %T", err, err, typed)
	}
	if !strings.Contains(typed.ErrorMessage(), msg) {
		t.Fatalf("%T message %q, want it to contain %q", typed, typed.ErrorMessage(), msg)
	}
}

// wantCode asserts err is an API error with the given code, for the types
// the SDK has no struct for.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T), want an API error %s", err, err, code)
	}
	if ae.ErrorCode() != code {
		t.Fatalf("error code %q (%s), want %q", ae.ErrorCode(), ae.ErrorMessage(), code)
	}
}

func near(t *testing.T, what string, got *time.Time, want time.Time, within time.Duration) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s missing", what)
	}
	if d := got.Sub(want); d < -within || d > within {
		t.Fatalf("%s = %s, want within %s of %s", what, got, within, want)
	}
}

func TestSDKCreateAndGet(t *testing.T) {
	sm, _ := startAWS(t)
	ctx := context.Background()

	created, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String("app/db"), SecretString: aws.String(`{"password":"hunter2"}`), Description: aws.String("database"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if m := arnPattern.FindStringSubmatch(aws.ToString(created.ARN)); m == nil || m[1] != "app/db" {
		t.Fatalf("ARN %q", aws.ToString(created.ARN))
	}
	if aws.ToString(created.Name) != "app/db" || len(aws.ToString(created.VersionId)) != 36 {
		t.Fatalf("create: name %q version %q (the SDK's token is the version id)", aws.ToString(created.Name), aws.ToString(created.VersionId))
	}

	bin := []byte{0, 1, 2, 0xfe, 0xff}
	binCreated, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("app/cert"), SecretBinary: bin})
	if err != nil {
		t.Fatal(err)
	}

	for _, in := range []*secretsmanager.GetSecretValueInput{
		{SecretId: aws.String("app/db")},
		{SecretId: created.ARN, VersionStage: aws.String("AWSCURRENT")},
		{SecretId: aws.String("app/db"), VersionId: created.VersionId},
	} {
		got, err := sm.GetSecretValue(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(got.SecretString) != `{"password":"hunter2"}` || got.SecretBinary != nil ||
			aws.ToString(got.VersionId) != aws.ToString(created.VersionId) || aws.ToString(got.ARN) != aws.ToString(created.ARN) ||
			!slices.Equal(got.VersionStages, []string{"AWSCURRENT"}) {
			t.Fatalf("get %+v: %+v", in, got)
		}
		near(t, "CreatedDate", got.CreatedDate, time.Now(), 5*time.Second)
	}
	gotBin, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: binCreated.ARN})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotBin.SecretBinary, bin) || gotBin.SecretString != nil {
		t.Fatalf("binary value %v / %v", gotBin.SecretBinary, gotBin.SecretString)
	}

	// Retrying with the SDK's same token and value succeeds; a different
	// value under the same token, or a new create of the name, does not.
	again, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String("app/db"), SecretString: aws.String(`{"password":"hunter2"}`), Description: aws.String("database"),
		ClientRequestToken: created.VersionId,
	})
	if err != nil || aws.ToString(again.VersionId) != aws.ToString(created.VersionId) || aws.ToString(again.ARN) != aws.ToString(created.ARN) {
		t.Fatalf("idempotent create: %+v %v", again, err)
	}
	_, err = sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("app/db"), SecretString: aws.String("other")})
	wantAPIError[*types.ResourceExistsException](t, err, "The operation failed because the secret app/db already exists.")

	_, err = sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("nope")})
	wantAPIError[*types.ResourceNotFoundException](t, err, "")
	_, err = sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db"), VersionStage: aws.String("AWSPREVIOUS")})
	wantAPIError[*types.ResourceNotFoundException](t, err, "Secrets Manager can't find the specified secret value for staging label: AWSPREVIOUS")
	_, err = sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db"), VersionId: created.VersionId, VersionStage: aws.String("AWSPENDING")})
	wantAPIError[*types.InvalidRequestException](t, err, "You provided a VersionStage that is not associated to the provided VersionId.")
	_, err = sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("bad name!")})
	wantCode(t, err, server.TypeValidation)
	_, err = sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("both"), SecretString: aws.String("s"), SecretBinary: []byte("b")})
	wantAPIError[*types.InvalidParameterException](t, err, "both a binary secret value and a string secret value")
}

func TestSDKVersionsAndStages(t *testing.T) {
	sm, _ := startAWS(t)
	ctx := context.Background()
	start := time.Now()
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String("svc"), SecretString: aws.String("v1"), ClientRequestToken: aws.String(tokA),
		Tags: []types.Tag{{Key: aws.String("team"), Value: aws.String("core")}},
	}); err != nil {
		t.Fatal(err)
	}
	put, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("svc"), SecretString: aws.String("v2"), ClientRequestToken: aws.String(tokB)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(put.VersionId) != tokB || !slices.Equal(put.VersionStages, []string{"AWSCURRENT"}) {
		t.Fatalf("put: %+v", put)
	}
	// The same token and value again is a successful no-op; a new value is not.
	if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("svc"), SecretString: aws.String("v2"), ClientRequestToken: aws.String(tokB)}); err != nil {
		t.Fatalf("idempotent put: %v", err)
	}
	_, err = sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("svc"), SecretString: aws.String("v9"), ClientRequestToken: aws.String(tokB)})
	wantAPIError[*types.ResourceExistsException](t, err, "You can't use ClientRequestToken "+tokB+" because that value is already in use")

	pending, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId: aws.String("svc"), SecretString: aws.String("v3"), ClientRequestToken: aws.String(tokC), VersionStages: []string{"AWSPENDING"},
	})
	if err != nil || !slices.Equal(pending.VersionStages, []string{"AWSPENDING"}) {
		t.Fatalf("put pending: %+v %v", pending, err)
	}
	if got, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("svc"), VersionStage: aws.String("AWSPENDING")}); err != nil || aws.ToString(got.SecretString) != "v3" {
		t.Fatalf("get pending: %+v %v", got, err)
	}

	_, err = sm.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{
		SecretId: aws.String("svc"), VersionStage: aws.String("AWSCURRENT"), MoveToVersionId: aws.String(tokC),
	})
	wantAPIError[*types.InvalidParameterException](t, err, "The parameter RemoveFromVersionId can't be empty. Staging label AWSCURRENT is currently attached to version "+tokB)
	moved, err := sm.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{
		SecretId: aws.String("svc"), VersionStage: aws.String("AWSCURRENT"), MoveToVersionId: aws.String(tokC), RemoveFromVersionId: aws.String(tokB),
	})
	if err != nil || aws.ToString(moved.Name) != "svc" || !arnPattern.MatchString(aws.ToString(moved.ARN)) {
		t.Fatalf("move stage: %+v %v", moved, err)
	}

	desc, err := sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("svc")})
	if err != nil {
		t.Fatal(err)
	}
	wantStages := map[string][]string{tokB: {"AWSPREVIOUS"}, tokC: {"AWSCURRENT", "AWSPENDING"}}
	for id := range desc.VersionIdsToStages {
		slices.Sort(desc.VersionIdsToStages[id])
	}
	if !maps.EqualFunc(desc.VersionIdsToStages, wantStages, slices.Equal) {
		t.Fatalf("VersionIdsToStages %v, want %v (tokA is deprecated)", desc.VersionIdsToStages, wantStages)
	}
	near(t, "CreatedDate", desc.CreatedDate, start, 5*time.Second)
	near(t, "LastChangedDate", desc.LastChangedDate, time.Now(), 5*time.Second)
	if desc.DeletedDate != nil || desc.RotationEnabled != nil || desc.Description != nil {
		t.Fatalf("unset members present: deleted %v rotation %v description %v", desc.DeletedDate, desc.RotationEnabled, desc.Description)
	}
	if len(desc.Tags) != 1 || aws.ToString(desc.Tags[0].Key) != "team" || aws.ToString(desc.Tags[0].Value) != "core" {
		t.Fatalf("tags %+v", desc.Tags)
	}

	versions, err := sm.ListSecretVersionIds(ctx, &secretsmanager.ListSecretVersionIdsInput{SecretId: aws.String("svc")})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, v := range versions.Versions {
		ids = append(ids, aws.ToString(v.VersionId))
		near(t, "version CreatedDate", v.CreatedDate, time.Now(), 5*time.Second)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{tokB, tokC}) || aws.ToString(versions.Name) != "svc" {
		t.Fatalf("versions %v", ids)
	}
	all, err := sm.ListSecretVersionIds(ctx, &secretsmanager.ListSecretVersionIdsInput{SecretId: aws.String("svc"), IncludeDeprecated: aws.Bool(true)})
	if err != nil || len(all.Versions) != 3 {
		t.Fatalf("with deprecated: %d versions, %v", len(all.Versions), err)
	}

	// UpdateSecret: a description alone makes no version; a value does.
	upd, err := sm.UpdateSecret(ctx, &secretsmanager.UpdateSecretInput{SecretId: aws.String("svc"), Description: aws.String("the service")})
	if err != nil || upd.VersionId != nil {
		t.Fatalf("update description: %+v %v", upd, err)
	}
	upd, err = sm.UpdateSecret(ctx, &secretsmanager.UpdateSecretInput{SecretId: aws.String("svc"), SecretString: aws.String("v4")})
	if err != nil || len(aws.ToString(upd.VersionId)) != 36 {
		t.Fatalf("update value: %+v %v", upd, err)
	}
	got, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("svc")})
	if err != nil || aws.ToString(got.SecretString) != "v4" || aws.ToString(got.VersionId) != aws.ToString(upd.VersionId) {
		t.Fatalf("after update: %+v %v", got, err)
	}
	desc, err = sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("svc")})
	if err != nil || aws.ToString(desc.Description) != "the service" {
		t.Fatalf("description %q %v", aws.ToString(desc.Description), err)
	}
	// The promoted rotation version, superseded, keeps only AWSPREVIOUS,
	// as AWS leaves it.
	if !slices.Equal(desc.VersionIdsToStages[tokC], []string{"AWSPREVIOUS"}) {
		t.Fatalf("after update, %s has %v", tokC, desc.VersionIdsToStages[tokC])
	}
}

func TestSDKListSecrets(t *testing.T) {
	sm, _ := startAWS(t)
	ctx := context.Background()
	for i := range 5 {
		in := &secretsmanager.CreateSecretInput{Name: aws.String(fmt.Sprintf("prod/app%d", i)), SecretString: aws.String("x")}
		if i%2 == 0 {
			in.Tags = []types.Tag{{Key: aws.String("env"), Value: aws.String("prod")}}
		}
		if _, err := sm.CreateSecret(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("dev/app"), Description: aws.String("Development")}); err != nil {
		t.Fatal(err)
	}

	names := func(entries []types.SecretListEntry) []string {
		var out []string
		for _, e := range entries {
			out = append(out, aws.ToString(e.Name))
		}
		return out
	}
	var pages int
	var got []string
	p := secretsmanager.NewListSecretsPaginator(sm, &secretsmanager.ListSecretsInput{
		MaxResults: aws.Int32(2), SortBy: types.SortByTypeName,
		Filters: []types.Filter{{Key: types.FilterNameStringTypeName, Values: []string{"prod/"}}},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page.SecretList) > 2 {
			t.Fatalf("page of %d", len(page.SecretList))
		}
		for _, e := range page.SecretList {
			if len(e.SecretVersionsToStages) != 1 || !arnPattern.MatchString(aws.ToString(e.ARN)) {
				t.Fatalf("entry %+v", e)
			}
			near(t, "CreatedDate", e.CreatedDate, time.Now(), 5*time.Second)
		}
		got = append(got, names(page.SecretList)...)
	}
	if want := []string{"prod/app0", "prod/app1", "prod/app2", "prod/app3", "prod/app4"}; !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("paged %v in %d pages, want %v in 3", got, pages, want)
	}

	tagged, err := sm.ListSecrets(ctx, &secretsmanager.ListSecretsInput{
		Filters: []types.Filter{{Key: types.FilterNameStringTypeTagKey, Values: []string{"env"}}}, SortBy: types.SortByTypeName, SortOrder: types.SortOrderTypeDesc,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(tagged.SecretList); !slices.Equal(got, []string{"prod/app4", "prod/app2", "prod/app0"}) {
		t.Fatalf("tag-key filter, desc: %v", got)
	}
	described, err := sm.ListSecrets(ctx, &secretsmanager.ListSecretsInput{
		Filters: []types.Filter{{Key: types.FilterNameStringTypeDescription, Values: []string{"develop"}}},
	})
	if err != nil || !slices.Equal(names(described.SecretList), []string{"dev/app"}) || described.SecretList[0].SecretVersionsToStages != nil {
		t.Fatalf("description filter: %+v %v", described, err)
	}
	_, err = sm.ListSecrets(ctx, &secretsmanager.ListSecretsInput{NextToken: aws.String("garbage!")})
	wantAPIError[*types.InvalidNextTokenException](t, err, "")
	_, err = sm.ListSecrets(ctx, &secretsmanager.ListSecretsInput{MaxResults: aws.Int32(101)})
	wantCode(t, err, server.TypeValidation)
}

func TestSDKBatchGetSecretValue(t *testing.T) {
	sm, _ := startAWS(t)
	ctx := context.Background()
	for _, n := range []string{"batch/a", "batch/b"} {
		if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(n), SecretString: aws.String("value of " + n)}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := sm.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{SecretIdList: []string{"batch/a", "batch/missing", "batch/b"}})
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{}
	for _, v := range out.SecretValues {
		values[aws.ToString(v.Name)] = aws.ToString(v.SecretString)
		if !slices.Equal(v.VersionStages, []string{"AWSCURRENT"}) {
			t.Fatalf("stages %v", v.VersionStages)
		}
	}
	if !maps.Equal(values, map[string]string{"batch/a": "value of batch/a", "batch/b": "value of batch/b"}) {
		t.Fatalf("values %v", values)
	}
	if len(out.Errors) != 1 || aws.ToString(out.Errors[0].SecretId) != "batch/missing" ||
		aws.ToString(out.Errors[0].ErrorCode) != server.TypeResourceNotFound || aws.ToString(out.Errors[0].Message) == "" {
		t.Fatalf("errors %+v", out.Errors)
	}

	byFilter, err := sm.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{
		Filters: []types.Filter{{Key: types.FilterNameStringTypeName, Values: []string{"batch/"}}}, MaxResults: aws.Int32(1),
	})
	if err != nil || len(byFilter.SecretValues) != 1 || byFilter.NextToken == nil || len(byFilter.Errors) != 0 {
		t.Fatalf("by filter: %+v %v", byFilter, err)
	}
	_, err = sm.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{})
	wantAPIError[*types.InvalidParameterException](t, err, "You must specify either SecretIdList or Filters.")
}

func TestSDKTags(t *testing.T) {
	sm, _ := startAWS(t)
	ctx := context.Background()
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("tagged")}); err != nil {
		t.Fatal(err)
	}
	if _, err := sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: aws.String("tagged"), Tags: []types.Tag{
		{Key: aws.String("a"), Value: aws.String("1")}, {Key: aws.String("b"), Value: aws.String("2")}, {Key: aws.String("c"), Value: aws.String("")},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sm.UntagResource(ctx, &secretsmanager.UntagResourceInput{SecretId: aws.String("tagged"), TagKeys: []string{"b"}}); err != nil {
		t.Fatal(err)
	}
	desc, err := sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("tagged")})
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{}
	for _, tg := range desc.Tags {
		tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	if !maps.Equal(tags, map[string]string{"a": "1", "c": ""}) {
		t.Fatalf("tags %v", tags)
	}
	_, err = sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: aws.String("tagged"), Tags: []types.Tag{{Key: aws.String("aws:x"), Value: aws.String("1")}}})
	wantAPIError[*types.InvalidParameterException](t, err, "reserved")
	_, err = sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: aws.String("missing"), Tags: []types.Tag{{Key: aws.String("a"), Value: aws.String("1")}}})
	wantAPIError[*types.ResourceNotFoundException](t, err, "")
}

func TestSDKResourcePolicy(t *testing.T) {
	sm, _ := startAWS(t)
	ctx := context.Background()
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("p")}); err != nil {
		t.Fatal(err)
	}
	private := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/app"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`
	public := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`

	got, err := sm.GetResourcePolicy(ctx, &secretsmanager.GetResourcePolicyInput{SecretId: aws.String("p")})
	if err != nil || got.ResourcePolicy != nil || aws.ToString(got.Name) != "p" {
		t.Fatalf("no policy yet: %+v %v", got, err)
	}
	_, err = sm.PutResourcePolicy(ctx, &secretsmanager.PutResourcePolicyInput{SecretId: aws.String("p"), ResourcePolicy: aws.String(public), BlockPublicPolicy: aws.Bool(true)})
	wantAPIError[*types.PublicPolicyException](t, err, "broad access")
	_, err = sm.PutResourcePolicy(ctx, &secretsmanager.PutResourcePolicyInput{SecretId: aws.String("p"), ResourcePolicy: aws.String("{not json")})
	wantAPIError[*types.MalformedPolicyDocumentException](t, err, "malformed")
	put, err := sm.PutResourcePolicy(ctx, &secretsmanager.PutResourcePolicyInput{SecretId: aws.String("p"), ResourcePolicy: aws.String(private), BlockPublicPolicy: aws.Bool(true)})
	if err != nil || aws.ToString(put.Name) != "p" {
		t.Fatalf("put policy: %+v %v", put, err)
	}
	got, err = sm.GetResourcePolicy(ctx, &secretsmanager.GetResourcePolicyInput{SecretId: aws.String("p")})
	if err != nil || aws.ToString(got.ResourcePolicy) != private || aws.ToString(got.ARN) != aws.ToString(put.ARN) {
		t.Fatalf("get policy: %+v %v", got, err)
	}
	if _, err := sm.DeleteResourcePolicy(ctx, &secretsmanager.DeleteResourcePolicyInput{SecretId: aws.String("p")}); err != nil {
		t.Fatal(err)
	}
	if got, err := sm.GetResourcePolicy(ctx, &secretsmanager.GetResourcePolicyInput{SecretId: aws.String("p")}); err != nil || got.ResourcePolicy != nil {
		t.Fatalf("after delete: %+v %v", got, err)
	}

	ok, err := sm.ValidateResourcePolicy(ctx, &secretsmanager.ValidateResourcePolicyInput{ResourcePolicy: aws.String(private), SecretId: aws.String("p")})
	if err != nil || !ok.PolicyValidationPassed || len(ok.ValidationErrors) != 0 {
		t.Fatalf("validate private: %+v %v", ok, err)
	}
	bad, err := sm.ValidateResourcePolicy(ctx, &secretsmanager.ValidateResourcePolicyInput{ResourcePolicy: aws.String(public)})
	if err != nil || bad.PolicyValidationPassed || len(bad.ValidationErrors) == 0 ||
		aws.ToString(bad.ValidationErrors[0].CheckName) == "" || aws.ToString(bad.ValidationErrors[0].ErrorMessage) == "" {
		t.Fatalf("validate public: %+v %v", bad, err)
	}
}

func TestSDKGetRandomPassword(t *testing.T) {
	sm, _ := startAWS(t)
	ctx := context.Background()
	pw, err := sm.GetRandomPassword(ctx, &secretsmanager.GetRandomPasswordInput{PasswordLength: aws.Int64(40), ExcludePunctuation: aws.Bool(true), ExcludeCharacters: aws.String("abc")})
	if err != nil {
		t.Fatal(err)
	}
	if p := aws.ToString(pw.RandomPassword); len(p) != 40 || strings.ContainsAny(p, "abc!@#$%^&*()-_=+") {
		t.Fatalf("password %q", p)
	}
	def, err := sm.GetRandomPassword(ctx, &secretsmanager.GetRandomPasswordInput{})
	if err != nil || len(aws.ToString(def.RandomPassword)) != 32 {
		t.Fatalf("default password %q %v", aws.ToString(def.RandomPassword), err)
	}
	_, err = sm.GetRandomPassword(ctx, &secretsmanager.GetRandomPasswordInput{PasswordLength: aws.Int64(3)})
	wantAPIError[*types.InvalidParameterException](t, err, "")
	short, err := sm.GetRandomPassword(ctx, &secretsmanager.GetRandomPasswordInput{PasswordLength: aws.Int64(3), RequireEachIncludedType: aws.Bool(false)})
	if err != nil || len(aws.ToString(short.RandomPassword)) != 3 {
		t.Fatalf("RequireEachIncludedType=false is sent and honoured: %+v %v", short, err)
	}
}

func TestSDKDeleteAndRestore(t *testing.T) {
	sm, _ := startAWS(t)
	ctx := context.Background()
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("old"), SecretString: aws.String("v")}); err != nil {
		t.Fatal(err)
	}
	del, err := sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String("old"), RecoveryWindowInDays: aws.Int64(7)})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "DeletionDate", del.DeletionDate, time.Now().Add(7*24*time.Hour), time.Minute)

	_, err = sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("old")})
	wantAPIError[*types.InvalidRequestException](t, err, "")
	_, err = sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: aws.String("old"), Tags: []types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}})
	wantAPIError[*types.InvalidRequestException](t, err, "You can't perform this operation on the secret because it was marked for deletion.")
	_, err = sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("old")})
	wantAPIError[*types.InvalidRequestException](t, err, "already scheduled for deletion")
	desc, err := sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("old")})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "DeletedDate", desc.DeletedDate, time.Now(), 5*time.Second)
	if l, err := sm.ListSecrets(ctx, &secretsmanager.ListSecretsInput{}); err != nil || len(l.SecretList) != 0 {
		t.Fatalf("list hides deleted: %+v %v", l, err)
	}
	if l, err := sm.ListSecrets(ctx, &secretsmanager.ListSecretsInput{IncludePlannedDeletion: aws.Bool(true)}); err != nil || len(l.SecretList) != 1 || l.SecretList[0].DeletedDate == nil {
		t.Fatalf("list with planned deletion: %+v %v", l, err)
	}

	if _, err := sm.RestoreSecret(ctx, &secretsmanager.RestoreSecretInput{SecretId: aws.String("old")}); err != nil {
		t.Fatal(err)
	}
	if got, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("old")}); err != nil || aws.ToString(got.SecretString) != "v" {
		t.Fatalf("after restore: %+v %v", got, err)
	}

	_, err = sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String("old"), RecoveryWindowInDays: aws.Int64(7), ForceDeleteWithoutRecovery: aws.Bool(true)})
	wantAPIError[*types.InvalidParameterException](t, err, "ForceDeleteWithoutRecovery")
	_, err = sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String("old"), RecoveryWindowInDays: aws.Int64(0)})
	wantAPIError[*types.InvalidParameterException](t, err, "between 7 and 30")
	forced, err := sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String("old"), ForceDeleteWithoutRecovery: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "forced DeletionDate", forced.DeletionDate, time.Now(), 5*time.Second)
	_, err = sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("old")})
	wantAPIError[*types.ResourceNotFoundException](t, err, "")
	if _, err := sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String("never-existed"), ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
		t.Fatalf("force-deleting a missing secret succeeds on AWS: %v", err)
	}
}

func TestSDKRotateUnknownFunction(t *testing.T) {
	sm, _ := startAWS(t)
	ctx := context.Background()
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("r"), SecretString: aws.String("v")}); err != nil {
		t.Fatal(err)
	}
	// Rotation is supported; an unregistered function gets AWS's answer.
	_, err := sm.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: aws.String("r"), RotationLambdaARN: aws.String("arn:aws:lambda:us-east-1:123456789012:function:rot")})
	wantCode(t, err, server.TypeAccessDeniedException)
	// The refused RotateSecret configured nothing, so there is no
	// rotation to cancel: AWS's InvalidRequestException.
	_, err = sm.CancelRotateSecret(ctx, &secretsmanager.CancelRotateSecretInput{SecretId: aws.String("r")})
	wantAPIError[*types.InvalidRequestException](t, err, "doesn't already have a Lambda function ARN configured")
	_, err = sm.ReplicateSecretToRegions(ctx, &secretsmanager.ReplicateSecretToRegionsInput{SecretId: aws.String("r"), AddReplicaRegions: []types.ReplicaRegionType{{Region: aws.String("eu-west-1")}}})
}

// TestSDKReplication drives the replication operations through the SDK:
// an unpaired region is refused; a paired one gets a replica whose status
// DescribeSecret reports; removing it empties the list; a primary cannot
// be "stopped" as if it were a replica.
func TestSDKReplication(t *testing.T) {
	svc := newService(t)
	ts := startHandler(t, &Handler{Service: svc, Auth: allowAll{}, Logger: discardLogger()})
	sm := sdkClient(ts.URL)
	ctx := context.Background()
	_, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("rr"), SecretString: aws.String("v"),
		AddReplicaRegions: []types.ReplicaRegionType{{Region: aws.String("eu-west-1")}}})
	wantCode(t, err, server.TypeInvalidParameter)
	if err := svc.PairRegion(ctx, &storagev1.RegionPeer{Region: "eu-west-1", PublicKey: make([]byte, 32), Addresses: []string{"127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	created, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("rr"), SecretString: aws.String("v"),
		AddReplicaRegions: []types.ReplicaRegionType{{Region: aws.String("eu-west-1"), KmsKeyId: aws.String("alias/eu")}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(created.ReplicationStatus) != 1 || aws.ToString(created.ReplicationStatus[0].Region) != "eu-west-1" ||
		created.ReplicationStatus[0].Status != types.StatusTypeInProgress || aws.ToString(created.ReplicationStatus[0].KmsKeyId) != "alias/eu" {
		t.Fatalf("CreateSecret ReplicationStatus = %+v", created.ReplicationStatus)
	}
	d, err := sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("rr")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(d.PrimaryRegion) != "us-east-1" || len(d.ReplicationStatus) != 1 {
		t.Fatalf("DescribeSecret PrimaryRegion %q ReplicationStatus %+v", aws.ToString(d.PrimaryRegion), d.ReplicationStatus)
	}
	_, err = sm.StopReplicationToReplica(ctx, &secretsmanager.StopReplicationToReplicaInput{SecretId: aws.String("rr")})
	wantCode(t, err, server.TypeInvalidRequest)
	_, err = sm.RemoveRegionsFromReplication(ctx, &secretsmanager.RemoveRegionsFromReplicationInput{SecretId: aws.String("rr"), RemoveReplicaRegions: []string{"ap-south-1"}})
	wantCode(t, err, server.TypeInvalidParameter)
	removed, err := sm.RemoveRegionsFromReplication(ctx, &secretsmanager.RemoveRegionsFromReplicationInput{SecretId: aws.String("rr"), RemoveReplicaRegions: []string{"eu-west-1"}})
	if err != nil || len(removed.ReplicationStatus) != 0 || aws.ToString(removed.ARN) != aws.ToString(created.ARN) {
		t.Fatalf("RemoveRegionsFromReplication: %+v, %v", removed, err)
	}
	rep, err := sm.ReplicateSecretToRegions(ctx, &secretsmanager.ReplicateSecretToRegionsInput{SecretId: aws.String("rr"),
		AddReplicaRegions: []types.ReplicaRegionType{{Region: aws.String("eu-west-1")}}})
	if err != nil || len(rep.ReplicationStatus) != 1 || aws.ToString(rep.ReplicationStatus[0].KmsKeyId) != "alias/coffer/default" {
		t.Fatalf("ReplicateSecretToRegions: %+v, %v", rep, err)
	}
}
