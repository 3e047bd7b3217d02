package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

const plaintext = "hunter2-do-not-print"

var (
	created = timestamppb.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	changed = timestamppb.New(time.Date(2026, 3, 2, 8, 30, 0, 0, time.FixedZone("CET", 3600)))
)

func TestCreate(t *testing.T) {
	f, addr := startFake(t)
	f.respond("CreateSecret", &cofferv1.CreateSecretResponse{Arn: "arn:coffer:secret:prod/db-AbCdEf", Name: "prod/db", VersionId: "v1"})

	r := runCLI(t, "", "--endpoint", addr, "secrets", "create", "prod/db",
		"--value", plaintext, "--description", "main database", "--kms-key-id", "alias/db",
		"--tag", "env=prod", "--tag", "team=", "--tag", "note=a=b")
	mustSucceed(t, r)
	if want := "ARN        arn:coffer:secret:prod/db-AbCdEf\nName       prod/db\nVersionId  v1\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}
	req := onlyRequest[*cofferv1.CreateSecretRequest](t, f, "CreateSecret")
	if !uuidV4.MatchString(req.GetClientRequestToken()) {
		t.Errorf("client_request_token %q; want a generated UUID", req.GetClientRequestToken())
	}
	wantProto(t, req, &cofferv1.CreateSecretRequest{
		Name:               "prod/db",
		ClientRequestToken: req.GetClientRequestToken(),
		Description:        "main database",
		KmsKeyId:           "alias/db",
		SecretString:       proto.String(plaintext),
		Tags: []*cofferv1.Tag{
			{Key: "env", Value: "prod"},
			{Key: "team", Value: ""},
			{Key: "note", Value: "a=b"},
		},
	})
}

func TestCreateWithoutValueSendsNone(t *testing.T) {
	f, addr := startFake(t)
	f.respond("CreateSecret", &cofferv1.CreateSecretResponse{Arn: "arn:1", Name: "empty"})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "create", "empty")
	mustSucceed(t, r)
	if want := "ARN   arn:1\nName  empty\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q (no VersionId row)", r.stdout, want)
	}
	req := onlyRequest[*cofferv1.CreateSecretRequest](t, f, "CreateSecret")
	if req.SecretString != nil || req.SecretBinary != nil {
		t.Errorf("request carries a value (%v, %v); want none", req.SecretString, req.SecretBinary)
	}
}

func TestTokens(t *testing.T) {
	f, addr := startFake(t)
	create := []string{"--endpoint", addr, "secrets", "create", "n", "--value", "v"}
	mustSucceed(t, runCLI(t, "", create...))
	mustSucceed(t, runCLI(t, "", create...))
	mustSucceed(t, runCLI(t, "", append(create, "--token", "11111111-2222-3333-4444-555555555555")...))
	mustSucceed(t, runCLI(t, "", "--endpoint", addr, "secrets", "put", "n", "--value", "v"))
	mustSucceed(t, runCLI(t, "", "--endpoint", addr, "secrets", "update", "n", "--value", "v", "--token", "my-token-0123456789-0123456789-01"))

	calls := f.received()
	token := func(i int) string {
		return calls[i].req.(interface{ GetClientRequestToken() string }).GetClientRequestToken()
	}
	if len(calls) != 5 {
		t.Fatalf("server received %v; want 5 calls", methods(calls))
	}
	if !uuidV4.MatchString(token(0)) || !uuidV4.MatchString(token(1)) || token(0) == token(1) {
		t.Errorf("tokens of two runs without --token: %q, %q; want two different UUIDs", token(0), token(1))
	}
	if token(2) != "11111111-2222-3333-4444-555555555555" {
		t.Errorf("token with --token: %q; want the given one", token(2))
	}
	if !uuidV4.MatchString(token(3)) {
		t.Errorf("put token %q; want a generated UUID", token(3))
	}
	if token(4) != "my-token-0123456789-0123456789-01" {
		t.Errorf("update token %q; want the given one", token(4))
	}
}

func TestValueSources(t *testing.T) {
	dir := t.TempDir()
	textFile := filepath.Join(dir, "value.txt")
	binFile := filepath.Join(dir, "value.bin")
	notText := filepath.Join(dir, "latin1.txt")
	for name, content := range map[string][]byte{textFile: []byte("from file\n"), binFile: {0, 1, 0xfe, 0xff}, notText: {'c', 0xe9}} {
		if err := os.WriteFile(name, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		stdin   string
		flags   []string
		wantStr *string
		wantBin []byte
	}{
		{"value", "", []string{"--value", "inline"}, proto.String("inline"), nil},
		{"empty value", "", []string{"--value", ""}, proto.String(""), nil},
		{"value-file", "", []string{"--value-file", textFile}, proto.String("from file\n"), nil},
		{"value-file stdin", "piped\n", []string{"--value-file", "-"}, proto.String("piped\n"), nil},
		{"binary-file", "", []string{"--binary-file", binFile}, nil, []byte{0, 1, 0xfe, 0xff}},
		{"binary-file stdin", "\x00raw", []string{"--binary-file", "-"}, nil, []byte("\x00raw")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, addr := startFake(t)
			r := runCLI(t, tt.stdin, append([]string{"--endpoint", addr, "secrets", "put", "n"}, tt.flags...)...)
			mustSucceed(t, r)
			req := onlyRequest[*cofferv1.PutSecretValueRequest](t, f, "PutSecretValue")
			wantProto(t, req, &cofferv1.PutSecretValueRequest{
				SecretId:           "n",
				ClientRequestToken: req.GetClientRequestToken(),
				SecretString:       tt.wantStr,
				SecretBinary:       tt.wantBin,
			})
		})
	}

	t.Run("missing file", func(t *testing.T) {
		f, addr := startFake(t)
		r := runCLI(t, "", "--endpoint", addr, "secrets", "put", "n", "--value-file", filepath.Join(dir, "nope"))
		if r.code != exitFailure || !strings.HasPrefix(r.stderr, "coffer: --value-file: open ") {
			t.Errorf("exit %d, stderr %q; want 1 and the open error", r.code, r.stderr)
		}
		if len(f.received()) != 0 {
			t.Error("the server was called")
		}
	})
	t.Run("text file that is not UTF-8", func(t *testing.T) {
		r := runCLI(t, "", "secrets", "put", "n", "--value-file", notText)
		if want := "coffer: --value-file " + notText + " is not UTF-8 text; use --binary-file\n"; r.code != exitUsage || !strings.HasPrefix(r.stderr, want) {
			t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, want)
		}
	})
}

func TestGet(t *testing.T) {
	f, addr := startFake(t)
	f.respond("GetSecretValue", &cofferv1.GetSecretValueResponse{
		Arn: "arn:1", Name: "prod/db", VersionId: "v2",
		SecretString:  proto.String(`{"user":"app","password":"` + plaintext + `"}`),
		VersionStages: []string{"AWSCURRENT", "blue"},
		CreatedDate:   changed,
	})

	r := runCLI(t, "", "--endpoint", addr, "secrets", "get", "prod/db", "--version-id", "v2", "--stage", "AWSCURRENT")
	mustSucceed(t, r)
	want := "ARN            arn:1\n" +
		"Name           prod/db\n" +
		"VersionId      v2\n" +
		"VersionStages  AWSCURRENT,blue\n" +
		"CreatedDate    2026-03-02T07:30:00Z\n" +
		"SecretString   {\"user\":\"app\",\"password\":\"" + plaintext + "\"}\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	wantProto(t, onlyRequest[*cofferv1.GetSecretValueRequest](t, f, "GetSecretValue"),
		&cofferv1.GetSecretValueRequest{SecretId: "prod/db", VersionId: "v2", VersionStage: "AWSCURRENT"})

	r = runCLI(t, "", "--endpoint", addr, "-o", "json", "secrets", "get", "prod/db")
	mustSucceed(t, r)
	wantJSON := `{
  "arn": "arn:1",
  "name": "prod/db",
  "versionId": "v2",
  "secretString": "{\"user\":\"app\",\"password\":\"` + plaintext + `\"}",
  "versionStages": [
    "AWSCURRENT",
    "blue"
  ],
  "createdDate": "2026-03-02T07:30:00Z"
}
`
	if r.stdout != wantJSON {
		t.Errorf("json stdout:\n%s\nwant:\n%s", r.stdout, wantJSON)
	}
}

func TestGetValueOnly(t *testing.T) {
	f, addr := startFake(t)
	f.respond("GetSecretValue", &cofferv1.GetSecretValueResponse{Name: "s", SecretString: proto.String("line1\nline2")})
	for _, output := range []string{"table", "json"} {
		r := runCLI(t, "", "--endpoint", addr, "-o", output, "secrets", "get", "s", "--value-only")
		mustSucceed(t, r)
		if r.stdout != "line1\nline2\n" {
			t.Errorf("-o %s: stdout %q; want the string and a newline", output, r.stdout)
		}
	}

	binary := []byte{0x00, 0xff, '\n', 0x80}
	f.respond("GetSecretValue", &cofferv1.GetSecretValueResponse{Name: "b", SecretBinary: binary})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "get", "b", "--value-only")
	mustSucceed(t, r)
	if r.stdout != string(binary) {
		t.Errorf("stdout %q; want the raw bytes %q", r.stdout, binary)
	}
	r = runCLI(t, "", "--endpoint", addr, "secrets", "get", "b")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "SecretBinary  base64:AP8KgA==\n") {
		t.Errorf("table stdout %q; want the value in base64", r.stdout)
	}
}

func TestGetShowsControlCharactersEscaped(t *testing.T) {
	f, addr := startFake(t)
	f.respond("GetSecretValue", &cofferv1.GetSecretValueResponse{Name: "s", SecretString: proto.String("a\tb\x1b[31m")})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "get", "s")
	mustSucceed(t, r)
	if want := "Name          s\nSecretString  \"a\\tb\\x1b[31m\"\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}
}

func TestPut(t *testing.T) {
	f, addr := startFake(t)
	f.respond("PutSecretValue", &cofferv1.PutSecretValueResponse{Arn: "arn:1", Name: "n", VersionId: "v3", VersionStages: []string{"AWSPENDING", "green"}})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "put", "n", "--value", plaintext, "--stage", "AWSPENDING", "--stage", "green")
	mustSucceed(t, r)
	if want := "ARN            arn:1\nName           n\nVersionId      v3\nVersionStages  AWSPENDING,green\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}
	req := onlyRequest[*cofferv1.PutSecretValueRequest](t, f, "PutSecretValue")
	wantProto(t, req, &cofferv1.PutSecretValueRequest{
		SecretId:           "n",
		ClientRequestToken: req.GetClientRequestToken(),
		SecretString:       proto.String(plaintext),
		VersionStages:      []string{"AWSPENDING", "green"},
	})
}

func TestUpdateSendsOnlyGivenFields(t *testing.T) {
	tests := []struct {
		name  string
		stdin string
		flags []string
		want  *cofferv1.UpdateSecretRequest
	}{
		{"description", "", []string{"--description", "new text"},
			&cofferv1.UpdateSecretRequest{Description: proto.String("new text")}},
		{"clear description", "", []string{"--description", ""},
			&cofferv1.UpdateSecretRequest{Description: proto.String("")}},
		{"kms key", "", []string{"--kms-key-id", "alias/other"},
			&cofferv1.UpdateSecretRequest{KmsKeyId: proto.String("alias/other")}},
		{"value from stdin", plaintext, []string{"--value-file", "-"},
			&cofferv1.UpdateSecretRequest{SecretString: proto.String(plaintext)}},
		{"everything", "", []string{"--description", "d", "--kms-key-id", "k", "--value", "v"},
			&cofferv1.UpdateSecretRequest{Description: proto.String("d"), KmsKeyId: proto.String("k"), SecretString: proto.String("v")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, addr := startFake(t)
			f.respond("UpdateSecret", &cofferv1.UpdateSecretResponse{Arn: "arn:1", Name: "n"})
			r := runCLI(t, tt.stdin, append([]string{"--endpoint", addr, "secrets", "update", "n"}, tt.flags...)...)
			mustSucceed(t, r)
			if want := "ARN   arn:1\nName  n\n"; r.stdout != want {
				t.Errorf("stdout %q; want %q", r.stdout, want)
			}
			req := onlyRequest[*cofferv1.UpdateSecretRequest](t, f, "UpdateSecret")
			if !uuidV4.MatchString(req.GetClientRequestToken()) {
				t.Errorf("client_request_token %q; want a generated UUID", req.GetClientRequestToken())
			}
			tt.want.SecretId = "n"
			tt.want.ClientRequestToken = req.GetClientRequestToken()
			wantProto(t, req, tt.want)
		})
	}
}

func TestDescribe(t *testing.T) {
	f, addr := startFake(t)
	f.respond("DescribeSecret", &cofferv1.DescribeSecretResponse{
		Arn:             "arn:1",
		Name:            "prod/db",
		Description:     "main database",
		RotationEnabled: true,
		RotationRules:   &cofferv1.RotationRules{AutomaticallyAfterDays: proto.Int64(30), Duration: "2h"},
		CreatedDate:     created,
		LastChangedDate: changed,
		Tags:            []*cofferv1.Tag{{Key: "env", Value: "prod"}, {Key: "team", Value: "db"}},
		VersionIdsToStages: map[string]*cofferv1.VersionStages{
			"aaa-old":  {Stages: []string{"AWSPREVIOUS"}},
			"zzz-cur":  {Stages: []string{"AWSCURRENT", "blue"}},
			"mmm-next": {Stages: []string{"AWSPENDING"}},
			"bbb-x":    {Stages: []string{"custom"}},
		},
	})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "describe", "prod/db")
	mustSucceed(t, r)
	want := `Name                prod/db
ARN                 arn:1
Description         main database
CreatedDate         2026-03-01T12:00:00Z
LastChangedDate     2026-03-02T07:30:00Z
RotationEnabled     true
RotationRules       every 30 days, window 2h
Tags                env=prod
                    team=db
VersionIdsToStages  zzz-cur: AWSCURRENT,blue
                    mmm-next: AWSPENDING
                    aaa-old: AWSPREVIOUS
                    bbb-x: custom
`
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	wantProto(t, onlyRequest[*cofferv1.DescribeSecretRequest](t, f, "DescribeSecret"), &cofferv1.DescribeSecretRequest{SecretId: "prod/db"})

	r = runCLI(t, "", "--endpoint", addr, "-o", "json", "secrets", "describe", "prod/db")
	mustSucceed(t, r)
	wantJSON := `{
  "arn": "arn:1",
  "name": "prod/db",
  "description": "main database",
  "rotationEnabled": true,
  "rotationRules": {
    "automaticallyAfterDays": "30",
    "duration": "2h"
  },
  "lastChangedDate": "2026-03-02T07:30:00Z",
  "tags": [
    {
      "key": "env",
      "value": "prod"
    },
    {
      "key": "team",
      "value": "db"
    }
  ],
  "versionIdsToStages": {
    "aaa-old": {
      "stages": [
        "AWSPREVIOUS"
      ]
    },
    "bbb-x": {
      "stages": [
        "custom"
      ]
    },
    "mmm-next": {
      "stages": [
        "AWSPENDING"
      ]
    },
    "zzz-cur": {
      "stages": [
        "AWSCURRENT",
        "blue"
      ]
    }
  },
  "createdDate": "2026-03-01T12:00:00Z"
}
`
	if r.stdout != wantJSON {
		t.Errorf("json stdout:\n%s\nwant:\n%s", r.stdout, wantJSON)
	}
}

func TestVersions(t *testing.T) {
	f, addr := startFake(t)
	f.on("ListSecretVersionIds", func(_ context.Context, req proto.Message) (proto.Message, error) {
		if req.(*cofferv1.ListSecretVersionIdsRequest).GetNextToken() == "" {
			return &cofferv1.ListSecretVersionIdsResponse{Arn: "arn:1", Name: "n", NextToken: "more", Versions: []*cofferv1.SecretVersionsListEntry{
				{VersionId: "v2", VersionStages: []string{"AWSCURRENT"}, CreatedDate: changed, LastAccessedDate: changed},
			}}, nil
		}
		return &cofferv1.ListSecretVersionIdsResponse{Arn: "arn:1", Name: "n", Versions: []*cofferv1.SecretVersionsListEntry{
			{VersionId: "v1", CreatedDate: created},
		}}, nil
	})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "versions", "n", "--include-deprecated")
	mustSucceed(t, r)
	want := `VERSION ID  STAGES      CREATED               LAST ACCESSED
v2          AWSCURRENT  2026-03-02T07:30:00Z  2026-03-02T07:30:00Z
v1          -           2026-03-01T12:00:00Z  -
`
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	calls := f.received()
	if len(calls) != 2 {
		t.Fatalf("server received %v; want 2 pages", methods(calls))
	}
	wantProto(t, calls[0].req, &cofferv1.ListSecretVersionIdsRequest{SecretId: "n", IncludeDeprecated: true})
	wantProto(t, calls[1].req, &cofferv1.ListSecretVersionIdsRequest{SecretId: "n", IncludeDeprecated: true, NextToken: "more"})

	r = runCLI(t, "", "--endpoint", addr, "-o", "json", "secrets", "versions", "n")
	mustSucceed(t, r)
	wantJSON := `{
  "versions": [
    {
      "versionId": "v2",
      "versionStages": [
        "AWSCURRENT"
      ],
      "lastAccessedDate": "2026-03-02T07:30:00Z",
      "createdDate": "2026-03-02T07:30:00Z"
    },
    {
      "versionId": "v1",
      "createdDate": "2026-03-01T12:00:00Z"
    }
  ],
  "arn": "arn:1",
  "name": "n"
}
`
	if r.stdout != wantJSON {
		t.Errorf("json stdout:\n%s\nwant:\n%s", r.stdout, wantJSON)
	}
}

func TestLabel(t *testing.T) {
	f, addr := startFake(t)
	f.respond("UpdateSecretVersionStage", &cofferv1.UpdateSecretVersionStageResponse{Arn: "arn:1", Name: "n"})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "label", "n", "AWSCURRENT", "--move-to", "v2", "--remove-from", "v1")
	mustSucceed(t, r)
	if want := "ARN   arn:1\nName  n\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}
	wantProto(t, onlyRequest[*cofferv1.UpdateSecretVersionStageRequest](t, f, "UpdateSecretVersionStage"),
		&cofferv1.UpdateSecretVersionStageRequest{SecretId: "n", VersionStage: "AWSCURRENT", MoveToVersionId: "v2", RemoveFromVersionId: "v1"})
}

func TestDeleteSendsOnlyGivenOptions(t *testing.T) {
	tests := []struct {
		flags []string
		want  *cofferv1.DeleteSecretRequest
	}{
		{nil, &cofferv1.DeleteSecretRequest{SecretId: "n"}},
		{[]string{"--recovery-window-days", "7"}, &cofferv1.DeleteSecretRequest{SecretId: "n", RecoveryWindowInDays: proto.Int64(7)}},
		{[]string{"--force"}, &cofferv1.DeleteSecretRequest{SecretId: "n", ForceDeleteWithoutRecovery: proto.Bool(true)}},
		{[]string{"--force=false"}, &cofferv1.DeleteSecretRequest{SecretId: "n", ForceDeleteWithoutRecovery: proto.Bool(false)}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.flags, " "), func(t *testing.T) {
			f, addr := startFake(t)
			f.respond("DeleteSecret", &cofferv1.DeleteSecretResponse{Arn: "arn:1", Name: "n", DeletionDate: created})
			r := runCLI(t, "", append([]string{"--endpoint", addr, "secrets", "delete", "n"}, tt.flags...)...)
			mustSucceed(t, r)
			if want := "ARN           arn:1\nName          n\nDeletionDate  2026-03-01T12:00:00Z\n"; r.stdout != want {
				t.Errorf("stdout %q; want %q", r.stdout, want)
			}
			wantProto(t, onlyRequest[*cofferv1.DeleteSecretRequest](t, f, "DeleteSecret"), tt.want)
		})
	}
}

func TestRestore(t *testing.T) {
	f, addr := startFake(t)
	f.respond("RestoreSecret", &cofferv1.RestoreSecretResponse{Arn: "arn:1", Name: "n"})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "restore", "n")
	mustSucceed(t, r)
	if want := "ARN   arn:1\nName  n\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}
	wantProto(t, onlyRequest[*cofferv1.RestoreSecretRequest](t, f, "RestoreSecret"), &cofferv1.RestoreSecretRequest{SecretId: "n"})

	// After "--" an argument that looks like a flag is a secret name.
	mustSucceed(t, runCLI(t, "", "--endpoint", addr, "secrets", "restore", "--", "-odd"))
	calls := f.received()
	wantProto(t, calls[len(calls)-1].req, &cofferv1.RestoreSecretRequest{SecretId: "-odd"})
}

func TestTagAndUntag(t *testing.T) {
	f, addr := startFake(t)
	r := runCLI(t, "", "--endpoint", addr, "secrets", "tag", "n", "env=prod", "owner=")
	mustSucceed(t, r)
	if r.stdout != "" {
		t.Errorf("tag stdout %q; want nothing", r.stdout)
	}
	wantProto(t, onlyRequest[*cofferv1.TagResourceRequest](t, f, "TagResource"), &cofferv1.TagResourceRequest{
		SecretId: "n", Tags: []*cofferv1.Tag{{Key: "env", Value: "prod"}, {Key: "owner"}},
	})

	r = runCLI(t, "", "--endpoint", addr, "-o", "json", "secrets", "untag", "n", "env", "owner")
	mustSucceed(t, r)
	if r.stdout != "{}\n" {
		t.Errorf("untag json stdout %q; want {}", r.stdout)
	}
	calls := f.received()
	wantProto(t, calls[len(calls)-1].req, &cofferv1.UntagResourceRequest{SecretId: "n", TagKeys: []string{"env", "owner"}})
}

// TestNoValueInOutput checks that commands that send a value never echo it.
func TestNoValueInOutput(t *testing.T) {
	f, addr := startFake(t)
	f.respond("CreateSecret", &cofferv1.CreateSecretResponse{Arn: "arn:1", Name: "n", VersionId: "v1"})
	f.respond("PutSecretValue", &cofferv1.PutSecretValueResponse{Arn: "arn:1", Name: "n", VersionId: "v2"})
	f.respond("UpdateSecret", &cofferv1.UpdateSecretResponse{Arn: "arn:1", Name: "n", VersionId: "v3"})
	for _, verb := range []string{"create", "put", "update"} {
		for _, output := range []string{"table", "json"} {
			r := runCLI(t, "", "--endpoint", addr, "-o", output, "secrets", verb, "n", "--value", plaintext)
			mustSucceed(t, r)
			if strings.Contains(r.stdout, plaintext) || !strings.Contains(r.stdout, "arn:1") {
				t.Errorf("%s -o %s printed %q; want the ARN and not the value", verb, output, r.stdout)
			}
		}
	}
}
