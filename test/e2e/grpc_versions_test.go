package e2e

import (
	"maps"
	"slices"
	"testing"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// versionsSecret is the secret that walks through versions and labels;
// the rotation subtest uses it afterwards.
const versionsSecret = "e2e/life/versions"

// testVersionsAndLabels: one secret walks through versions and labels;
// the subtests build on each other in order.
func testVersionsAndLabels(t *testing.T, sm cofferv1.SecretsManagerServiceClient) {
	tok1, tok2, tok3, tok4 := newToken(t), newToken(t), newToken(t), newToken(t)

	t.Run("PutSecretValue moves AWSCURRENT and AWSPREVIOUS", func(t *testing.T) {
		ctx := t.Context()
		must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: versionsSecret, ClientRequestToken: tok1, SecretString: ptr("v1"),
			Tags: []*cofferv1.Tag{{Key: "env", Value: "prod"}, {Key: "team", Value: "db"}}, Description: "versions"}))(t)

		put := must(sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: versionsSecret, ClientRequestToken: tok2, SecretString: ptr("v2")}))(t)
		if put.GetVersionId() != tok2 || !slices.Equal(put.GetVersionStages(), []string{"AWSCURRENT"}) || !arnPattern(versionsSecret).MatchString(put.GetArn()) {
			t.Errorf("PutSecretValue = %v, want version %s with [AWSCURRENT]", put, tok2)
		}
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: versionsSecret}, tok2, "v2")
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: versionsSecret, VersionStage: "AWSPREVIOUS"}, tok1, "v1")
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: versionsSecret, VersionId: tok1}, tok1, "v1")

		pending := must(sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: versionsSecret, ClientRequestToken: tok3,
			SecretString: ptr("v3"), VersionStages: []string{"AWSPENDING"}}))(t)
		if !slices.Equal(pending.GetVersionStages(), []string{"AWSPENDING"}) {
			t.Errorf("PutSecretValue with [AWSPENDING] gave stages %v", pending.GetVersionStages())
		}
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: versionsSecret}, tok2, "v2")
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: versionsSecret, VersionStage: "AWSPENDING"}, tok3, "v3")
		wantStages(t, sm, versionsSecret, map[string][]string{tok1: {"AWSPREVIOUS"}, tok2: {"AWSCURRENT"}, tok3: {"AWSPENDING"}})

		retry := must(sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: versionsSecret, ClientRequestToken: tok2, SecretString: ptr("v2")}))(t)
		if retry.GetVersionId() != tok2 || !slices.Equal(retry.GetVersionStages(), []string{"AWSCURRENT"}) {
			t.Errorf("retried PutSecretValue = %v, want version %s with [AWSCURRENT]", retry, tok2)
		}
		_, err := sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: versionsSecret, ClientRequestToken: tok2, SecretString: ptr("not v2")})
		wantType(t, err, "ResourceExistsException")
		wantStages(t, sm, versionsSecret, map[string][]string{tok1: {"AWSPREVIOUS"}, tok2: {"AWSCURRENT"}, tok3: {"AWSPENDING"}})
	})

	t.Run("UpdateSecret changes the description and the value", func(t *testing.T) {
		ctx := t.Context()
		upd := must(sm.UpdateSecret(ctx, &cofferv1.UpdateSecretRequest{SecretId: versionsSecret, Description: ptr("versions, updated")}))(t)
		if upd.GetVersionId() != "" || upd.GetName() != versionsSecret {
			t.Errorf("UpdateSecret of the description = %v, want no version id", upd)
		}
		if d := must(sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: versionsSecret}))(t); d.GetDescription() != "versions, updated" {
			t.Errorf("description = %q after UpdateSecret", d.GetDescription())
		}

		upd = must(sm.UpdateSecret(ctx, &cofferv1.UpdateSecretRequest{SecretId: versionsSecret, ClientRequestToken: tok4, SecretString: ptr("v4")}))(t)
		if upd.GetVersionId() != tok4 {
			t.Errorf("UpdateSecret with a value = version %q, want %s", upd.GetVersionId(), tok4)
		}
		again := must(sm.UpdateSecret(ctx, &cofferv1.UpdateSecretRequest{SecretId: versionsSecret, ClientRequestToken: tok4, SecretString: ptr("v4")}))(t)
		if again.GetVersionId() != tok4 {
			t.Errorf("retried UpdateSecret = version %q, want %s", again.GetVersionId(), tok4)
		}
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: versionsSecret}, tok4, "v4")
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: versionsSecret, VersionStage: "AWSPREVIOUS"}, tok2, "v2")
		// v1 lost its last label, so it is deprecated and leaves the map.
		wantStages(t, sm, versionsSecret, map[string][]string{tok2: {"AWSPREVIOUS"}, tok3: {"AWSPENDING"}, tok4: {"AWSCURRENT"}})
	})

	t.Run("UpdateSecretVersionStage", func(t *testing.T) {
		ctx := t.Context()
		_, err := sm.UpdateSecretVersionStage(ctx, &cofferv1.UpdateSecretVersionStageRequest{
			SecretId: versionsSecret, VersionStage: "AWSCURRENT", MoveToVersionId: tok3})
		wantType(t, err, "InvalidParameterException")
		wantStages(t, sm, versionsSecret, map[string][]string{tok2: {"AWSPREVIOUS"}, tok3: {"AWSPENDING"}, tok4: {"AWSCURRENT"}})

		resp := must(sm.UpdateSecretVersionStage(ctx, &cofferv1.UpdateSecretVersionStageRequest{
			SecretId: versionsSecret, VersionStage: "AWSCURRENT", MoveToVersionId: tok3, RemoveFromVersionId: tok4}))(t)
		if resp.GetName() != versionsSecret || !arnPattern(versionsSecret).MatchString(resp.GetArn()) {
			t.Errorf("UpdateSecretVersionStage = %v", resp)
		}
		wantStages(t, sm, versionsSecret, map[string][]string{tok3: {"AWSCURRENT", "AWSPENDING"}, tok4: {"AWSPREVIOUS"}})
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: versionsSecret}, tok3, "v3")

		must(sm.UpdateSecretVersionStage(ctx, &cofferv1.UpdateSecretVersionStageRequest{
			SecretId: versionsSecret, VersionStage: "AWSPENDING", RemoveFromVersionId: tok3}))(t)
		must(sm.UpdateSecretVersionStage(ctx, &cofferv1.UpdateSecretVersionStageRequest{
			SecretId: versionsSecret, VersionStage: "blue", MoveToVersionId: tok1}))(t)
		wantStages(t, sm, versionsSecret, map[string][]string{tok1: {"blue"}, tok3: {"AWSCURRENT"}, tok4: {"AWSPREVIOUS"}})
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: versionsSecret, VersionStage: "blue"}, tok1, "v1")
	})

	t.Run("DescribeSecret", func(t *testing.T) {
		d := must(sm.DescribeSecret(t.Context(), &cofferv1.DescribeSecretRequest{SecretId: versionsSecret}))(t)
		if !arnPattern(versionsSecret).MatchString(d.GetArn()) || d.GetName() != versionsSecret || d.GetDescription() != "versions, updated" {
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
		if d.GetDeletedDate() != nil || d.GetRotationEnabled() || d.GetPrimaryRegion() != "" {
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
		live := must(sm.ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: versionsSecret}))(t)
		if got, want := ids(live), []string{tok4, tok3, tok1}; !slices.Equal(got, want) {
			t.Errorf("versions = %v, want newest first without deprecated %s: %v", got, tok2, want)
		}
		if live.GetName() != versionsSecret || !arnPattern(versionsSecret).MatchString(live.GetArn()) {
			t.Errorf("ListSecretVersionIds names %q %q", live.GetName(), live.GetArn())
		}
		all := must(sm.ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: versionsSecret, IncludeDeprecated: true}))(t)
		if got, want := ids(all), []string{tok4, tok3, tok2, tok1}; !slices.Equal(got, want) {
			t.Errorf("versions with deprecated = %v, want %v", got, want)
		}
		for _, v := range all.GetVersions() {
			if v.GetVersionId() == tok2 && len(v.GetVersionStages()) != 0 {
				t.Errorf("deprecated version %s has stages %v", tok2, v.GetVersionStages())
			}
		}
	})
}
