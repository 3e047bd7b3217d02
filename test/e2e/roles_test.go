package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRolesCLI manages a role with `coffer iam` (create-role, a malformed
// trust policy refused, attach-role, get-role, list-roles), assumes it with
// `coffer iam assume-role --env` and with the real aws CLI's
// `aws sts assume-role` against the node's AWS endpoint, and reads a secret
// with the role's credentials through both.
func TestRolesCLI(t *testing.T) {
	n := startNode(t, t.TempDir())
	const acct = "123456789012"
	roleARN := "arn:aws:iam::" + acct + ":role/deployer"
	if _, errOut, code := n.cli(t, "secrets", "create", "deploy/token", "--value", "role-cli-canary"); code != 0 {
		t.Fatalf("create secret: exit %d: %s", code, errOut)
	}
	if _, errOut, code := n.cli(t, "iam", "create-principal", "ci"); code != 0 {
		t.Fatalf("create-principal: exit %d: %s", code, errOut)
	}
	out, _, code := n.cli(t, "iam", "create-access-key", "ci", "-o", "json")
	id := regexp.MustCompile(`"accessKeyId":\s*"(AKIA[A-Z2-7]{16})"`).FindStringSubmatch(out)
	secret := regexp.MustCompile(`"secretAccessKey":\s*"([^"]{40})"`).FindStringSubmatch(out)
	if code != 0 || id == nil || secret == nil {
		t.Fatalf("create-access-key: exit %d\n%s", code, out)
	}
	mayAssume := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"` + roleARN + `"}]}`
	read := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"arn:aws:secretsmanager:*:*:secret:deploy/*"}]}`
	for _, args := range [][]string{
		{"iam", "put-policy", "may-assume", "--policy", mayAssume},
		{"iam", "attach", "ci", "may-assume"},
		{"iam", "put-policy", "read-deploy", "--policy", read},
	} {
		if _, errOut, code := n.cli(t, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
	}
	if _, errOut, code := n.cli(t, "iam", "create-role", "deployer", "--policy", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole"}]}`); code != 5 ||
		!strings.Contains(errOut, "MalformedPolicyDocumentException") {
		t.Fatalf("create-role with a trust policy naming no Principal: exit %d, want 5: %s", code, errOut)
	}
	nobody := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + acct + `:user/someone-else"},"Action":"sts:AssumeRole"}]}`
	out, errOut, code := n.cli(t, "iam", "create-role", "deployer", "--policy", nobody, "--max-session-duration", "2h")
	if code != 0 || !strings.Contains(out, roleARN) {
		t.Fatalf("create-role: exit %d: %s%s", code, out, errOut)
	}
	if _, errOut, code := n.cli(t, "iam", "attach-role", "deployer", "read-deploy"); code != 0 {
		t.Fatalf("attach-role: exit %d: %s", code, errOut)
	}
	// Not yet trusted: refused.
	if _, errOut, code := cliAs(t, n, id[1], secret[1], "iam", "assume-role", roleARN, "build-1"); code != 7 || !strings.Contains(errOut, "AccessDenied") {
		t.Fatalf("assume-role before the trust policy names ci: exit %d, want 7: %s", code, errOut)
	}
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + acct + `:user/ci"},"Action":"sts:AssumeRole"}]}`
	if _, errOut, code := n.cli(t, "iam", "put-trust-policy", "deployer", "--policy", trust); code != 0 {
		t.Fatalf("put-trust-policy: exit %d: %s", code, errOut)
	}
	out, _, _ = n.cli(t, "iam", "get-role", "deployer")
	if !strings.Contains(out, "user/ci") || !strings.Contains(out, "read-deploy") || !strings.Contains(out, "7200s") {
		t.Fatalf("get-role:\n%s", out)
	}
	out, _, _ = n.cli(t, "iam", "list-roles")
	if !strings.Contains(out, roleARN) {
		t.Fatalf("list-roles:\n%s", out)
	}

	// coffer iam assume-role --env, then the credentials with coffer.
	out, errOut, code = cliAs(t, n, id[1], secret[1], "iam", "assume-role", roleARN, "build-1", "--env")
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`export (COFFER_[A-Z_]+)='([^']*)'`).FindAllStringSubmatch(out, -1) {
		env[m[1]] = m[2]
	}
	if code != 0 || !strings.HasPrefix(env["COFFER_ACCESS_KEY_ID"], "ASIA") {
		t.Fatalf("assume-role --env: exit %d: %s%s", code, out, errOut)
	}
	roleEnv := []string{"COFFER_ACCESS_KEY_ID=" + env["COFFER_ACCESS_KEY_ID"], "COFFER_SECRET_ACCESS_KEY=" + env["COFFER_SECRET_ACCESS_KEY"],
		"COFFER_SESSION_TOKEN=" + env["COFFER_SESSION_TOKEN"]}
	out, errOut, code = runCLIEnv(t, roleEnv, "--endpoint", n.grpcAddr, "iam", "whoami")
	if code != 0 || !strings.Contains(out, "arn:aws:sts::"+acct+":assumed-role/deployer/build-1") {
		t.Fatalf("whoami as the role: exit %d: %s%s", code, out, errOut)
	}
	out, errOut, code = runCLIEnv(t, roleEnv, "--endpoint", n.grpcAddr, "secrets", "get", "deploy/token")
	if code != 0 || !strings.Contains(out, "role-cli-canary") {
		t.Fatalf("secrets get as the role: exit %d: %s%s", code, out, errOut)
	}

	// The aws CLI: sts assume-role, then secretsmanager with its output.
	awsPath, err := exec.LookPath("aws")
	if err != nil {
		t.Fatalf("the aws CLI is not installed (scripts/deps.sh installs it): %v", err)
	}
	home := t.TempDir()
	awsEnv := []string{"AWS_CONFIG_FILE=" + filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"),
		"HOME=" + home, "AWS_PAGER=", "AWS_MAX_ATTEMPTS=1"}
	runAWS := func(env []string, args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), awsPath, append([]string{"--endpoint-url", "http://" + n.awsAddr, "--region", "us-east-1", "--output", "json"}, args...)...)
		cmd.Env = append(append(os.Environ(), awsEnv...), env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("aws %v: %v %s", args, err, stderr.String())
		}
		return stdout.Bytes()
	}
	var assumed struct {
		Credentials     struct{ AccessKeyId, SecretAccessKey, SessionToken string }
		AssumedRoleUser struct{ Arn string }
	}
	raw := runAWS([]string{"AWS_ACCESS_KEY_ID=" + id[1], "AWS_SECRET_ACCESS_KEY=" + secret[1]},
		"sts", "assume-role", "--role-arn", roleARN, "--role-session-name", "aws-cli", "--duration-seconds", "900")
	if err := json.Unmarshal(raw, &assumed); err != nil || assumed.AssumedRoleUser.Arn != "arn:aws:sts::"+acct+":assumed-role/deployer/aws-cli" {
		t.Fatalf("aws sts assume-role printed %s (%v)", raw, err)
	}
	c := assumed.Credentials
	var value struct{ SecretString string }
	raw = runAWS([]string{"AWS_ACCESS_KEY_ID=" + c.AccessKeyId, "AWS_SECRET_ACCESS_KEY=" + c.SecretAccessKey, "AWS_SESSION_TOKEN=" + c.SessionToken},
		"secretsmanager", "get-secret-value", "--secret-id", "deploy/token")
	if err := json.Unmarshal(raw, &value); err != nil || value.SecretString != "role-cli-canary" {
		t.Fatalf("aws secretsmanager get-secret-value as the role printed %s (%v)", raw, err)
	}
}
