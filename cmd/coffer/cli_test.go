package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func TestHelpPrintsUsageToStdout(t *testing.T) {
	tests := []struct {
		args []string
		want []string // lines the usage must contain
	}{
		{[]string{"help"}, []string{"Usage: coffer [global flags] <command>", "  secrets   Create, read and manage secrets", "Exit status:", "  3  ResourceNotFoundException", "  6  server unreachable", "--endpoint HOST:PORT"}},
		{[]string{"-h"}, []string{"Usage: coffer [global flags] <command>", "Exit status:"}},
		{[]string{"--help"}, []string{"Usage: coffer [global flags] <command>"}},
		{[]string{"secrets", "help"}, []string{"Usage: coffer secrets [global flags] <command>", "  create ", "  random-password ", "  policy "}},
		{[]string{"secrets", "-h"}, []string{"Usage: coffer secrets [global flags] <command>"}},
		{[]string{"help", "secrets", "get"}, []string{"Usage: coffer secrets get ID [--version-id V] [--stage S] [--value-only]", "  --value-only "}},
		{[]string{"secrets", "help", "policy", "put"}, []string{"Usage: coffer secrets policy put ID (--file F | --policy JSON)"}},
		{[]string{"secrets", "get", "-h"}, []string{"Usage: coffer secrets get ID", "Global flags: --endpoint"}},
		{[]string{"secrets", "create", "--help"}, []string{"Usage: coffer secrets create NAME", "  --tag KEY=VALUE ", "  --value-file FILE "}},
		{[]string{"secrets", "policy", "-h"}, []string{"Usage: coffer secrets policy [global flags] <command>", "  validate "}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runCLI(t, "", tt.args...)
			mustSucceed(t, r)
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}
		})
	}
}

// TestUsageErrors checks that bad command lines exit 2 with the reason and
// the usage on stderr, and never reach the server.
func TestUsageErrors(t *testing.T) {
	f, addr := startFake(t)
	tests := []struct {
		name string
		args []string
		want string // first line of stderr
	}{
		{"no command", nil, "coffer: missing command"},
		{"unknown command", []string{"sekrets"}, `coffer: unknown command "sekrets"`},
		{"unknown verb", []string{"secrets", "fetch", "x"}, `coffer: unknown command "fetch"`},
		{"help for unknown verb", []string{"secrets", "help", "fetch"}, `coffer: unknown command "fetch"`},
		{"unknown flag", []string{"secrets", "get", "x", "--versoin-id", "v"}, "coffer: flag provided but not defined: -versoin-id"},
		{"missing ID", []string{"secrets", "get"}, "coffer: missing ID"},
		{"empty ID", []string{"secrets", "describe", ""}, "coffer: ID must not be empty"},
		{"extra argument", []string{"secrets", "describe", "a", "b"}, `coffer: unexpected argument "b"`},
		{"two values", []string{"secrets", "create", "n", "--value", "v", "--value-file", "-"}, "coffer: --value, --value-file: give only one of --value, --value-file and --binary-file"},
		{"put without value", []string{"secrets", "put", "n"}, "coffer: a value is required: give --value, --value-file or --binary-file"},
		{"tag without =", []string{"secrets", "create", "n", "--tag", "env"}, `coffer: tag "env": want KEY=VALUE`},
		{"tag with empty key", []string{"secrets", "tag", "n", "=v"}, `coffer: tag "=v": want KEY=VALUE`},
		{"tag without pairs", []string{"secrets", "tag", "n"}, "coffer: missing KEY=VALUE"},
		{"untag without keys", []string{"secrets", "untag", "n"}, "coffer: missing KEY"},
		{"filter without =", []string{"secrets", "list", "--filter", "name"}, `coffer: --filter "name": want KEY=VALUE`},
		{"bad sort-by", []string{"secrets", "list", "--sort-by", "size"}, `coffer: --sort-by "size": want one of created-date, last-accessed-date, last-changed-date, name`},
		{"bad sort-order", []string{"secrets", "list", "--sort-order", "up"}, `coffer: --sort-order "up": want asc or desc`},
		{"zero page size", []string{"secrets", "list", "--page-size", "0"}, "coffer: --page-size 0: must be positive"},
		{"update nothing", []string{"secrets", "update", "n"}, "coffer: nothing to update: give --description, --kms-key-id or a value"},
		{"label nowhere", []string{"secrets", "label", "n", "AWSCURRENT"}, "coffer: give --move-to, --remove-from or both"},
		{"label without stage", []string{"secrets", "label", "n", "--move-to", "v"}, "coffer: missing STAGE"},
		{"delete both ways", []string{"secrets", "delete", "n", "--force", "--recovery-window-days", "7"}, "coffer: give --recovery-window-days or --force, not both"},
		{"bad length", []string{"secrets", "random-password", "--length", "long"}, `coffer: invalid value "long" for flag -length: parse error`},
		{"policy put without policy", []string{"secrets", "policy", "put", "n"}, "coffer: a policy is required: give --file or --policy"},
		{"policy both ways", []string{"secrets", "policy", "validate", "--file", "p.json", "--policy", "{}"}, "coffer: give --file or --policy, not both"},
		{"bad output", []string{"secrets", "describe", "n", "-o", "yaml"}, `coffer: --output "yaml": want table or json`},
		{"bad timeout", []string{"--timeout", "0s", "secrets", "describe", "n"}, "coffer: --timeout 0s: must be positive"},
		{"bad global flag", []string{"--endpont", "x", "secrets", "describe", "n"}, "coffer: flag provided but not defined: -endpont"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, "", append([]string{"--endpoint", addr}, tt.args...)...)
			if r.code != exitUsage {
				t.Errorf("exit %d; want %d (stderr %q)", r.code, exitUsage, r.stderr)
			}
			if first, _, _ := strings.Cut(r.stderr, "\n"); first != tt.want {
				t.Errorf("stderr starts %q; want %q", first, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q; want nothing", r.stdout)
			}
		})
	}
	if calls := f.received(); len(calls) != 0 {
		t.Errorf("server received %v; want no RPC for usage errors", methods(calls))
	}
}

func TestUsageErrorPrintsCommandUsage(t *testing.T) {
	r := runCLI(t, "", "secrets", "get", "--bogus")
	if r.code != exitUsage {
		t.Fatalf("exit %d; want %d", r.code, exitUsage)
	}
	if !strings.Contains(r.stderr, "\nUsage: coffer secrets get ID [--version-id V]") {
		t.Errorf("stderr lacks get's usage:\n%s", r.stderr)
	}
}

func TestBadEnvironmentIsAUsageError(t *testing.T) {
	t.Setenv("COFFER_TLS", "maybe")
	r := runCLI(t, "", "secrets", "describe", "x")
	if r.code != exitUsage || r.stderr != "coffer: COFFER_TLS=\"maybe\": want true or false\n" {
		t.Errorf("exit %d, stderr %q; want exit 2 naming COFFER_TLS", r.code, r.stderr)
	}
}

func statusWithReason(c codes.Code, reason, msg string) error {
	st, err := status.New(c, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "coffer.v1"})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func TestServerErrorsMapToExitCodes(t *testing.T) {
	tests := []struct {
		err        error
		wantCode   int
		wantStderr string
	}{
		{statusWithReason(codes.NotFound, "ResourceNotFoundException", "Secrets Manager can't find the specified secret."), 3,
			"coffer: ResourceNotFoundException: Secrets Manager can't find the specified secret.\n"},
		{statusWithReason(codes.AlreadyExists, "ResourceExistsException", "the secret prod/db already exists"), 4,
			"coffer: ResourceExistsException: the secret prod/db already exists\n"},
		{statusWithReason(codes.InvalidArgument, "InvalidParameterException", "bad name"), 5, "coffer: InvalidParameterException: bad name\n"},
		{statusWithReason(codes.FailedPrecondition, "InvalidRequestException", "secret is scheduled for deletion"), 5,
			"coffer: InvalidRequestException: secret is scheduled for deletion\n"},
		{statusWithReason(codes.InvalidArgument, "ValidationException", "too long"), 5, "coffer: ValidationException: too long\n"},
		{statusWithReason(codes.ResourceExhausted, "LimitExceededException", "too many versions"), 5, "coffer: LimitExceededException: too many versions\n"},
		{statusWithReason(codes.InvalidArgument, "MalformedPolicyDocumentException", "not JSON"), 5, "coffer: MalformedPolicyDocumentException: not JSON\n"},
		{statusWithReason(codes.InvalidArgument, "PublicPolicyException", "grants public access"), 5, "coffer: PublicPolicyException: grants public access\n"},
		{statusWithReason(codes.InvalidArgument, "InvalidNextTokenException", "stale token"), 5, "coffer: InvalidNextTokenException: stale token\n"},
		{statusWithReason(codes.Internal, "DecryptionFailure", "cannot decrypt"), 1, "coffer: DecryptionFailure: cannot decrypt\n"},
		{statusWithReason(codes.Internal, "InternalServiceError", "disk full"), 1, "coffer: InternalServiceError: disk full\n"},
		{statusWithReason(codes.PermissionDenied, "AccessDeniedException", "not allowed"), 7, "coffer: AccessDeniedException: not allowed\n"},
		{statusWithReason(codes.Unavailable, "InternalServiceError", "no leader"), 6, "coffer: InternalServiceError: no leader\n"},
		// Without a Coffer ErrorInfo the gRPC code decides.
		{status.Error(codes.Internal, "boom"), 1, "coffer: Internal: boom\n"},
		{status.Error(codes.NotFound, "no such route"), 3, "coffer: NotFound: no such route\n"},
		{status.Error(codes.Unauthenticated, "who are you"), 7, "coffer: Unauthenticated: who are you\n"},
		{status.Error(codes.PermissionDenied, "no"), 7, "coffer: PermissionDenied: no\n"},
		{status.Error(codes.Unavailable, "draining"), 6, "coffer: Unavailable: draining\n"},
		{status.Error(codes.Unimplemented, "unknown method"), 1, "coffer: Unimplemented: unknown method\n"},
	}
	f, addr := startFake(t)
	for _, tt := range tests {
		t.Run(tt.wantStderr, func(t *testing.T) {
			f.fail(tt.err)
			r := runCLI(t, "", "--endpoint", addr, "secrets", "describe", "prod/db")
			if r.code != tt.wantCode || r.stderr != tt.wantStderr || r.stdout != "" {
				t.Errorf("got exit %d, stderr %q, stdout %q; want exit %d, stderr %q", r.code, r.stderr, r.stdout, tt.wantCode, tt.wantStderr)
			}
		})
	}
}

func TestErrorInfoFromAnotherDomainIsIgnored(t *testing.T) {
	f, addr := startFake(t)
	st, _ := status.New(codes.Internal, "upstream reset").WithDetails(&errdetails.ErrorInfo{Reason: "ResourceNotFoundException", Domain: "proxy.example"})
	f.fail(st.Err())
	r := runCLI(t, "", "--endpoint", addr, "secrets", "describe", "x")
	if r.code != exitFailure || r.stderr != "coffer: Internal: upstream reset\n" {
		t.Errorf("exit %d, stderr %q; want 1 and the gRPC code", r.code, r.stderr)
	}
}

func TestUnreachableServerExits6(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	r := runCLI(t, "", "secrets", "get", "x", "--endpoint", addr, "--timeout", "2s")
	if r.code != exitUnreachable {
		t.Errorf("exit %d; want %d", r.code, exitUnreachable)
	}
	if !strings.HasPrefix(r.stderr, "coffer: Unavailable: ") || !strings.Contains(r.stderr, addr) {
		t.Errorf("stderr %q; want an Unavailable error naming %s", r.stderr, addr)
	}
}

func TestSlowServerExits6(t *testing.T) {
	f, addr := startFake(t)
	f.on("DescribeSecret", func(ctx context.Context, _ proto.Message) (proto.Message, error) {
		<-ctx.Done() // answer only when the client gives up
		return nil, ctx.Err()
	})
	r := runCLI(t, "", "--endpoint", addr, "--timeout", "100ms", "secrets", "describe", "x")
	// gRPC words the message differently depending on which side noticed first.
	if r.code != exitUnreachable || !strings.HasPrefix(r.stderr, "coffer: DeadlineExceeded: ") {
		t.Errorf("exit %d, stderr %q; want 6 and DeadlineExceeded", r.code, r.stderr)
	}
}

func TestGlobalFlagsBeforeOrAfterCommand(t *testing.T) {
	f, addr := startFake(t)
	f.respond("RestoreSecret", &cofferv1.RestoreSecretResponse{Arn: "arn:coffer:1", Name: "db"})
	const wantJSON = "{\n  \"arn\": \"arn:coffer:1\",\n  \"name\": \"db\"\n}\n"
	for _, args := range [][]string{
		{"--endpoint", addr, "-o", "json", "secrets", "restore", "db"},
		{"secrets", "--endpoint", addr, "--output", "json", "restore", "db"},
		{"secrets", "restore", "db", "--endpoint", addr, "-o", "json"},
		{"secrets", "restore", "--endpoint=" + addr, "--output=json", "db"},
		{"-o", "table", "--endpoint", "127.0.0.1:1", "secrets", "restore", "db", "--endpoint", addr, "-o", "json"},
	} {
		r := runCLI(t, "", args...)
		mustSucceed(t, r)
		if r.stdout != wantJSON {
			t.Errorf("%v: stdout %q; want %q", args, r.stdout, wantJSON)
		}
	}
}

func TestEnvironmentSetsDefaultsAndFlagsOverride(t *testing.T) {
	f, addr := startFake(t)
	f.respond("RestoreSecret", &cofferv1.RestoreSecretResponse{Arn: "arn:coffer:1", Name: "db"})
	t.Setenv("COFFER_ENDPOINT", addr)
	t.Setenv("COFFER_OUTPUT", "json")

	r := runCLI(t, "", "secrets", "restore", "db")
	mustSucceed(t, r)
	if want := "{\n  \"arn\": \"arn:coffer:1\",\n  \"name\": \"db\"\n}\n"; r.stdout != want {
		t.Errorf("with COFFER_OUTPUT=json stdout %q; want %q", r.stdout, want)
	}

	r = runCLI(t, "", "secrets", "restore", "db", "-o", "table")
	mustSucceed(t, r)
	if want := "ARN   arn:coffer:1\nName  db\n"; r.stdout != want {
		t.Errorf("with -o table stdout %q; want %q", r.stdout, want)
	}
}

func TestTLS(t *testing.T) {
	certPEM, serverCert := selfSignedCert(t)
	f, addr := startFake(t, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serverCert}})))
	f.respond("RestoreSecret", &cofferv1.RestoreSecretResponse{Arn: "arn:coffer:1", Name: "db"})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	r := runCLI(t, "", "--endpoint", addr, "--ca-file", caFile, "secrets", "restore", "db")
	mustSucceed(t, r)
	if want := "ARN   arn:coffer:1\nName  db\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}

	t.Setenv("COFFER_CA_FILE", caFile)
	t.Setenv("COFFER_TLS", "true")
	mustSucceed(t, runCLI(t, "", "--endpoint", addr, "secrets", "restore", "db"))

	// The system roots do not trust the test's certificate.
	t.Setenv("COFFER_CA_FILE", "")
	r = runCLI(t, "", "--endpoint", addr, "--timeout", "5s", "secrets", "restore", "db")
	if r.code != exitUnreachable || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("untrusted certificate: exit %d, stderr %q; want 6 and a certificate error", r.code, r.stderr)
	}

	// A plaintext client cannot talk to a TLS server.
	t.Setenv("COFFER_TLS", "false")
	if r := runCLI(t, "", "--endpoint", addr, "--timeout", "2s", "secrets", "restore", "db"); r.code != exitUnreachable {
		t.Errorf("plaintext to TLS server: exit %d, stderr %q; want 6", r.code, r.stderr)
	}

	if n := len(f.received()); n != 2 {
		t.Errorf("server answered %d requests; want 2 (the trusted ones)", n)
	}
}

func TestMissingCAFileFails(t *testing.T) {
	r := runCLI(t, "", "secrets", "describe", "x", "--ca-file", filepath.Join(t.TempDir(), "none.pem"))
	if r.code != exitFailure || !strings.HasPrefix(r.stderr, "coffer: --ca-file: open ") {
		t.Errorf("exit %d, stderr %q; want 1 and the open error", r.code, r.stderr)
	}
}

// selfSignedCert returns a certificate for 127.0.0.1 as PEM and as a key pair.
func selfSignedCert(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "coffer test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, pair
}
