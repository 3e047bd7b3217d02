package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	smithymiddleware "github.com/aws/smithy-go/middleware"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/wait"
)

// auditLine is the part of an audit record the test reads.
type auditLine struct {
	RequestID string            `json:"request_id"`
	Principal string            `json:"principal"`
	Protocol  string            `json:"protocol"`
	Operation string            `json:"operation"`
	SecretARN string            `json:"secret_arn"`
	VersionID string            `json:"version_id"`
	Outcome   string            `json:"outcome"`
	ErrorType string            `json:"error_type"`
	Decision  string            `json:"decision"`
	Params    map[string]string `json:"params"`
	Secrets   []struct {
		ARN       string `json:"arn"`
		VersionID string `json:"version_id"`
		ErrorType string `json:"error_type"`
	} `json:"secrets"`
}

// sdkClient is an AWS SDK Secrets Manager client for n, signing with the
// given key (SigV4).
func sdkClient(n *node, id, secret string) *secretsmanager.Client {
	return secretsmanager.New(secretsmanager.Options{
		Region:       testRegion,
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, ""),
		BaseEndpoint: aws.String("http://" + n.awsAddr),
		Retryer:      aws.NopRetryer{},
		HTTPClient:   &http.Client{Timeout: rpcTimeout},
	})
}

// sdkRequestID is the request id an AWS SDK call was answered with, from
// its result metadata or its error.
func sdkRequestID(t *testing.T, md smithymiddleware.Metadata, err error) string {
	t.Helper()
	if err != nil {
		var re *awshttp.ResponseError
		if !errors.As(err, &re) {
			t.Fatalf("error %v carries no response", err)
		}
		return re.ServiceRequestID()
	}
	id, ok := awsmiddleware.GetRequestIDMetadata(md)
	if !ok {
		t.Fatal("the response has no request id")
	}
	return id
}

// sdkErrorType is the AWS error type of an SDK error.
func sdkErrorType(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// TestAuditTrail runs a scripted workload against a real cofferd — gRPC and
// SigV4-signed AWS API calls, a denied request, a failed authentication, a
// batch read — and then reads its audit log as an operator would: every
// request is there under its request id with the right principal,
// decision and outcome, the canary value is nowhere in it but its hash
// ("coffer audit hash") is, in the records of the requests that carried
// it, "coffer audit verify" accepts it, and editing, deleting or swapping a
// line makes verify fail at that line. Finally the log's disk fills up:
// requests fail instead of going unaudited, and once the log is broken
// writes and snapshots are refused before they act.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	n := startNode(t, dir)
	ctx := t.Context()
	sm := n.sm
	logPath := filepath.Join(n.dataDir, "audit.log")

	canary := "AUDIT-CANARY-" + randHex(t, 16)
	next := "next " + canary
	type call struct {
		op, outcome, errType string
		id                   string
		principal, protocol  string
		decision             string
	}
	var calls []call
	// expect remembers what the audit record of request id must say.
	expect := func(op, id, principal, protocol, decision, errType string) int {
		c := call{op: op, id: id, principal: principal, protocol: protocol, decision: decision, outcome: "success", errType: errType}
		if errType != "" {
			c.outcome = "error"
		}
		calls = append(calls, c)
		return len(calls) - 1
	}
	// do makes one gRPC call as root, remembers the request id the node
	// answered with and what the audit record must say about it.
	do := func(op string, f func(opt grpc.CallOption) error, wantErr string) int {
		t.Helper()
		var hdr metadata.MD
		err := f(grpc.Header(&hdr))
		if wantErr == "" && err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		if wantErr != "" {
			wantType(t, err, wantErr)
		}
		ids := hdr.Get(server.RequestIDHeader)
		if len(ids) != 1 {
			t.Fatalf("%s: response header %s = %v", op, server.RequestIDHeader, ids)
		}
		return expect(op, ids[0], "root", "grpc", "allow", wantErr)
	}
	var arn, nextVersion string
	created := do("CreateSecret", func(o grpc.CallOption) error {
		r, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "e2e/audit/db", ClientRequestToken: newToken(t), SecretString: ptr(canary)}, o)
		arn = r.GetArn()
		return err
	}, "")
	for i := range 3 {
		do("GetSecretValue", func(o grpc.CallOption) error {
			r, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "e2e/audit/db"}, o)
			if err == nil && r.GetSecretString() != canary {
				return fmt.Errorf("read %d returned another value", i)
			}
			return err
		}, "")
	}
	put := do("PutSecretValue", func(o grpc.CallOption) error {
		r, err := sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: arn, ClientRequestToken: newToken(t), SecretString: ptr(next)}, o)
		nextVersion = r.GetVersionId()
		return err
	}, "")
	do("DescribeSecret", func(o grpc.CallOption) error {
		_, err := sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: arn}, o)
		return err
	}, "")
	do("GetSecretValue", func(o grpc.CallOption) error {
		_, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "e2e/audit/missing"}, o)
		return err
	}, server.TypeResourceNotFound)
	do("CreateSecret", func(o grpc.CallOption) error {
		_, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "e2e/audit/db", SecretString: ptr(canary)}, o)
		return err
	}, server.TypeResourceExists)
	do("ListSecrets", func(o grpc.CallOption) error {
		_, err := sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{}, o)
		return err
	}, "")
	batch := do("BatchGetSecretValue", func(o grpc.CallOption) error {
		_, err := sm.BatchGetSecretValue(ctx, &cofferv1.BatchGetSecretValueRequest{SecretIdList: []string{arn, "e2e/audit/missing"}}, o)
		return err
	}, "")

	// The AWS API, signed with SigV4: as root, as a principal with no
	// policy (denied), and with a wrong secret (not authenticated).
	iam := cofferv1.NewIAMServiceClient(n.conn)
	must(iam.CreatePrincipal(ctx, &cofferv1.CreatePrincipalRequest{Name: "e2e-nopolicy"}))(t)
	key := must(iam.CreateAccessKey(ctx, &cofferv1.CreateAccessKeyRequest{Principal: "e2e-nopolicy"}))(t)
	root := sdkClient(n, rootAccessKeyID, rootSecretAccessKey)
	gout, err := root.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil || aws.ToString(gout.SecretString) != next {
		t.Fatalf("GetSecretValue over the AWS API: %v", err)
	}
	awsRead := expect("GetSecretValue", sdkRequestID(t, gout.ResultMetadata, nil), "root", "aws", "allow", "")
	bout, err := root.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{SecretIdList: []string{"e2e/audit/db"}})
	if err != nil || len(bout.SecretValues) != 1 {
		t.Fatalf("BatchGetSecretValue over the AWS API: %v", err)
	}
	awsBatch := expect("BatchGetSecretValue", sdkRequestID(t, bout.ResultMetadata, nil), "root", "aws", "allow", "")
	_, err = sdkClient(n, key.GetAccessKeyId(), key.GetSecretAccessKey()).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if sdkErrorType(err) != server.TypeAccessDeniedException {
		t.Fatalf("GetSecretValue by a principal without policies = %v, want AccessDeniedException", err)
	}
	expect("GetSecretValue", sdkRequestID(t, smithymiddleware.Metadata{}, err), "e2e-nopolicy", "aws", "deny", server.TypeAccessDeniedException)
	_, err = sdkClient(n, rootAccessKeyID, "not-the-secret").GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if sdkErrorType(err) != server.TypeInvalidSignature {
		t.Fatalf("GetSecretValue with a wrong secret = %v, want InvalidSignatureException", err)
	}
	expect("GetSecretValue", sdkRequestID(t, smithymiddleware.Metadata{}, err), "", "aws", "deny", server.TypeInvalidSignature)

	// The operator's search: the hashes of the values, from the node.
	hashOf := func(v string) string {
		t.Helper()
		f := filepath.Join(dir, "value")
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := n.cli(t, "audit", "hash", "--value-file", f)
		if code != 0 || !regexp.MustCompile(`^hmac-sha256:[0-9a-f]{64}\n$`).MatchString(out) {
			t.Fatalf("coffer audit hash: exit %d\n%s%s", code, out, errOut)
		}
		return strings.TrimSpace(out)
	}
	canaryHash, nextHash := hashOf(canary), hashOf(next)

	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []string{canary, base64.StdEncoding.EncodeToString([]byte(canary)), hex.EncodeToString([]byte(canary)), rootSecretAccessKey} {
		if bytes.Contains(raw, []byte(enc)) {
			t.Fatalf("the audit log holds %q (a secret value or key, raw or encoded)", enc[:8]+"…")
		}
	}
	byID := map[string]auditLine{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lines := 0
	for sc.Scan() {
		lines++
		var l auditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line %d is not JSON: %v", lines, err)
		}
		if _, dup := byID[l.RequestID]; dup && l.RequestID != "" {
			t.Errorf("request %s audited twice", l.RequestID)
		}
		byID[l.RequestID] = l
	}
	for _, c := range calls {
		l, ok := byID[c.id]
		switch {
		case !ok:
			t.Errorf("%s (request %s) is not in the audit log", c.op, c.id)
		case l.Operation != c.op || l.Outcome != c.outcome || l.ErrorType != c.errType || l.Principal != c.principal || l.Protocol != c.protocol || l.Decision != c.decision:
			t.Errorf("request %s audited as %+v, want operation %s outcome %s error %q by %q over %s, %s", c.id, l, c.op, c.outcome, c.errType, c.principal, c.protocol, c.decision)
		}
	}
	if l := byID[calls[1].id]; l.SecretARN != arn {
		t.Errorf("GetSecretValue audited with secret_arn %q, want %q", l.SecretARN, arn)
	}
	if l := byID[calls[awsRead].id]; l.SecretARN != arn || l.VersionID != nextVersion {
		t.Errorf("the AWS GetSecretValue audited with secret_arn %q version %q, want %q %q", l.SecretARN, l.VersionID, arn, nextVersion)
	}
	// The canary's hash is what the writes that carried it recorded.
	if got := byID[calls[created].id].Params["secret_string"]; got != canaryHash {
		t.Errorf("CreateSecret recorded secret_string %q, want the canary's hash %q", got, canaryHash)
	}
	if got := byID[calls[put].id].Params["secret_string"]; got != nextHash {
		t.Errorf("PutSecretValue recorded secret_string %q, want the value's hash %q", got, nextHash)
	}
	if !bytes.Contains(raw, []byte(canaryHash)) {
		t.Error("a grep for the canary's hash finds nothing")
	}
	// A batch read names what it read.
	if s := byID[calls[batch].id].Secrets; len(s) != 2 || s[0].ARN != arn || s[0].VersionID != nextVersion ||
		s[1].ARN != "e2e/audit/missing" || s[1].ErrorType != server.TypeResourceNotFound {
		t.Errorf("BatchGetSecretValue recorded secrets %+v, want %s@%s and the missing one", s, arn, nextVersion)
	}
	if s := byID[calls[awsBatch].id].Secrets; len(s) != 1 || s[0].ARN != arn || s[0].VersionID != nextVersion {
		t.Errorf("the AWS BatchGetSecretValue recorded secrets %+v, want %s@%s", s, arn, nextVersion)
	}

	// The operator's check: the log as written verifies.
	out, errOut, code := runCLI(t, "audit", "verify", logPath)
	if code != 0 {
		t.Fatalf("coffer audit verify on the untouched log: exit %d\n%s%s", code, out, errOut)
	}

	// Tamper with a copy: each kind of change fails verification at the line
	// that was touched (1-based).
	orig := strings.SplitAfter(strings.TrimSuffix(string(raw), "\n"), "\n")
	if len(orig) < 6 {
		t.Fatalf("audit log has %d lines, want the workload's", len(orig))
	}
	const k = 3 // the line to tamper with; lines k-1 and k+1 are untouched
	edited := append([]string(nil), orig...)
	edited[k-1] = strings.Replace(edited[k-1], `"principal":"root"`, `"principal":"nobody"`, 1)
	if edited[k-1] == orig[k-1] {
		t.Fatalf("line %d has no root principal to edit: %s", k, orig[k-1])
	}
	deleted := append(append([]string(nil), orig[:k-1]...), orig[k:]...)
	swapped := append([]string(nil), orig...)
	swapped[k-1], swapped[k] = swapped[k], swapped[k-1]
	for name, content := range map[string][]string{"edited": edited, "deleted": deleted, "swapped": swapped} {
		p := filepath.Join(dir, name+".log")
		if err := os.WriteFile(p, []byte(ensureNewline(strings.Join(content, ""))), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := runCLI(t, "audit", "verify", p)
		if code != 1 || !strings.Contains(out+errOut, fmt.Sprintf("%s:%d:", p, k)) {
			t.Errorf("verify of the %s log: exit %d, want 1 and a report at %s:%d\n%s%s", name, code, p, k, out, errOut)
		}
	}

	// Fail closed: the disk fills up. With /dev/full in the log's place
	// every write fails with ENOSPC (without it, a directory fails every
	// open). The request that finds out has acted already — a read here —
	// and fails without its value.
	if err := os.Rename(logPath, logPath+".saved"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/dev/full"); err == nil {
		if err := os.Symlink("/dev/full", logPath); err != nil {
			t.Fatal(err)
		}
	} else if err := os.Mkdir(logPath, 0o700); err != nil {
		t.Fatal(err)
	}
	r, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: arn})
	wantType(t, err, server.TypeInternalServiceError)
	if r.GetSecretString() != "" {
		t.Error("a read answered with a value although it could not be audited")
	}
	if err != nil && strings.Contains(err.Error(), canary) {
		t.Error("the error carries the secret value")
	}
	// The log is broken now: a write and a snapshot are refused before
	// they act.
	_, err = sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: arn, ClientRequestToken: newToken(t), SecretString: ptr("while broken")})
	wantType(t, err, server.TypeInternalServiceError)
	snap, err := cofferv1.NewAdminServiceClient(n.conn).SaveSnapshot(ctx, &cofferv1.SaveSnapshotRequest{})
	if err == nil {
		var m *cofferv1.SaveSnapshotResponse
		m, err = snap.Recv()
		if m != nil {
			t.Errorf("SaveSnapshot with a broken audit log streamed %v", m)
		}
	}
	wantType(t, err, server.TypeInternalServiceError)
	_, err = root.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if sdkErrorType(err) != server.TypeInternalServiceError {
		t.Errorf("GetSecretValue over the AWS API with a broken audit log = %v, want InternalServiceError", err)
	}

	// Once the operator frees the disk and puts the log back, requests are
	// served again (the first one is still refused: its record is the
	// probe), the refused write never happened, and the chain continues.
	if err := os.Remove(logPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(logPath+".saved", logPath); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 30*time.Second, func() error {
		_, err := sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: arn})
		return err
	})
	if v := must(sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: arn}))(t); v.GetSecretString() != next {
		t.Error("the write refused while the audit log was broken took effect")
	}
	if out, errOut, code := runCLI(t, "audit", "verify", logPath); code != 0 {
		t.Fatalf("coffer audit verify after the disk was full: exit %d\n%s%s", code, out, errOut)
	}
}

func ensureNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}
