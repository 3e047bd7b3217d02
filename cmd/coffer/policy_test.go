package main

import (
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

const policyDoc = `{
  "Version": "2012-10-17",
  "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]
}`

func TestPolicyGet(t *testing.T) {
	f, addr := startFake(t)
	f.respond("GetResourcePolicy", &cofferv1.GetResourcePolicyResponse{Arn: "arn:1", Name: "n", ResourcePolicy: proto.String(policyDoc)})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "policy", "get", "n")
	mustSucceed(t, r)
	want := "ARN             arn:1\nName            n\n" +
		`ResourcePolicy  {"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}` + "\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	wantProto(t, onlyRequest[*cofferv1.GetResourcePolicyRequest](t, f, "GetResourcePolicy"), &cofferv1.GetResourcePolicyRequest{SecretId: "n"})

	f.respond("GetResourcePolicy", &cofferv1.GetResourcePolicyResponse{Arn: "arn:1", Name: "n"})
	r = runCLI(t, "", "--endpoint", addr, "secrets", "policy", "get", "n")
	mustSucceed(t, r)
	if want := "ARN             arn:1\nName            n\nResourcePolicy  (none)\n"; r.stdout != want {
		t.Errorf("without a policy stdout %q; want %q", r.stdout, want)
	}
	r = runCLI(t, "", "--endpoint", addr, "-o", "json", "secrets", "policy", "get", "n")
	mustSucceed(t, r)
	if want := "{\n  \"arn\": \"arn:1\",\n  \"name\": \"n\"\n}\n"; r.stdout != want {
		t.Errorf("json without a policy stdout %q; want %q", r.stdout, want)
	}
}

func TestPolicyPut(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(file, []byte(policyDoc), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		stdin string
		flags []string
		block *bool
	}{
		{"file", "", []string{"--file", file}, nil},
		{"stdin", policyDoc, []string{"--file", "-"}, nil},
		{"inline, allow public", "", []string{"--policy", policyDoc, "--block-public-policy=false"}, proto.Bool(false)},
		{"inline, block public", "", []string{"--policy", policyDoc, "--block-public-policy"}, proto.Bool(true)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, addr := startFake(t)
			f.respond("PutResourcePolicy", &cofferv1.PutResourcePolicyResponse{Arn: "arn:1", Name: "n"})
			r := runCLI(t, tt.stdin, append([]string{"--endpoint", addr, "secrets", "policy", "put", "n"}, tt.flags...)...)
			mustSucceed(t, r)
			if want := "ARN   arn:1\nName  n\n"; r.stdout != want {
				t.Errorf("stdout %q; want %q", r.stdout, want)
			}
			wantProto(t, onlyRequest[*cofferv1.PutResourcePolicyRequest](t, f, "PutResourcePolicy"),
				&cofferv1.PutResourcePolicyRequest{SecretId: "n", ResourcePolicy: policyDoc, BlockPublicPolicy: tt.block})
		})
	}
}

// TestPolicyPutWarns: the server's warnings about a stored policy (a
// condition key Coffer never sets) are printed on stderr, the answer as
// usual on stdout.
func TestPolicyPutWarns(t *testing.T) {
	f, addr := startFake(t)
	f.respond("PutResourcePolicy", &cofferv1.PutResourcePolicyResponse{Arn: "arn:1", Name: "n",
		Warnings: []string{"Statement[0]: Coffer never sets the condition key aws:SourceVpce, so …"}})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "policy", "put", "n", "--policy", policyDoc)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if want := "ARN   arn:1\nName  n\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}
	if want := "coffer: warning: Statement[0]: Coffer never sets the condition key aws:SourceVpce, so …\n"; r.stderr != want {
		t.Errorf("stderr %q; want %q", r.stderr, want)
	}
}

func TestPolicyDelete(t *testing.T) {
	f, addr := startFake(t)
	f.respond("DeleteResourcePolicy", &cofferv1.DeleteResourcePolicyResponse{Arn: "arn:1", Name: "n"})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "policy", "delete", "n")
	mustSucceed(t, r)
	if want := "ARN   arn:1\nName  n\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}
	wantProto(t, onlyRequest[*cofferv1.DeleteResourcePolicyRequest](t, f, "DeleteResourcePolicy"), &cofferv1.DeleteResourcePolicyRequest{SecretId: "n"})
}

func TestPolicyValidate(t *testing.T) {
	f, addr := startFake(t)
	f.respond("ValidateResourcePolicy", &cofferv1.ValidateResourcePolicyResponse{PolicyValidationPassed: true})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "policy", "validate", "--policy", policyDoc)
	mustSucceed(t, r)
	if want := "PolicyValidationPassed  true\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}
	wantProto(t, onlyRequest[*cofferv1.ValidateResourcePolicyRequest](t, f, "ValidateResourcePolicy"),
		&cofferv1.ValidateResourcePolicyRequest{ResourcePolicy: policyDoc})

	f.respond("ValidateResourcePolicy", &cofferv1.ValidateResourcePolicyResponse{ValidationErrors: []*cofferv1.ValidationError{
		{CheckName: "BROAD_ACCESS", ErrorMessage: "grants access to everyone"},
		{CheckName: "SYNTAX", ErrorMessage: "unknown key Foo"},
	}})
	r = runCLI(t, `{"Foo":1}`, "--endpoint", addr, "secrets", "policy", "validate", "n", "--file", "-")
	if r.code != exitRejected || r.stderr != "coffer: policy failed validation (2 problems)\n" {
		t.Errorf("exit %d, stderr %q; want 5 and the failure", r.code, r.stderr)
	}
	want := "PolicyValidationPassed  false\n" +
		"ValidationErrors        BROAD_ACCESS: grants access to everyone\n" +
		"                        SYNTAX: unknown key Foo\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	calls := f.received()
	wantProto(t, calls[len(calls)-1].req, &cofferv1.ValidateResourcePolicyRequest{SecretId: "n", ResourcePolicy: `{"Foo":1}`})
}
