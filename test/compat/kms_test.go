package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	cserver "github.com/cofferhq/coffer/server"
)

// kmsRun runs `aws kms ARGS` (or another service, when args[0] is one)
// against the server as the root principal and decodes its JSON output.
func (c cli) kmsRun(t *testing.T, s *server, service string, args ...string) (map[string]any, string, int) {
	t.Helper()
	home := t.TempDir()
	full := append([]string{"--endpoint-url", s.endpoint, "--output", "json", "--region", region, service}, args...)
	cmd := exec.CommandContext(t.Context(), c.path, full...)
	cmd.Env = append(os.Environ(),
		"AWS_ACCESS_KEY_ID="+accessKeyID, "AWS_SECRET_ACCESS_KEY="+secretAccessKey,
		"AWS_CONFIG_FILE="+filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(home, "credentials"),
		"AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true", "HOME="+home, "AWS_MAX_ATTEMPTS=1", "AWS_RETRY_MODE=standard")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %s %v: %v", c.name, service, args, err)
	}
	var v map[string]any
	if code == 0 && out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &v); err != nil {
			t.Fatalf("%s %s %v: output is not JSON: %v\n%s", c.name, service, args, err, out.String())
		}
	}
	return v, errb.String(), code
}

func (c cli) kmsOK(t *testing.T, s *server, args ...string) map[string]any {
	t.Helper()
	v, stderr, code := c.kmsRun(t, s, "kms", args...)
	if code != 0 {
		t.Fatalf("%s kms %v: exit %d: %s", c.name, args, code, stderr)
	}
	return v
}

func (c cli) kmsFails(t *testing.T, s *server, errType string, args ...string) {
	t.Helper()
	_, stderr, code := c.kmsRun(t, s, "kms", args...)
	if code == 0 || !strings.Contains(stderr, "("+errType+")") {
		t.Fatalf("%s kms %v: exit %d, stderr %q; want an error of type %s", c.name, args, code, stderr, errType)
	}
}

func jstr(v map[string]any, path ...string) string {
	var cur any = v
	for _, p := range path {
		m, _ := cur.(map[string]any)
		cur = m[p]
	}
	s, _ := cur.(string)
	return s
}

// TestKMSWithAWSCLI drives every KMS operation Coffer serves with the real
// aws CLI (`aws kms … --endpoint-url`), and a secret under the key it
// made: disabling the key makes the secret unreadable with AWS's error,
// enabling it restores it.
func TestKMSWithAWSCLI(t *testing.T) {
	s := startServer(t)
	for _, c := range awsCLIs(t) {
		t.Run(c.name, func(t *testing.T) {
			created := c.kmsOK(t, s, "create-key", "--description", "payments key", "--tags", "TagKey=team,TagValue=payments")
			keyID, keyARN := jstr(created, "KeyMetadata", "KeyId"), jstr(created, "KeyMetadata", "Arn")
			if !strings.HasPrefix(keyARN, "arn:aws:kms:"+region+":"+account+":key/") || !strings.HasSuffix(keyARN, keyID) ||
				jstr(created, "KeyMetadata", "KeyState") != "Enabled" || jstr(created, "KeyMetadata", "KeyManager") != "CUSTOMER" ||
				jstr(created, "KeyMetadata", "AWSAccountId") != account {
				t.Fatalf("create-key = %v", created)
			}
			alias := "alias/payments-" + strings.ReplaceAll(strings.Fields(c.name)[0], " ", "")
			c.kmsOK(t, s, "create-alias", "--alias-name", alias, "--target-key-id", keyID)
			c.kmsFails(t, s, "AlreadyExistsException", "create-alias", "--alias-name", alias, "--target-key-id", keyID)
			c.kmsFails(t, s, "InvalidAliasNameException", "create-alias", "--alias-name", "alias/aws/mine", "--target-key-id", keyID)
			if d := c.kmsOK(t, s, "describe-key", "--key-id", alias); jstr(d, "KeyMetadata", "KeyId") != keyID || jstr(d, "KeyMetadata", "Description") != "payments key" {
				t.Fatalf("describe-key by alias = %v", d)
			}
			if d := c.kmsOK(t, s, "describe-key", "--key-id", "arn:aws:kms:"+region+":"+account+":"+alias); jstr(d, "KeyMetadata", "KeyId") != keyID {
				t.Fatalf("describe-key by alias ARN = %v", d)
			}
			c.kmsFails(t, s, "NotFoundException", "describe-key", "--key-id", "alias/nothing")
			keys := c.kmsOK(t, s, "list-keys")
			if !strings.Contains(mustJSON(t, keys), keyARN) {
				t.Fatalf("list-keys lacks %s: %v", keyARN, keys)
			}
			aliases := mustJSON(t, c.kmsOK(t, s, "list-aliases", "--key-id", keyID))
			if !strings.Contains(aliases, alias) || strings.Contains(aliases, "alias/aws/secretsmanager") {
				t.Fatalf("list-aliases --key-id = %s", aliases)
			}
			if all := mustJSON(t, c.kmsOK(t, s, "list-aliases")); !strings.Contains(all, "alias/aws/secretsmanager") || !strings.Contains(all, alias) {
				t.Fatalf("list-aliases = %s", all)
			}

			// Rotation: automatic on a period, and on demand.
			// Older CLIs (Debian's 2.9) predate rotation periods and
			// on-demand rotation (2024): they get the default period, and
			// skip what they cannot send.
			period := float64(180)
			if _, stderr, code := c.kmsRun(t, s, "kms", "enable-key-rotation", "--key-id", keyID, "--rotation-period-in-days", "180"); code != 0 {
				if !strings.Contains(stderr, "Unknown options: --rotation-period-in-days") {
					t.Fatalf("enable-key-rotation: exit %d: %s", code, stderr)
				}
				c.kmsOK(t, s, "enable-key-rotation", "--key-id", keyID)
				period = 365
			}
			if st := c.kmsOK(t, s, "get-key-rotation-status", "--key-id", keyID); st["KeyRotationEnabled"] != true || (period != 365 && st["RotationPeriodInDays"] != period) {
				t.Fatalf("get-key-rotation-status = %v", st)
			}
			_, stderr, code := c.kmsRun(t, s, "kms", "rotate-key-on-demand", "--key-id", keyID)
			onDemand := code == 0
			if !onDemand && !strings.Contains(stderr, "Invalid choice") {
				t.Fatalf("rotate-key-on-demand: exit %d: %s", code, stderr)
			}
			if !onDemand {
				t.Logf("%s has no rotate-key-on-demand; skipped", c.name)
			}

			// Policy: the default one hands decisions to IAM.
			if p := c.kmsOK(t, s, "get-key-policy", "--key-id", keyID, "--policy-name", "default"); !strings.Contains(jstr(p, "Policy"), ":root") {
				t.Fatalf("get-key-policy = %v", p)
			}
			c.kmsFails(t, s, "MalformedPolicyDocumentException", "put-key-policy", "--key-id", keyID, "--policy-name", "default", "--policy", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}`)
			c.kmsOK(t, s, "put-key-policy", "--key-id", keyID, "--policy-name", "default", "--policy",
				stmts(`{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::`+account+`:root"},"Action":"kms:*","Resource":"*"}`))

			// A secret under the key.
			name := "kms/" + strings.Fields(c.name)[0]
			if _, stderr, code := c.kmsRun(t, s, "secretsmanager", "create-secret", "--name", name, "--kms-key-id", alias, "--secret-string", "s3cr3t-under-cmk"); code != 0 {
				t.Fatalf("create-secret under %s: %s", alias, stderr)
			}
			if d, _, _ := c.kmsRun(t, s, "secretsmanager", "describe-secret", "--secret-id", name); jstr(d, "KmsKeyId") != alias {
				t.Fatalf("describe-secret KmsKeyId = %v", d)
			}
			c.kmsOK(t, s, "disable-key", "--key-id", keyID)
			if d := c.kmsOK(t, s, "describe-key", "--key-id", keyID); jstr(d, "KeyMetadata", "KeyState") != "Disabled" || d["KeyMetadata"].(map[string]any)["Enabled"] != false {
				t.Fatalf("describe-key after disable-key = %v", d)
			}
			_, stderr, code = c.kmsRun(t, s, "secretsmanager", "get-secret-value", "--secret-id", name)
			if code == 0 || !strings.Contains(stderr, "(DecryptionFailure)") || !strings.Contains(stderr, "is disabled") || strings.Contains(stderr, "s3cr3t") {
				t.Fatalf("get-secret-value under a disabled key: exit %d %q; want DecryptionFailure naming the disabled key", code, stderr)
			}
			_, stderr, code = c.kmsRun(t, s, "secretsmanager", "put-secret-value", "--secret-id", name, "--secret-string", "next")
			if code == 0 || !strings.Contains(stderr, "(EncryptionFailure)") {
				t.Fatalf("put-secret-value under a disabled key: exit %d %q; want EncryptionFailure", code, stderr)
			}
			if onDemand {
				c.kmsFails(t, s, "DisabledException", "rotate-key-on-demand", "--key-id", keyID)
			}
			c.kmsOK(t, s, "enable-key", "--key-id", keyID)
			if v, stderr, code := c.kmsRun(t, s, "secretsmanager", "get-secret-value", "--secret-id", name); code != 0 || jstr(v, "SecretString") != "s3cr3t-under-cmk" {
				t.Fatalf("get-secret-value after enable-key: %v %s", v, stderr)
			}

			// Deletion: 7-30 days; cancelled, the key is left disabled.
			sched := c.kmsOK(t, s, "schedule-key-deletion", "--key-id", keyID, "--pending-window-in-days", "7")
			if jstr(sched, "KeyState") != "PendingDeletion" || jstr(sched, "KeyId") != keyARN {
				t.Fatalf("schedule-key-deletion = %v", sched)
			}
			c.kmsFails(t, s, "KMSInvalidStateException", "enable-key", "--key-id", keyID)
			c.kmsOK(t, s, "cancel-key-deletion", "--key-id", keyID)
			if d := c.kmsOK(t, s, "describe-key", "--key-id", keyID); jstr(d, "KeyMetadata", "KeyState") != "Disabled" {
				t.Fatalf("describe-key after cancel-key-deletion = %v", d)
			}
			c.kmsOK(t, s, "enable-key", "--key-id", keyID)
			c.kmsOK(t, s, "update-alias", "--alias-name", alias, "--target-key-id", keyID)
			c.kmsOK(t, s, "delete-alias", "--alias-name", alias)
			c.kmsFails(t, s, "NotFoundException", "delete-alias", "--alias-name", alias)
			if b, _ := os.ReadFile(s.logFile); bytes.Contains(b, []byte("s3cr3t-under-cmk")) {
				t.Fatal("the secret's value is in cofferd's log")
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCustomerKeyAccessMatrix: a secret under a customer key is readable
// (kms:Decrypt) and writable (kms:GenerateDataKey) only by a caller
// allowed both the secret and the key, on both protocols. A key whose
// policy hands decisions to the account lets identity policies grant it;
// one whose policy does not is granted by its policy alone.
func TestCustomerKeyAccessMatrix(t *testing.T) {
	f := newAccessFixture(t)
	ctx := t.Context()
	keysAPI := cofferv1.NewKeyServiceClient(f.root)
	sm := cofferv1.NewSecretsManagerServiceClient(f.root)

	delegating, err := keysAPI.CreateKey(ctx, &cofferv1.CreateKeyRequest{Description: "default policy"})
	if err != nil {
		t.Fatal(err)
	}
	ownPolicy, err := keysAPI.CreateKey(ctx, &cofferv1.CreateKeyRequest{Description: "own policy", Policy: stmts(
		`{"Sid":"Admin","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::`+account+`:user/root"},"Action":"kms:*","Resource":"*"}`,
		`{"Sid":"KeyPolReads","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::`+account+`:user/keypol"},"Action":"kms:Decrypt","Resource":"*"}`)})
	if err != nil {
		t.Fatal(err)
	}
	arnDelegating, arnOwn := delegating.GetKeyMetadata().GetArn(), ownPolicy.GetKeyMetadata().GetArn()
	secrets := map[string]string{}
	for name, key := range map[string]string{"cmk/delegating": arnDelegating, "cmk/own": ownPolicy.GetKeyMetadata().GetKeyId()} {
		v := "value-of-" + name
		out, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, SecretString: &v, KmsKeyId: key})
		if err != nil {
			t.Fatal(err)
		}
		secrets[name] = out.GetArn()
	}
	secretRW := `{"Sid":"Secrets","Effect":"Allow","Action":["secretsmanager:GetSecretValue","secretsmanager:PutSecretValue"],"Resource":"` + arnPrefix + `cmk/*"}`
	for _, p := range []struct{ name, doc string }{
		{"both", stmts(secretRW, `{"Sid":"Key","Effect":"Allow","Action":["kms:Decrypt","kms:GenerateDataKey"],"Resource":"*"}`)},
		{"secretonly", stmts(secretRW)},
		{"keyonly", stmts(`{"Sid":"Key","Effect":"Allow","Action":"kms:*","Resource":"*"}`)},
		{"keypol", stmts(secretRW)},
		{"denykey", stmts(secretRW, `{"Sid":"Key","Effect":"Allow","Action":"kms:*","Resource":"*"}`,
			`{"Sid":"NoDecrypt","Effect":"Deny","Action":"kms:Decrypt","Resource":"`+arnDelegating+`"}`)},
	} {
		if _, err := f.iam.CreatePrincipal(ctx, &cofferv1.CreatePrincipalRequest{Name: p.name}); err != nil {
			t.Fatal(err)
		}
		k, err := f.iam.CreateAccessKey(ctx, &cofferv1.CreateAccessKeyRequest{Principal: p.name})
		if err != nil {
			t.Fatal(err)
		}
		f.keys[p.name] = [2]string{k.GetAccessKeyId(), k.GetSecretAccessKey()}
		if _, err := f.iam.PutPolicy(ctx, &cofferv1.PutPolicyRequest{Name: p.name + "-policy", Document: p.doc}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.iam.AttachPolicy(ctx, &cofferv1.AttachPolicyRequest{Principal: p.name, Policy: p.name + "-policy"}); err != nil {
			t.Fatal(err)
		}
	}

	// want[principal][secret] = {read, write}: "" allowed, else the error type.
	const denied = cserver.TypeAccessDeniedException
	want := map[string]map[string][2]string{
		"both":       {"cmk/delegating": {"", ""}, "cmk/own": {denied, denied}},
		"secretonly": {"cmk/delegating": {denied, denied}, "cmk/own": {denied, denied}},
		"keyonly":    {"cmk/delegating": {denied, denied}, "cmk/own": {denied, denied}},
		"keypol":     {"cmk/delegating": {denied, denied}, "cmk/own": {"", denied}},
		"denykey":    {"cmk/delegating": {denied, ""}, "cmk/own": {denied, denied}},
		"root":       {"cmk/delegating": {"", ""}, "cmk/own": {"", ""}},
	}
	for principal, bySecret := range want {
		for name, w := range bySecret {
			for _, proto := range []string{"aws", "grpc"} {
				read, write := f.useAs(t, proto, principal, secrets[name])
				if read != w[0] || write != w[1] {
					t.Errorf("%s over %s on %s: read %q write %q, want read %q write %q", principal, proto, name, read, write, w[0], w[1])
				}
			}
		}
	}

	// A denial for the key says so, in AWS's words.
	_, err = f.sdkAs(t, "secretonly").GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(secrets["cmk/delegating"])})
	var ae smithy.APIError
	if !errors.As(err, &ae) || !strings.HasPrefix(ae.ErrorMessage(), "Access to KMS is not allowed") || !strings.Contains(ae.ErrorMessage(), "kms:Decrypt") {
		t.Fatalf("secretonly's read: %v; want AccessDeniedException \"Access to KMS is not allowed\" naming kms:Decrypt", err)
	}

	// UpdateSecret with another key re-encrypts AWSCURRENT and AWSPREVIOUS
	// (and AWSPENDING) and leaves older versions under the old key.
	id := secrets["cmk/delegating"]
	for i, v := range []string{"v2", "v3"} {
		tok := "matrix-token-" + v + "-0000000000000000000000"
		if _, err := sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: id, SecretString: &[]string{v}[0], ClientRequestToken: tok}); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if _, err := sm.UpdateSecret(ctx, &cofferv1.UpdateSecretRequest{SecretId: id, KmsKeyId: &arnOwn}); err != nil {
		t.Fatal(err)
	}
	vers, err := sm.ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: id, IncludeDeprecated: true})
	if err != nil {
		t.Fatal(err)
	}
	ownID, delegatingID := ownPolicy.GetKeyMetadata().GetKeyId(), delegating.GetKeyMetadata().GetKeyId()
	for _, v := range vers.GetVersions() {
		labeled := slices.Contains(v.GetVersionStages(), "AWSCURRENT") || slices.Contains(v.GetVersionStages(), "AWSPREVIOUS")
		wantKey := delegatingID
		if labeled {
			wantKey = ownID
		}
		if !slices.ContainsFunc(v.GetKmsKeyIds(), func(k string) bool { return strings.Contains(k, wantKey) }) {
			t.Errorf("version %s %v is under %v, want %s", v.GetVersionId(), v.GetVersionStages(), v.GetKmsKeyIds(), wantKey)
		}
	}
	// With the old key disabled, the re-encrypted versions still read and
	// the one left behind fails with AWS's error.
	if _, err := keysAPI.DisableKey(ctx, &cofferv1.DisableKeyRequest{KeyId: delegatingID}); err != nil {
		t.Fatal(err)
	}
	for _, v := range vers.GetVersions() {
		_, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: id, VersionId: v.GetVersionId()})
		labeled := len(v.GetVersionStages()) > 0
		switch {
		case labeled && err != nil:
			t.Errorf("re-encrypted version %s: %v", v.GetVersionId(), err)
		case !labeled && cserver.TypeOf(err) != cserver.TypeDecryptionFailure:
			t.Errorf("version %s left under the disabled key: %v, want DecryptionFailure", v.GetVersionId(), err)
		}
	}
}

// useAs reads and writes secret as principal over proto, and returns the
// AWS error type of each ("" when it succeeded).
func (f *accessFixture) useAs(t *testing.T, proto, principal, secret string) (read, write string) {
	t.Helper()
	ctx := context.Background()
	typeOf := func(err error) string {
		if err == nil {
			return ""
		}
		if proto == "grpc" {
			return cserver.TypeOf(err)
		}
		var ae smithy.APIError
		if errors.As(err, &ae) {
			return ae.ErrorCode()
		}
		return err.Error()
	}
	if proto == "grpc" {
		c := cofferv1.NewSecretsManagerServiceClient(f.grpcAs(t, principal))
		_, rerr := c.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: secret})
		v := "written-by-" + principal
		_, werr := c.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: secret, SecretString: &v})
		return typeOf(rerr), typeOf(werr)
	}
	c := f.sdkAs(t, principal)
	_, rerr := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(secret)})
	_, werr := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(secret), SecretString: aws.String("written-by-" + principal)})
	return typeOf(rerr), typeOf(werr)
}
