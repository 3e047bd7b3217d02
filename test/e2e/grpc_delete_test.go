package e2e

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// testPasswordsAndDeletion: random passwords, deletion with and without
// a recovery window, and rotation without a function.
func testPasswordsAndDeletion(t *testing.T, sm cofferv1.SecretsManagerServiceClient) {
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
		_, err := sm.RotateSecret(t.Context(), &cofferv1.RotateSecretRequest{SecretId: versionsSecret, ClientRequestToken: newToken(t)})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "No Lambda rotation function ARN is associated with this secret.") {
			t.Errorf("RotateSecret: %v, want FailedPrecondition (InvalidRequestException)", err)
		}
		// Rotation was never configured, so there is nothing to cancel:
		// AWS's InvalidRequestException.
		_, err = sm.CancelRotateSecret(t.Context(), &cofferv1.CancelRotateSecretRequest{SecretId: versionsSecret})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "doesn't already have a Lambda function ARN configured") {
			t.Errorf("CancelRotateSecret: %v, want FailedPrecondition (InvalidRequestException)", err)
		}
	})
}
