package awsjson

import (
	"strings"
	"sync"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// The codec maps AWS JSON onto the proto messages by their descriptors, so a
// field added to secrets.proto appears on the AWS wire with no code here.
// The rules are the AWS JSON 1.1 ones:
//
//   - member names are the proto names in PascalCase, except the AWS
//     spellings in memberNameExceptions;
//   - google.protobuf.Timestamp is epoch seconds, a JSON number with
//     millisecond fractions;
//   - bytes are standard base64;
//   - map<string, VersionStages> is an object of bare string lists;
//   - a response omits unset and zero members, except alwaysEmitted ones.

// memberNameExceptions are the proto fields whose AWS member name is not
// plain PascalCase.
var memberNameExceptions = map[protoreflect.Name]string{
	"arn":                 "ARN",
	"rotation_lambda_arn": "RotationLambdaARN",
}

// fieldNameExceptions are single fields whose AWS member name differs
// from both PascalCase and memberNameExceptions (KMS spells its key ARN
// "Arn", and its account "AWSAccountId").
var fieldNameExceptions = map[protoreflect.FullName]string{
	"coffer.v1.KeyMetadata.arn":            "Arn",
	"coffer.v1.KeyMetadata.aws_account_id": "AWSAccountId",
}

// alwaysEmitted are response members AWS sends even when empty or false.
// Callers that index the response (boto3's resp["SecretList"]) depend on
// them; typed SDKs do not care either way.
var alwaysEmitted = map[protoreflect.FullName]bool{
	"coffer.v1.ListSecretsResponse.secret_list":                         true,
	"coffer.v1.ListSecretVersionIdsResponse.versions":                   true,
	"coffer.v1.BatchGetSecretValueResponse.secret_values":               true,
	"coffer.v1.BatchGetSecretValueResponse.errors":                      true,
	"coffer.v1.ValidateResourcePolicyResponse.policy_validation_passed": true,
	"coffer.v1.ValidateResourcePolicyResponse.validation_errors":        true,
	"coffer.v1.ListKeysResponse.keys":                                   true,
	"coffer.v1.ListKeysResponse.truncated":                              true,
	"coffer.v1.ListAliasesResponse.aliases":                             true,
	"coffer.v1.ListAliasesResponse.truncated":                           true,
	"coffer.v1.KeyMetadata.enabled":                                     true,
	"coffer.v1.GetKeyRotationStatusResponse.key_rotation_enabled":       true,
}

var (
	timestampName     = (&timestamppb.Timestamp{}).ProtoReflect().Descriptor().FullName()
	versionStagesName = (&cofferv1.VersionStages{}).ProtoReflect().Descriptor().FullName()
)

// memberName is the AWS JSON member name of a proto field.
func memberName(fd protoreflect.FieldDescriptor) string {
	if n, ok := fieldNameExceptions[fd.FullName()]; ok {
		return n
	}
	if n, ok := memberNameExceptions[fd.Name()]; ok {
		return n
	}
	var b strings.Builder
	for part := range strings.SplitSeq(string(fd.Name()), "_") {
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]))
		b.WriteString(part[1:])
	}
	return b.String()
}

// cofferOnly are fields of Coffer's own API that the AWS model lacks. The
// AWS protocol neither sends nor accepts them, so SDKs see AWS's shapes
// exactly; the gRPC API and the CLI show them.
var cofferOnly = map[protoreflect.FullName]bool{
	"coffer.v1.DescribeSecretResponse.rotation_status": true,
	"coffer.v1.PutResourcePolicyResponse.warnings":     true,
}

// member is one proto field as it appears on the wire.
type member struct {
	fd     protoreflect.FieldDescriptor
	name   string
	always bool
}

// shape is a message's members, in field order, and by AWS name.
type shape struct {
	members []member
	byName  map[string]*member
}

var shapes sync.Map // protoreflect.FullName -> *shape

func shapeOf(md protoreflect.MessageDescriptor) *shape {
	if s, ok := shapes.Load(md.FullName()); ok {
		return s.(*shape)
	}
	fields := md.Fields()
	s := &shape{members: make([]member, 0, fields.Len()), byName: make(map[string]*member, fields.Len())}
	for i := range fields.Len() {
		fd := fields.Get(i)
		if cofferOnly[fd.FullName()] {
			continue
		}
		s.members = append(s.members, member{fd: fd, name: memberName(fd), always: alwaysEmitted[fd.FullName()]})
	}
	for i := range s.members {
		s.byName[s.members[i].name] = &s.members[i]
	}
	actual, _ := shapes.LoadOrStore(md.FullName(), s)
	return actual.(*shape)
}
