package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
)

type staticBearer string

func (b staticBearer) GetRequestMetadata(_ context.Context, _ ...string) (map[string]string, error) {
	if b == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (staticBearer) RequireTransportSecurity() bool { return false }

// cliAs runs the CLI with the given access key instead of root's.
func cliAs(t *testing.T, n *node, id, secret string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin.coffer, append([]string{"--endpoint", n.grpcAddr}, args...)...)
	cmd.Env = append(os.Environ(), "COFFER_ACCESS_KEY_ID="+id, "COFFER_SECRET_ACCESS_KEY="+secret)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestAuthentication(t *testing.T) {
	n := startNode(t, t.TempDir())

	// The root access key was written, for its owner only, on first start.
	credFile := filepath.Join(n.dataDir, "root-credentials")
	st, err := os.Stat(credFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("root credentials file mode %v, want 0600", st.Mode().Perm())
	}
	body, _ := os.ReadFile(credFile)
	if !strings.Contains(string(body), "aws_access_key_id = "+rootAccessKeyID) || !strings.Contains(string(body), rootSecretAccessKey) {
		t.Fatalf("root credentials file does not hold the root key:\n%s", body)
	}

	call := func(token string) error {
		conn, err := grpc.NewClient(n.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(staticBearer(token)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = cofferv1.NewSecretsManagerServiceClient(conn).ListSecrets(t.Context(), &cofferv1.ListSecretsRequest{})
		return err
	}
	for _, c := range []struct {
		name, token, want string
	}{
		{"anonymous", "", server.TypeMissingAuthToken},
		{"unknown key", "AKIAUNKNOWNKEY000000:whatever", server.TypeUnrecognizedClient},
		{"wrong secret", rootAccessKeyID + ":not-the-secret", server.TypeUnrecognizedClient},
		{"malformed", "no-colon-here", server.TypeUnrecognizedClient},
	} {
		if got := server.TypeOf(call(c.token)); got != c.want {
			t.Errorf("%s: error type %q, want %q", c.name, got, c.want)
		}
	}
	if err := call(rootAccessKeyID + ":" + rootSecretAccessKey); err != nil {
		t.Fatalf("root key as a bearer token from loopback refused: %v", err)
	}
	// Signed calls, as the CLI makes them.
	signed := func(id, secret string) error {
		c := &grpcsig.Credentials{AccessKeyID: id, SecretAccessKey: secret, Region: testRegion}
		conn, err := grpc.NewClient(n.grpcAddr, append(c.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = cofferv1.NewSecretsManagerServiceClient(conn).ListSecrets(t.Context(), &cofferv1.ListSecretsRequest{})
		return err
	}
	if got := server.TypeOf(signed("AKIAUNKNOWNKEY000000", "whatever-secret")); got != server.TypeUnrecognizedClient {
		t.Errorf("signed with an unknown key: error type %q", got)
	}
	if got := server.TypeOf(signed(rootAccessKeyID, "not-the-secret")); got != server.TypeInvalidSignature {
		t.Errorf("signed with the wrong secret: error type %q", got)
	}
	if err := signed(rootAccessKeyID, rootSecretAccessKey); err != nil {
		t.Fatalf("root key, signed, refused: %v", err)
	}
	// The CLI without credentials is refused with the auth exit code.
	cmd := exec.CommandContext(t.Context(), bin.coffer, "--endpoint", n.grpcAddr, "secrets", "list")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "COFFER_ACCESS_KEY_ID=", "COFFER_SECRET_ACCESS_KEY=")
	if err := cmd.Run(); err == nil {
		t.Fatal("CLI without credentials succeeded")
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("CLI without credentials: %v, want exit 7", err)
	}
	// The credentials file works as a CLI profile as written.
	out, errOut, code := runCLIEnv(t, []string{"COFFER_ACCESS_KEY_ID=", "COFFER_SECRET_ACCESS_KEY=", "COFFER_CREDENTIALS_FILE=" + credFile},
		"--endpoint", n.grpcAddr, "iam", "list")
	if code != 0 || !strings.Contains(out, "root") || !strings.Contains(out, rootAccessKeyID) {
		t.Fatalf("iam list with the credentials file: exit %d\n%s%s", code, out, errOut)
	}
}

func TestIAMPrincipalsAndKeys(t *testing.T) {
	n := startNode(t, t.TempDir())
	out, errOut, code := n.cli(t, "iam", "create-principal", "ci-deployer", "--description", "pipeline")
	if code != 0 || !strings.Contains(out, "arn:aws:iam::123456789012:user/ci-deployer") {
		t.Fatalf("create-principal: exit %d\n%s%s", code, out, errOut)
	}
	if _, _, code := n.cli(t, "iam", "create-principal", "ci-deployer"); code != 4 {
		t.Fatalf("duplicate principal: exit %d, want 4", code)
	}
	out, _, code = n.cli(t, "iam", "create-access-key", "ci-deployer", "-o", "json")
	if code != 0 {
		t.Fatalf("create-access-key: exit %d", code)
	}
	id := regexp.MustCompile(`"accessKeyId":\s*"(AKIA[A-Z2-7]{16})"`).FindStringSubmatch(out)
	secret := regexp.MustCompile(`"secretAccessKey":\s*"([^"]{40})"`).FindStringSubmatch(out)
	if id == nil || secret == nil {
		t.Fatalf("create-access-key output lacks the key:\n%s", out)
	}
	// A new principal may do nothing until a policy allows it.
	if _, errOut, code := cliAs(t, n, id[1], secret[1], "secrets", "create", "iam/made-by-ci", "--value", "v"); code != 7 ||
		!strings.Contains(errOut, "AccessDeniedException") {
		t.Fatalf("create as ci-deployer without a policy: exit %d, want 7 (AccessDeniedException): %s", code, errOut)
	}
	doc := `{"Version":"2012-10-17","Statement":[{"Sid":"CI","Effect":"Allow","Action":"secretsmanager:*","Resource":"arn:aws:secretsmanager:*:*:secret:iam/*"}]}`
	if _, errOut, code := n.cli(t, "iam", "put-policy", "ci", "--policy", doc); code != 0 {
		t.Fatalf("put-policy: exit %d: %s", code, errOut)
	}
	if _, errOut, code := n.cli(t, "iam", "put-policy", "broken", "--policy", `{"Version":"2012-10-17"}`); code != 5 ||
		!strings.Contains(errOut, "MalformedPolicyDocumentException") {
		t.Fatalf("put-policy of a malformed document: exit %d, want 5: %s", code, errOut)
	}
	if _, errOut, code := n.cli(t, "iam", "attach", "ci-deployer", "ci"); code != 0 {
		t.Fatalf("attach: exit %d: %s", code, errOut)
	}
	out, _, _ = n.cli(t, "iam", "simulate", "ci-deployer", "secretsmanager:CreateSecret", "iam/made-by-ci")
	if !strings.Contains(out, "allowed") || !strings.Contains(out, "CI") {
		t.Fatalf("simulate does not name the deciding statement:\n%s", out)
	}
	if _, errOut, code := cliAs(t, n, id[1], secret[1], "secrets", "create", "iam/made-by-ci", "--value", "v"); code != 0 {
		t.Fatalf("create as ci-deployer: exit %d: %s", code, errOut)
	}
	if _, _, code := cliAs(t, n, id[1], secret[1], "secrets", "create", "elsewhere", "--value", "v"); code != 7 {
		t.Fatalf("create outside the policy's resources: exit %d, want 7", code)
	}
	// Temporary credentials from the CLI work with the CLI.
	out, errOut, code = cliAs(t, n, id[1], secret[1], "iam", "session-token", "--env")
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`export (COFFER_[A-Z_]+)='([^']*)'`).FindAllStringSubmatch(out, -1) {
		env[m[1]] = m[2]
	}
	if code != 0 || !strings.HasPrefix(env["COFFER_ACCESS_KEY_ID"], "ASIA") || env["COFFER_SESSION_TOKEN"] == "" {
		t.Fatalf("session-token --env: exit %d: %s%s", code, out, errOut)
	}
	out, errOut, code = runCLIEnv(t, []string{"COFFER_ACCESS_KEY_ID=" + env["COFFER_ACCESS_KEY_ID"],
		"COFFER_SECRET_ACCESS_KEY=" + env["COFFER_SECRET_ACCESS_KEY"], "COFFER_SESSION_TOKEN=" + env["COFFER_SESSION_TOKEN"]},
		"--endpoint", n.grpcAddr, "iam", "whoami")
	if code != 0 || !strings.Contains(out, "ci-deployer") {
		t.Fatalf("whoami with temporary credentials: exit %d: %s%s", code, out, errOut)
	}
	// The secret is never listed.
	out, _, _ = n.cli(t, "iam", "list", "-o", "json")
	if strings.Contains(out, secret[1]) || !strings.Contains(out, id[1]) {
		t.Fatalf("iam list shows the secret or misses the key id:\n%s", out)
	}
	// Deleting the principal revokes its key at once.
	if _, _, code := n.cli(t, "iam", "delete", "ci-deployer"); code != 0 {
		t.Fatalf("delete principal: exit %d", code)
	}
	if _, _, code := cliAs(t, n, id[1], secret[1], "secrets", "list"); code != 7 {
		t.Fatalf("deleted principal's key: exit %d, want 7", code)
	}
	if _, _, code := n.cli(t, "iam", "delete", "--access-key", "AKIANOSUCHKEY0000000"); code != 3 {
		t.Fatalf("delete unknown key: exit %d, want 3", code)
	}
	// And the key's secret never reached the node's log.
	if strings.Contains(string(n.readLog()), secret[1]) {
		t.Fatal("the access key secret is in the node's log")
	}
}

// runCLIEnv runs the coffer binary with extra environment.
func runCLIEnv(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin.coffer, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}
