package awsjson

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/aws/smithy-go"
	"google.golang.org/protobuf/reflect/protoreflect"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/awserr"
)

var update = flag.Bool("update", false, "rewrite docs/COMPATIBILITY.md from the SDK's model and the verdicts below")

const compatibilityDoc = "../../docs/COMPATIBILITY.md"

// memberVerdicts override "same" for a member, keyed "Op.Request.Member"
// or "Op.Response.Member". A member of the SDK's model that Coffer's proto
// lacks must have one, saying why.
var memberVerdicts = map[string]string{
	"CreateSecret.Request.Type":                                        "not applicable (managed external secrets: Coffer manages no third-party credentials; the member is ignored)",
	"CreateSecret.Request.KmsKeyId":                                    "same (names a key of Coffer's keyring, not an AWS KMS key)",
	"UpdateSecret.Request.Type":                                        "not applicable (managed external secrets; never sent, ignored in a request)",
	"UpdateSecret.Request.KmsKeyId":                                    "same (names a key of Coffer's keyring, not an AWS KMS key)",
	"DescribeSecret.Response.Type":                                     "not applicable (managed external secrets; never sent, ignored in a request)",
	"DescribeSecret.Response.ExternalSecretRotationMetadata":           "not applicable (managed external secrets; never sent, ignored in a request)",
	"DescribeSecret.Response.ExternalSecretRotationRoleArn":            "not applicable (managed external secrets; never sent, ignored in a request)",
	"ListSecrets.Response.SecretList[].Type":                           "not applicable (managed external secrets; never sent, ignored in a request)",
	"ListSecrets.Response.SecretList[].ExternalSecretRotationMetadata": "not applicable (managed external secrets; never sent, ignored in a request)",
	"ListSecrets.Response.SecretList[].ExternalSecretRotationRoleArn":  "not applicable (managed external secrets; never sent, ignored in a request)",
	"RotateSecret.Request.ExternalSecretRotationMetadata":              "not applicable (managed external secrets; never sent, ignored in a request)",
	"RotateSecret.Request.ExternalSecretRotationRoleArn":               "not applicable (managed external secrets; never sent, ignored in a request)",
	"RotateSecret.Request.RotationLambdaARN":                           "differs (names a Coffer rotation target: a built-in rotator or an HTTPS webhook; see docs/ARCHITECTURE.md)",
	"DescribeSecret.Response.RotationLambdaARN":                        "differs (the Coffer rotation target, as set by RotateSecret)",
	"ListSecrets.Response.SecretList[].RotationLambdaARN":              "differs (the Coffer rotation target, as set by RotateSecret)",
	"PutSecretValue.Request.RotationToken":                             "not applicable (sent by AWS Lambda rotation functions; Coffer's rotation targets authenticate otherwise)",
	"DescribeSecret.Response.PrimaryRegion":                            "same (present only for a secret with replicas or a replica)",
	"DescribeSecret.Response.OwningService":                            "same (never set: no other service owns Coffer secrets)",
	"ListSecrets.Response.SecretList[].OwningService":                  "same (never set: no other service owns Coffer secrets)",
	"GetRandomPassword.Request.IncludeSpace":                           "same",
	"ValidateResourcePolicy.Response.ValidationErrors[].CheckName":     "same (Coffer's checks: syntax, broad access, caller lock-out)",
}

// errorVerdicts override "same" for a declared error, keyed "Op.Error" or
// "*.Error" for every operation declaring it.
var errorVerdicts = map[string]string{
	"*.EncryptionFailure":                    "same (Coffer's keyring cannot encrypt with the secret's key)",
	"*.DecryptionFailure":                    "same (Coffer's keyring cannot decrypt with the secret's key)",
	"*.PreconditionNotMetException":          "not applicable (AWS sends it for a secret managed by another service; no other service manages Coffer secrets)",
	"*.LimitExceededException":               "same (the versions quota: 100 versions plus those newer than 24 h)",
	"*.InternalServiceError":                 "same (500; the cause is logged, never sent)",
	"*.InvalidNextTokenException":            "same",
	"*.MalformedPolicyDocumentException":     "same (the policy is checked by Coffer's IAM policy parser)",
	"*.PublicPolicyException":                "same (BlockPublicPolicy refuses a policy granting a wildcard principal)",
	"*.ResourceExistsException":              "same",
	"CreateSecret.ResourceNotFoundException": "same (an unknown replica region)",
}

// usedVerdicts records the member verdicts the generator consulted, so a
// verdict for a member the model dropped is caught.
var usedVerdicts = map[string]bool{}

type declaredErrors struct {
	Source     string              `json:"source"`
	Operations map[string][]string `json:"operations"`
}

// TestCompatibilityDoc keeps docs/COMPATIBILITY.md true: the file must be
// exactly what this test generates from the SDK's model (operations,
// members, error faults), the declared errors of botocore's model
// (testdata/declared-errors.json), Coffer's proto and the verdicts above.
// A member or error the model gains without a verdict fails the test.
// Regenerate with: go test ./server/awsjson -run TestCompatibilityDoc -update
func TestCompatibilityDoc(t *testing.T) {
	var declared declaredErrors
	raw, err := os.ReadFile("testdata/declared-errors.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &declared); err != nil {
		t.Fatal(err)
	}
	faults := sdkErrors(t)
	ops := make([]string, 0, len(sdkShapes))
	for op := range sdkShapes {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	if got := slices.Sorted(mapKeys(declared.Operations)); !slices.Equal(got, ops) {
		t.Fatalf("declared errors cover %v, the SDK's model %v", got, ops)
	}

	var b bytes.Buffer
	b.WriteString(compatHeader)
	methods := cofferv1.File_coffer_v1_secrets_proto.Services().ByName("SecretsManagerService").Methods()
	for _, op := range ops {
		m := methods.ByName(protoreflect.Name(op))
		fmt.Fprintf(&b, "\n## %s\n\n| Member | Coffer |\n|---|---|\n", op)
		shapes := sdkShapes[op]
		compatMembers(t, &b, op+".Request", shapes[0], m.Input())
		if shapes[1] == nil {
			b.WriteString("| (no output) | same |\n")
		} else {
			compatMembers(t, &b, op+".Response", shapes[1], m.Output())
		}
		fmt.Fprintf(&b, "\n| Declared error | HTTP | Body member | Coffer |\n|---|---|---|---|\n")
		errs := slices.Clone(declared.Operations[op])
		slices.Sort(errs)
		for _, e := range errs {
			fault, ok := faults[e]
			if !ok {
				t.Errorf("%s declares %s, which the SDK's model does not define", op, e)
			}
			status := 400
			if fault == "server" {
				status = 500
			}
			if awserr.JSONStatus(e) != status {
				t.Errorf("%s: Coffer answers HTTP %d, the model %d", e, awserr.JSONStatus(e), status)
			}
			verdict := errorVerdicts[op+"."+e]
			if verdict == "" {
				verdict = errorVerdicts["*."+e]
			}
			if verdict == "" {
				verdict = "same"
			}
			fmt.Fprintf(&b, "| %s | %d | `%s` | %s |\n", e, status, awserr.MessageMember(e), verdict)
		}
	}
	b.WriteString(compatFooter)
	for k := range memberVerdicts {
		if !usedVerdicts[k] {
			t.Errorf("verdict for %s, which the SDK's model does not have", k)
		}
	}

	if *update {
		if err := os.WriteFile(compatibilityDoc, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(compatibilityDoc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, b.Bytes()) {
		t.Fatalf("docs/COMPATIBILITY.md is out of date; run: go test ./server/awsjson -run TestCompatibilityDoc -update")
	}
}

// compatMembers writes one row per member of the SDK's structure s,
// recursing into structures and lists of structures.
func compatMembers(t *testing.T, b *bytes.Buffer, path string, s *smithy.Schema, md protoreflect.MessageDescriptor) {
	t.Helper()
	names := slices.Sorted(mapKeys(s.Members()))
	for _, name := range names {
		sm := s.Members()[name]
		p := path + "." + name
		var fd protoreflect.FieldDescriptor
		if md != nil {
			if mem := shapeOf(md).byName[name]; mem != nil {
				fd = mem.fd
			}
		}
		verdict, noted := memberVerdicts[p]
		usedVerdicts[p] = true
		switch {
		case fd == nil && !noted:
			t.Errorf("%s: in the AWS model, not in Coffer's proto, and no verdict says why", p)
			verdict = "MISSING"
		case !noted:
			verdict = "same"
		}
		label := strings.SplitN(p, ".", 2)[1]
		fmt.Fprintf(b, "| %s | %s |\n", label, verdict)
		target, list := sm, ""
		if sm.Type() == smithy.ShapeTypeList {
			target, list = sm.ListMember(), "[]"
		}
		if target.Type() == smithy.ShapeTypeStructure && fd != nil && fd.Kind() == protoreflect.MessageKind &&
			fd.Message().FullName() != timestampName && fd.Message().FullName() != versionStagesName {
			compatMembers(t, b, p+list, target, fd.Message())
		}
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

const compatHeader = `# AWS Secrets Manager compatibility

Generated by ` + "`TestCompatibilityDoc`" + ` (server/awsjson/compat_test.go) from the
aws-sdk-go-v2 Secrets Manager model (operations, members, error faults), the
errors each operation declares in botocore's model
(server/awsjson/testdata/declared-errors.json), Coffer's proto and the
verdicts written in the test. The test fails when this file differs from what
it generates, or when the model has a member or error without a verdict:
regenerate with ` + "`go test ./server/awsjson -run TestCompatibilityDoc -update`" + `.

Verdicts: **same** (Coffer answers as AWS does), **differs (why)**, **not
applicable (why)**.

## Protocol and error envelope

| Behaviour | Coffer |
|---|---|
| awsJson1_1, ` + "`POST /`" + `, ` + "`X-Amz-Target: secretsmanager.<Op>`" + `, SigV4 | same |
| Error body ` + "`{\"__type\", \"Message\"}`" + ` for the model's errors | same (TestErrorEnvelopeMatchesModel) |
| Error body ` + "`{\"__type\", \"message\"}`" + ` for common errors (ValidationException, AccessDeniedException, authentication, protocol) | same |
| HTTP 400 for every client fault, 500 for InternalServiceError | same (derived from the SDK's error traits) |
| AccessDeniedException and ThrottlingException | same (400, Secrets Manager's Common Errors page) |
| ` + "`X-Amzn-ErrorType`" + ` header, ` + "`x-amzn-RequestId`" + ` | same |
| ValidationException for a value outside the model's constraints | same (message in AWS's "1 validation error detected: ..." form) |
| One endpoint for every region: a request whose credential scope names another paired region is answered by that region | same (forwarded over the region link, authenticated, authorized and throttled there; Coffer's gRPC endpoint does the same for unary calls, by the signature's scope or ` + "`x-coffer-region`" + `) |
`

const compatFooter = `
## Filters (ListSecrets, BatchGetSecretValue)

| Behaviour | Coffer |
|---|---|
| ` + "`description`" + ` and ` + "`all`" + `: words (split on spaces, punctuation, camelCase and digit boundaries), each value word a case-insensitive prefix of a word; ` + "`all`" + ` covers name, description, tag keys and values | same |
| ` + "`name`, `tag-key`, `tag-value`, `primary-region`, `owning-service`" + `: case-sensitive prefix of the whole value | same |
| Values of one key ORed, keys ANDed (also across repeated keys); ` + "`!`" + ` negates | same |
| Filter without a key: InvalidParameterException "Invalid filter key" | same |
| Filter without values: InvalidParameterException "Invalid filter values for key: K" | same |
| Unknown key: ValidationException naming ` + "`filters.N.member.key`" + ` and the enum | same |
| BatchGetSecretValue with SecretIdList and Filters: InvalidParameterException | same |

## Members present only when AWS sends them, and order of checks

| Behaviour | Coffer |
|---|---|
| ` + "`PrimaryRegion`" + ` only for a secret with replicas, or a replica | same |
| ` + "`LastAccessedDate`" + ` (UTC day) on DescribeSecret, ListSecrets and the version read, once read that day | same (at once on the node that served the read, on every node after its flush) |
| Forced delete of a missing secret: success with ` + "`ARN`" + `, ` + "`Name`" + `, ` + "`DeletionDate`" + ` | same (the ARN's suffix is random) |
| CreateSecret / UpdateSecret without a value: ` + "`ARN`" + ` and ` + "`Name`" + ` only | same |
| After UntagResource removes the last tag, DescribeSecret keeps ` + "`\"Tags\": []`" + ` | same (DescribeSecret; a secret never tagged has no Tags member) |
| A SecretId CreateSecret would refuse is a ValidationException on every operation, before the lookup | same |
| AWSCURRENT leaving a version takes AWSPENDING off it too (a promoted rotation version, superseded, keeps only AWSPREVIOUS) | same |
| PutResourcePolicy on a missing secret: ResourceNotFoundException before the policy is read | same |
| CancelRotateSecret on a secret never configured for rotation: InvalidRequestException | same |
| Validation messages name non-sensitive values (` + "`Value '0' at 'rotationRules.automaticallyAfterDays'`" + `) | same for ClientRequestToken, AutomaticallyAfterDays, PasswordLength and filter keys; other members are named without their value |
| A raw request without ClientRequestToken: the model's constraints first (ValidationException), then the token, then the operation's own checks and the secret's existence | same (a raw put, update or rotation of a missing secret is refused for its token, as recorded from AWS; SDKs and the CLI always send one) |
| GetRandomPassword: the space is a candidate only with IncludeSpace, and then a type RequireEachIncludedType requires | same (AWS's API reference: "If you include this switch, the password can contain space characters"; its example sets both "to require spaces and at least one character of each included type") |
`
