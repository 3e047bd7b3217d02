package awsjson

import (
	"bytes"
	"encoding/json"
	"testing"
	"testing/quick"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/schemas"
	"github.com/aws/smithy-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// sdkShapes are the AWS SDK's input and output schemas of every operation;
// a nil output is AWS's Unit.
var sdkShapes = map[string][2]*smithy.Schema{
	"BatchGetSecretValue":          {schemas.BatchGetSecretValueRequest, schemas.BatchGetSecretValueResponse},
	"CancelRotateSecret":           {schemas.CancelRotateSecretRequest, schemas.CancelRotateSecretResponse},
	"CreateSecret":                 {schemas.CreateSecretRequest, schemas.CreateSecretResponse},
	"DeleteResourcePolicy":         {schemas.DeleteResourcePolicyRequest, schemas.DeleteResourcePolicyResponse},
	"DeleteSecret":                 {schemas.DeleteSecretRequest, schemas.DeleteSecretResponse},
	"DescribeSecret":               {schemas.DescribeSecretRequest, schemas.DescribeSecretResponse},
	"GetRandomPassword":            {schemas.GetRandomPasswordRequest, schemas.GetRandomPasswordResponse},
	"GetResourcePolicy":            {schemas.GetResourcePolicyRequest, schemas.GetResourcePolicyResponse},
	"GetSecretValue":               {schemas.GetSecretValueRequest, schemas.GetSecretValueResponse},
	"ListSecretVersionIds":         {schemas.ListSecretVersionIdsRequest, schemas.ListSecretVersionIdsResponse},
	"ListSecrets":                  {schemas.ListSecretsRequest, schemas.ListSecretsResponse},
	"PutResourcePolicy":            {schemas.PutResourcePolicyRequest, schemas.PutResourcePolicyResponse},
	"PutSecretValue":               {schemas.PutSecretValueRequest, schemas.PutSecretValueResponse},
	"RemoveRegionsFromReplication": {schemas.RemoveRegionsFromReplicationRequest, schemas.RemoveRegionsFromReplicationResponse},
	"ReplicateSecretToRegions":     {schemas.ReplicateSecretToRegionsRequest, schemas.ReplicateSecretToRegionsResponse},
	"RestoreSecret":                {schemas.RestoreSecretRequest, schemas.RestoreSecretResponse},
	"RotateSecret":                 {schemas.RotateSecretRequest, schemas.RotateSecretResponse},
	"StopReplicationToReplica":     {schemas.StopReplicationToReplicaRequest, schemas.StopReplicationToReplicaResponse},
	"TagResource":                  {schemas.TagResourceRequest, nil},
	"UntagResource":                {schemas.UntagResourceRequest, nil},
	"UpdateSecret":                 {schemas.UpdateSecretRequest, schemas.UpdateSecretResponse},
	"UpdateSecretVersionStage":     {schemas.UpdateSecretVersionStageRequest, schemas.UpdateSecretVersionStageResponse},
	"ValidateResourcePolicy":       {schemas.ValidateResourcePolicyRequest, schemas.ValidateResourcePolicyResponse},
}

// TestOperationsCoverService: every RPC is an AWS operation here, and every
// AWS operation is served.
func TestOperationsCoverService(t *testing.T) {
	methods := cofferv1.File_coffer_v1_secrets_proto.Services().ByName("SecretsManagerService").Methods()
	if methods.Len() != len(operations) || len(operations) != len(sdkShapes) {
		t.Fatalf("%d RPCs, %d operations, %d SDK operations", methods.Len(), len(operations), len(sdkShapes))
	}
	for i := range methods.Len() {
		m := methods.Get(i)
		op, ok := operations[string(m.Name())]
		if !ok {
			t.Fatalf("RPC %s has no AWS operation", m.Name())
		}
		if got := op.newInput().ProtoReflect().Descriptor(); got != m.Input() {
			t.Fatalf("%s decodes %s, the RPC takes %s", m.Name(), got.FullName(), m.Input().FullName())
		}
	}
}

// TestMemberNamesMatchSDK checks every proto field, recursively, against the
// member of the same AWS name in the SDK's model, with a compatible type:
// the PascalCase rule and its exceptions produce exactly AWS's names.
func TestMemberNamesMatchSDK(t *testing.T) {
	methods := cofferv1.File_coffer_v1_secrets_proto.Services().ByName("SecretsManagerService").Methods()
	for i := range methods.Len() {
		m := methods.Get(i)
		shapes := sdkShapes[string(m.Name())]
		checkShape(t, m.Input(), shapes[0], string(m.Name())+"Request")
		checkShape(t, m.Output(), shapes[1], string(m.Name())+"Response")
	}
}

func checkShape(t *testing.T, md protoreflect.MessageDescriptor, s *smithy.Schema, path string) {
	t.Helper()
	if s == nil { // an operation without output
		if md.Fields().Len() != 0 {
			t.Errorf("%s: AWS has no output, the proto has %d fields", path, md.Fields().Len())
		}
		return
	}
	if s.Type() != smithy.ShapeTypeStructure {
		t.Errorf("%s: SDK shape is %v, not a structure", path, s.Type())
		return
	}
	for _, mem := range shapeOf(md).members {
		p := path + "." + mem.name
		sm := s.Member(mem.name)
		if sm == nil {
			t.Errorf("%s: no such member in the AWS model (proto field %s)", p, mem.fd.FullName())
			continue
		}
		checkField(t, mem.fd, sm, p)
	}
}

func checkField(t *testing.T, fd protoreflect.FieldDescriptor, s *smithy.Schema, path string) {
	t.Helper()
	switch {
	case fd.IsList():
		if s.Type() != smithy.ShapeTypeList {
			t.Errorf("%s: repeated field, SDK type %v", path, s.Type())
			return
		}
		checkValue(t, fd, s.ListMember(), path+"[]")
	case fd.IsMap():
		if s.Type() != smithy.ShapeTypeMap {
			t.Errorf("%s: map field, SDK type %v", path, s.Type())
			return
		}
		checkValue(t, fd.MapValue(), s.MapValue(), path+"{}")
	default:
		checkValue(t, fd, s, path)
	}
}

func checkValue(t *testing.T, fd protoreflect.FieldDescriptor, s *smithy.Schema, path string) {
	t.Helper()
	want := map[protoreflect.Kind][]smithy.ShapeType{
		protoreflect.StringKind: {smithy.ShapeTypeString, smithy.ShapeTypeEnum},
		protoreflect.BoolKind:   {smithy.ShapeTypeBoolean},
		protoreflect.Int32Kind:  {smithy.ShapeTypeInteger},
		protoreflect.Int64Kind:  {smithy.ShapeTypeLong},
		protoreflect.BytesKind:  {smithy.ShapeTypeBlob},
	}
	if fd.Kind() == protoreflect.MessageKind {
		switch fd.Message().FullName() {
		case timestampName:
			if s.Type() != smithy.ShapeTypeTimestamp {
				t.Errorf("%s: timestamp, SDK type %v", path, s.Type())
			}
		case versionStagesName:
			if s.Type() != smithy.ShapeTypeList {
				t.Errorf("%s: stage list, SDK type %v", path, s.Type())
			}
		default:
			checkShape(t, fd.Message(), s, path)
		}
		return
	}
	for _, st := range want[fd.Kind()] {
		if s.Type() == st {
			return
		}
	}
	t.Errorf("%s: proto %v, SDK type %v", path, fd.Kind(), s.Type())
}

func TestDecodePresence(t *testing.T) {
	del := &cofferv1.DeleteSecretRequest{}
	if err := decodeRequest([]byte(`{"SecretId":"s","RecoveryWindowInDays":0,"ForceDeleteWithoutRecovery":false}`), del); err != nil {
		t.Fatal(err)
	}
	if del.RecoveryWindowInDays == nil || *del.RecoveryWindowInDays != 0 || del.ForceDeleteWithoutRecovery == nil || *del.ForceDeleteWithoutRecovery {
		t.Fatalf("optional zero values must be present: %v", del)
	}
	absent := &cofferv1.DeleteSecretRequest{}
	if err := decodeRequest([]byte(`{"SecretId":"s","RecoveryWindowInDays":null}`), absent); err != nil {
		t.Fatal(err)
	}
	if absent.RecoveryWindowInDays != nil || absent.ForceDeleteWithoutRecovery != nil {
		t.Fatalf("absent and null members must stay unset: %v", absent)
	}

	put := &cofferv1.PutSecretValueRequest{}
	if err := decodeRequest([]byte(`{"SecretBinary":""}`), put); err != nil {
		t.Fatal(err)
	}
	if put.SecretBinary == nil || put.SecretString != nil {
		t.Fatalf("an empty SecretBinary is present, SecretString absent: %v", put)
	}

	ls := &cofferv1.ListSecretsRequest{}
	if err := decodeRequest([]byte(`{"MaxResults":7.0,"Filters":[{"Key":"tag-key","Values":["a","!b"]}],"SortOrder":"desc"}`), ls); err != nil {
		t.Fatal(err)
	}
	want := &cofferv1.ListSecretsRequest{MaxResults: proto.Int32(7), Filters: []*cofferv1.Filter{{Key: "tag-key", Values: []string{"a", "!b"}}}, SortOrder: "desc"}
	if !proto.Equal(ls, want) {
		t.Fatalf("decoded %v, want %v", ls, want)
	}
}

// TestCodecRoundTrip encodes responses with every kind of member and decodes
// them back through the same descriptors.
func TestCodecRoundTrip(t *testing.T) {
	ts := &timestamppb.Timestamp{Seconds: 1763812345, Nanos: 123_000_000}
	msgs := []proto.Message{
		&cofferv1.DescribeSecretResponse{
			Arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:a-AbCdEf", Name: "a", RotationEnabled: true,
			RotationLambdaArn: "arn:aws:lambda:us-east-1:123456789012:function:f",
			RotationRules:     &cofferv1.RotationRules{AutomaticallyAfterDays: proto.Int64(0), ScheduleExpression: "rate(4 hours)"},
			CreatedDate:       ts, DeletedDate: &timestamppb.Timestamp{Seconds: 5},
			Tags:               []*cofferv1.Tag{{Key: "k", Value: ""}},
			VersionIdsToStages: map[string]*cofferv1.VersionStages{"v1": {Stages: []string{"AWSCURRENT"}}, "v0": {Stages: []string{"AWSPREVIOUS", "X"}}},
			ReplicationStatus:  []*cofferv1.ReplicationStatus{{Region: "eu-west-1", Status: "InSync", LastAccessedDate: ts}},
		},
		&cofferv1.GetSecretValueResponse{SecretBinary: []byte{0, 0xff, 'a'}, SecretString: proto.String("")},
		&cofferv1.BatchGetSecretValueResponse{Errors: []*cofferv1.APIError{{SecretId: "x", ErrorCode: "E", Message: "m\n\"\\"}}},
	}
	for _, m := range msgs {
		b := encodeResponse(nil, m)
		if !json.Valid(b) {
			t.Fatalf("invalid JSON %s", b)
		}
		back := m.ProtoReflect().New().Interface()
		if err := decodeRequest(b, back); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if !proto.Equal(m, back) {
			t.Fatalf("round trip of %s:\n got %v\nwant %v", b, back, m)
		}
	}
	got := string(encodeResponse(nil, msgs[0]))
	for _, want := range []string{
		`"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:a-AbCdEf"`,
		`"RotationLambdaARN":"arn:aws:lambda:`,
		`"RotationRules":{"AutomaticallyAfterDays":0,"ScheduleExpression":"rate(4 hours)"}`,
		`"CreatedDate":1763812345.123`,
		`"DeletedDate":5,`,
		`"VersionIdsToStages":{"v0":["AWSPREVIOUS","X"],"v1":["AWSCURRENT"]}`,
		`"Tags":[{"Key":"k"}]`,
	} {
		if !bytes.Contains([]byte(got), []byte(want)) {
			t.Errorf("encoding lacks %s:\n%s", want, got)
		}
	}
}

func TestEpochSeconds(t *testing.T) {
	for _, c := range []struct {
		sec   int64
		nanos int64
		want  string
	}{
		{1763812345, 0, "1763812345"},
		{1763812345, 123_000_000, "1763812345.123"},
		{1763812345, 100_000_000, "1763812345.1"},
		{1763812345, 10_999_999, "1763812345.01"},
		{0, 0, "0"},
		{-2, 500_000_000, "-1.5"},
	} {
		if got := string(appendEpochSeconds(nil, c.sec, c.nanos)); got != c.want {
			t.Errorf("%d.%09d: %s, want %s", c.sec, c.nanos, got, c.want)
		}
		back, err := parseEpochSeconds(c.want)
		if err != nil || back.GetSeconds()*1000+int64(back.GetNanos())/1e6 != c.sec*1000+c.nanos/1e6 {
			t.Errorf("parse %s: %v %v", c.want, back, err)
		}
	}
}

// TestAppendStringMatchesEncodingJSON: the hand-written string encoder
// produces what encoding/json does (without HTML escaping).
func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	check := func(s string) bool {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			return false
		}
		return string(appendString(nil, s)) == string(bytes.TrimSuffix(want.Bytes(), []byte("\n")))
	}
	for _, s := range []string{"", "plain", "\x00\x1f\x7f", "\b\f", "\"\\/", "\u2028\u2029", "\xff\xfe bad utf8", "é中😀", "<&>"} {
		if !check(s) {
			t.Errorf("%q: %s", s, appendString(nil, s))
		}
	}
	if err := quick.Check(check, nil); err != nil {
		t.Fatal(err)
	}
}
