package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
)

// auditLine is the part of an audit record the test reads.
type auditLine struct {
	RequestID string `json:"request_id"`
	Principal string `json:"principal"`
	Protocol  string `json:"protocol"`
	Operation string `json:"operation"`
	SecretARN string `json:"secret_arn"`
	Outcome   string `json:"outcome"`
	ErrorType string `json:"error_type"`
	Decision  string `json:"decision"`
}

// TestAuditTrail runs a scripted workload against a real cofferd and then
// reads its audit log as an operator would: every request is there under
// its request id with the right outcome, the canary value is nowhere in it,
// "coffer audit verify" accepts it, and editing, deleting or swapping a line
// makes verify fail at that line. Finally the log is made unwritable and a
// read fails instead of going unaudited.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	n := startNode(t, dir)
	ctx := t.Context()
	sm := n.sm
	logPath := filepath.Join(n.dataDir, "audit.log")

	canary := "AUDIT-CANARY-" + randHex(t, 16)
	type call struct {
		op, outcome, errType string
		id                   string
	}
	var calls []call
	// do makes one call, remembers the request id the node answered with and
	// what the audit record must say about it.
	do := func(op string, f func(opt grpc.CallOption) error, wantErr string) {
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
		c := call{op: op, outcome: "success", id: ids[0]}
		if wantErr != "" {
			c.outcome, c.errType = "error", wantErr
		}
		calls = append(calls, c)
	}
	var arn string
	do("CreateSecret", func(o grpc.CallOption) error {
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
	do("PutSecretValue", func(o grpc.CallOption) error {
		_, err := sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: arn, ClientRequestToken: newToken(t), SecretString: ptr("next " + canary)}, o)
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
		case l.Operation != c.op || l.Outcome != c.outcome || l.ErrorType != c.errType || l.Principal != "root" || l.Protocol != "grpc" || l.Decision != "allow":
			t.Errorf("request %s audited as %+v, want operation %s outcome %s error %q by root over grpc, allowed", c.id, l, c.op, c.outcome, c.errType)
		}
	}
	if l := byID[calls[1].id]; l.SecretARN != arn {
		t.Errorf("GetSecretValue audited with secret_arn %q, want %q", l.SecretARN, arn)
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

	// Fail closed: with the log replaced by a directory nothing can be
	// written, so a read fails and returns no value.
	if err := os.Rename(logPath, logPath+".saved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(logPath, 0o700); err != nil {
		t.Fatal(err)
	}
	r, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: arn})
	wantType(t, err, server.TypeInternalServiceError)
	if r.GetSecretString() != "" {
		t.Error("a read answered with a value although it could not be audited")
	}
	if strings.Contains(err.Error(), canary) {
		t.Error("the error carries the secret value")
	}
	// Once the operator puts a writable file back, requests are served again.
	if err := os.Remove(logPath); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() error {
		_, err := sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: arn})
		return err
	})
}

func ensureNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}
