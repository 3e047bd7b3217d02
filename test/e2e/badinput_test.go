package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
)

// rawCodec sends and receives message bytes as they are, so a test can put
// arbitrary bytes on the wire where a protobuf request belongs. It names
// itself "proto" so the request carries the content type the server expects.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

// TestBadInput sends requests the server must refuse, each of which must
// come back with the AWS error type the server documents, then sends bytes
// that are not protobuf at all; the node must keep serving, and its log must
// not contain any of the values the requests carried.
func TestBadInput(t *testing.T) {
	t.Parallel()
	n := startNode(t, t.TempDir())
	sm := n.sm
	ctx := t.Context()

	// Every value sent in this test contains marker, so the log check at the
	// end covers them all.
	marker := "BADINPUT-" + randHex(t, 16)
	const name = "e2e/bad/secret"
	tok := newToken(t)
	created := must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: tok, SecretString: ptr(marker + "-good")}))(t)

	filters := func(count int) []*cofferv1.Filter {
		var fs []*cofferv1.Filter
		for range count {
			fs = append(fs, &cofferv1.Filter{Key: "name", Values: []string{"e2e"}})
		}
		return fs
	}
	oversized := marker + strings.Repeat("x", 65537-len(marker))

	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"name with a space", func() error {
			_, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "e2e/bad name", SecretString: ptr(marker)})
			return err
		}, "ValidationException"},
		{"name with a colon", func() error {
			_, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "e2e:bad", SecretString: ptr(marker)})
			return err
		}, "ValidationException"},
		{"name of 513 characters", func() error {
			_, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: strings.Repeat("n", 513), SecretString: ptr(marker)})
			return err
		}, "ValidationException"},
		{"empty name", func() error {
			_, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{SecretString: ptr(marker)})
			return err
		}, "ValidationException"},
		{"value of 65537 bytes", func() error {
			_, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "e2e/bad/big", SecretString: ptr(oversized)})
			return err
		}, "ValidationException"},
		{"binary value of 65537 bytes", func() error {
			_, err := sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, SecretBinary: []byte(oversized)})
			return err
		}, "ValidationException"},
		{"token of 31 characters", func() error {
			_, err := sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, ClientRequestToken: strings.Repeat("t", 31), SecretString: ptr(marker)})
			return err
		}, "ValidationException"},
		{"token of 65 characters", func() error {
			_, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "e2e/bad/token", ClientRequestToken: strings.Repeat("t", 65), SecretString: ptr(marker)})
			return err
		}, "ValidationException"},
		{"unknown version id", func() error {
			_, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: name, VersionId: newToken(t)})
			return err
		}, "ResourceNotFoundException"},
		{"unknown staging label", func() error {
			_, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: name, VersionStage: "AWSPREVIOUS"})
			return err
		}, "ResourceNotFoundException"},
		{"version id and a stage it does not have", func() error {
			_, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: name, VersionId: tok, VersionStage: "AWSPENDING"})
			return err
		}, "InvalidRequestException"},
		{"unknown secret", func() error {
			_, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "e2e/bad/missing"})
			return err
		}, "ResourceNotFoundException"},
		{"empty secret id", func() error {
			_, err := sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{})
			return err
		}, "InvalidParameterException"},
		{"both string and binary", func() error {
			_, err := sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, SecretString: ptr(marker), SecretBinary: []byte(marker)})
			return err
		}, "InvalidParameterException"},
		{"no value to put", func() error {
			_, err := sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, ClientRequestToken: newToken(t)})
			return err
		}, "InvalidRequestException"},
		{"reserved tag key", func() error {
			_, err := sm.TagResource(ctx, &cofferv1.TagResourceRequest{SecretId: name, Tags: []*cofferv1.Tag{{Key: "aws:owner", Value: "x"}}})
			return err
		}, "InvalidParameterException"},
		{"11 filters", func() error {
			_, err := sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{Filters: filters(11)})
			return err
		}, "ValidationException"},
		{"unknown filter key", func() error {
			_, err := sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{{Key: "colour", Values: []string{"red"}}}})
			return err
		}, "ValidationException"},
		{"filter value outside the pattern", func() error {
			_, err := sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{{Key: "name", Values: []string{"a*b"}}}})
			return err
		}, "ValidationException"},
		{"ListSecrets max_results 0", func() error {
			_, err := sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{MaxResults: ptr(int32(0))})
			return err
		}, "ValidationException"},
		{"ListSecrets max_results 101", func() error {
			_, err := sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{MaxResults: ptr(int32(101))})
			return err
		}, "ValidationException"},
		{"ListSecretVersionIds max_results 101", func() error {
			_, err := sm.ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: name, MaxResults: ptr(int32(101))})
			return err
		}, "ValidationException"},
		{"BatchGetSecretValue max_results 21", func() error {
			_, err := sm.BatchGetSecretValue(ctx, &cofferv1.BatchGetSecretValueRequest{Filters: filters(1), MaxResults: ptr(int32(21))})
			return err
		}, "ValidationException"},
		{"BatchGetSecretValue with ids and filters", func() error {
			_, err := sm.BatchGetSecretValue(ctx, &cofferv1.BatchGetSecretValueRequest{SecretIdList: []string{name}, Filters: filters(1)})
			return err
		}, "InvalidParameterException"},
		{"unknown sort key", func() error {
			_, err := sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{SortBy: "size"})
			return err
		}, "ValidationException"},
		{"forged next token", func() error {
			_, err := sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{NextToken: "not-a-token"})
			return err
		}, "InvalidNextTokenException"},
		{"recovery window of 6 days", func() error {
			_, err := sm.DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: name, RecoveryWindowInDays: ptr(int64(6))})
			return err
		}, "InvalidParameterException"},
		{"password of 4097 characters", func() error {
			_, err := sm.GetRandomPassword(ctx, &cofferv1.GetRandomPasswordRequest{PasswordLength: ptr(int64(4097))})
			return err
		}, "ValidationException"},
		{"password with every character excluded", func() error {
			_, err := sm.GetRandomPassword(ctx, &cofferv1.GetRandomPasswordRequest{ExcludeLowercase: true, ExcludeUppercase: true, ExcludeNumbers: true, ExcludePunctuation: true})
			return err
		}, "InvalidParameterException"},
	}
	for _, tt := range tests {
		err := tt.call()
		if err == nil {
			t.Errorf("%s: call succeeded, want %s", tt.name, tt.want)
			continue
		}
		wantType(t, err, tt.want)
	}

	// A refused request still carries the request id that its log line has.
	var header, trailer metadata.MD
	_, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "e2e/bad id", SecretString: ptr(marker)}, grpc.Header(&header), grpc.Trailer(&trailer))
	wantType(t, err, "ValidationException")
	requestID := append(header.Get(server.RequestIDHeader), trailer.Get(server.RequestIDHeader)...)
	if len(requestID) != 1 || requestID[0] == "" {
		t.Errorf("refused CreateSecret came back with request ids %q in %s, want one", requestID, server.RequestIDHeader)
		requestID = []string{"(none)"}
	}

	// None of the refused writes changed the secret.
	wantStages(t, sm, name, map[string][]string{tok: {"AWSCURRENT"}})
	if _, err := sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: "e2e/bad/big"}); err == nil {
		t.Errorf("the oversized CreateSecret created a secret")
	}

	t.Run("bytes that are not protobuf", func(t *testing.T) {
		// Each payload is malformed whatever random bytes follow its prefix:
		// a length that runs past the end, wire type 7 (which does not
		// exist), and a varint longer than ten bytes.
		prefixes := [][]byte{
			{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f},
			{0x0f},
			bytes.Repeat([]byte{0xff}, 11),
		}
		for _, method := range []string{
			"/coffer.v1.SecretsManagerService/CreateSecret",
			"/coffer.v1.SecretsManagerService/GetSecretValue",
			"/coffer.v1.SecretsManagerService/PutSecretValue",
		} {
			for _, prefix := range prefixes {
				tail := make([]byte, 64)
				if _, err := rand.Read(tail); err != nil {
					t.Fatal(err)
				}
				body := append(append([]byte{}, prefix...), tail...)
				var reply []byte
				err := n.conn.Invoke(ctx, method, &body, &reply, grpc.ForceCodec(rawCodec{}))
				if err == nil {
					t.Errorf("%s accepted %x and answered %x", method, body, reply)
					continue
				}
				if code := status.Code(err); code == codes.Unavailable || code == codes.Unknown {
					t.Errorf("%s with %x: %v; the node should refuse the request, not fail", method, body, err)
				}
			}
		}

		// An empty body is a valid, empty request, refused by validation.
		var reply []byte
		empty := []byte{}
		err := n.conn.Invoke(ctx, "/coffer.v1.SecretsManagerService/CreateSecret", &empty, &reply, grpc.ForceCodec(rawCodec{}))
		wantType(t, err, "ValidationException")
		err = n.conn.Invoke(ctx, "/coffer.v1.SecretsManagerService/GetSecretValue", &empty, &reply, grpc.ForceCodec(rawCodec{}))
		wantType(t, err, "InvalidParameterException")

		if !n.running() {
			t.Fatalf("cofferd exited after garbage requests")
		}
		wantValue(t, sm, &cofferv1.GetSecretValueRequest{SecretId: name}, created.GetVersionId(), marker+"-good")
	})

	n.stop()
	log := n.readLog()
	if bytes.Contains(log, []byte(marker)) {
		t.Errorf("the node's log contains a secret value (marker %s)", marker)
	}
	found := false
	for _, line := range strings.Split(string(log), "\n") {
		var rec struct {
			RequestID string `json:"request_id"`
			Method    string `json:"method"`
			ErrorType string `json:"error_type"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.RequestID == requestID[0] {
			found = true
			if rec.ErrorType != "ValidationException" || rec.Method != "/coffer.v1.SecretsManagerService/CreateSecret" {
				t.Errorf("log line of request %s: %s", requestID[0], line)
			}
		}
	}
	if !found {
		t.Errorf("no JSON log line has request_id %s", requestID[0])
	}
}
