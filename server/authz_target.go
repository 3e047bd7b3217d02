package server

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/policy"
	"github.com/cofferhq/coffer/storage"
)

// This file works out what a request acts on: the ARN it is decided on,
// the secret it names and the condition keys the request itself sets.

// Target is what a request acts on.
type Target struct {
	// Resource is the ARN evaluated against Resource elements, or "*".
	Resource string
	// Secret is the secret acted on, when it exists; it brings its
	// resource policy and its tags.
	Secret *storagev1.Secret
	// Keys are condition keys the request itself sets
	// (secretsmanager:VersionStage, aws:RequestTag/…).
	Keys policy.Keys
	// Key is the KMS key acted on or used, when it exists: a customer
	// key brings its key policy.
	Key *storagev1.KmsKey
	// Named is the secret's ARN as the caller named it (namedSecretARN),
	// shown in an AccessDeniedException in place of Resource, so that a
	// denial reads the same whether or not the secret exists. "" shows
	// Resource.
	Named string
}

func (a *Authorizer) principalARN(name string) string {
	if strings.HasPrefix(name, "arn:") {
		return name // a role session's principal is its assumed-role ARN
	}
	return fmt.Sprintf("arn:%s:iam::%s:user/%s", a.cfg.Partition, a.cfg.AccountID, name)
}

func (a *Authorizer) policyARN(name string) string {
	return fmt.Sprintf("arn:%s:iam::%s:policy/%s", a.cfg.Partition, a.cfg.AccountID, name)
}

// secretARN is the ARN a policy is matched against for a secret that does
// not exist (yet): the name without the random suffix, so that
// "…:secret:app/*" matches it as it will match the created secret.
func (a *Authorizer) secretARN(name string) string {
	return fmt.Sprintf("arn:%s:secretsmanager:%s:%s:secret:%s", a.cfg.Partition, a.cfg.Region, a.cfg.AccountID, name)
}

// namedSecretARN is the ARN a request naming the secret id is decided on
// when no such secret exists, and what a denial names either way: id
// itself when it is an ARN, otherwise secretARN(id).
func (a *Authorizer) namedSecretARN(id string) string {
	if strings.HasPrefix(id, "arn:") {
		return id
	}
	return a.secretARN(id)
}

// secretOperations maps a Secrets Manager operation, lower-cased, to its
// name and request type.
var secretOperations = sync.OnceValue(func() map[string]secretOperation {
	ops := map[string]secretOperation{}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(cofferv1.SecretsManagerService_ServiceDesc.ServiceName))
	if err != nil {
		return ops
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return ops
	}
	for i := range sd.Methods().Len() {
		m := sd.Methods().Get(i)
		mt, err := protoregistry.GlobalTypes.FindMessageByName(m.Input().FullName())
		if err != nil {
			continue
		}
		ops[strings.ToLower(string(m.Name()))] = secretOperation{name: string(m.Name()), input: mt}
	}
	return ops
})

type secretOperation struct {
	name  string
	input protoreflect.MessageType
}

// secretRequest is the request a Secrets Manager action makes when it names
// the secret id (CreateSecret: creates it) and sets nothing else — a read of
// AWSCURRENT for GetSecretValue — with the action's canonical spelling. ok
// is false for an action that is not a Secrets Manager operation naming a
// secret.
func secretRequest(action, id string) (canonical string, req proto.Message, ok bool) {
	op, found := strings.CutPrefix(strings.ToLower(action), "secretsmanager:")
	if !found {
		return action, nil, false
	}
	so, found := secretOperations()[op]
	if !found {
		return action, nil, false
	}
	canonical = SecretAction(so.name)
	m := so.input.New()
	field := protoreflect.Name("secret_id")
	if op == "createsecret" {
		field = "name" // the secret it would create
	}
	fd := m.Descriptor().Fields().ByName(field)
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
		return canonical, nil, false
	}
	m.Set(fd, protoreflect.ValueOfString(id))
	return canonical, m.Interface(), true
}

// TargetOf works out what req acts on: the secret it names (looked up in
// local state, for its resource policy, tags and ARN), the principal or
// policy an IAM request names, or "*".
func (a *Authorizer) TargetOf(action string, req proto.Message) (Target, error) {
	t := Target{Resource: "*", Keys: policy.Keys{}}
	switch r := req.(type) {
	case *cofferv1.CreatePrincipalRequest:
		t.Resource = a.principalARN(r.GetName())
		return t, nil
	case *cofferv1.DeletePrincipalRequest:
		t.Resource = a.principalARN(r.GetName())
		return t, nil
	case *cofferv1.CreateAccessKeyRequest:
		t.Resource = a.principalARN(r.GetPrincipal())
		return t, nil
	case *cofferv1.DeleteAccessKeyRequest:
		k, err := a.state.AccessKey(r.GetAccessKeyId())
		if err != nil {
			return t, err
		}
		if k != nil {
			t.Resource = a.principalARN(k.GetPrincipal())
		}
		return t, nil
	case *cofferv1.AttachPolicyRequest:
		t.Resource = a.principalARN(r.GetPrincipal())
		t.Keys.Set("iam:PolicyARN", a.policyARN(r.GetPolicy()))
		return t, nil
	case *cofferv1.DetachPolicyRequest:
		t.Resource = a.principalARN(r.GetPrincipal())
		t.Keys.Set("iam:PolicyARN", a.policyARN(r.GetPolicy()))
		return t, nil
	case *cofferv1.SimulatePolicyRequest:
		t.Resource = a.principalARN(r.GetPrincipal())
		return t, nil
	case *cofferv1.PutPolicyRequest:
		t.Resource = a.policyARN(r.GetName())
		return t, nil
	case *cofferv1.GetPolicyRequest:
		t.Resource = a.policyARN(r.GetName())
		return t, nil
	case *cofferv1.DeletePolicyRequest:
		t.Resource = a.policyARN(r.GetName())
		return t, nil
	case *cofferv1.CreateRoleRequest:
		t.Resource = roleARN(a.cfg, r.GetName())
		return t, nil
	case *cofferv1.GetRoleRequest:
		t.Resource = roleARN(a.cfg, r.GetName())
		return t, nil
	case *cofferv1.DeleteRoleRequest:
		t.Resource = roleARN(a.cfg, r.GetName())
		return t, nil
	case *cofferv1.UpdateAssumeRolePolicyRequest:
		t.Resource = roleARN(a.cfg, r.GetRoleName())
		return t, nil
	case *cofferv1.AttachRolePolicyRequest:
		t.Resource = roleARN(a.cfg, r.GetRoleName())
		t.Keys.Set("iam:PolicyARN", a.policyARN(r.GetPolicy()))
		return t, nil
	case *cofferv1.DetachRolePolicyRequest:
		t.Resource = roleARN(a.cfg, r.GetRoleName())
		t.Keys.Set("iam:PolicyARN", a.policyARN(r.GetPolicy()))
		return t, nil
	case *cofferv1.AssumeRoleRequest:
		if r.GetRoleArn() != "" {
			t.Resource = r.GetRoleArn()
		}
		return t, nil
	case *cofferv1.AssumeRoleWithWebIdentityRequest:
		if r.GetRoleArn() != "" {
			t.Resource = r.GetRoleArn()
		}
		return t, nil
	case *cofferv1.CreateSecretRequest:
		t.Resource = a.secretARN(r.GetName())
		createKeys(t.Keys, r)
		return t, nil
	}
	if strings.HasPrefix(action, "kms:") {
		return t, a.keyTarget(&t, req)
	}
	if !strings.HasPrefix(action, "secretsmanager:") {
		return t, nil
	}
	id := ""
	if r, ok := req.(interface{ GetSecretId() string }); ok {
		id = r.GetSecretId()
	}
	if id == "" {
		return t, nil
	}
	sec, err := a.state.Secret(id)
	if err != nil && !errors.Is(err, storage.ErrSecretNotFound) {
		return t, err
	}
	a.secretTarget(&t, id, sec)
	requestKeys(t.Keys, req)
	return t, nil
}

// secretTarget fills t for a request naming the secret id: sec when it
// exists, otherwise (sec nil) the ARN the caller named — if that is
// allowed, the operation answers ResourceNotFound as it would anyway, and
// if not, the denial reads as it does for a secret that exists.
func (a *Authorizer) secretTarget(t *Target, id string, sec *storagev1.Secret) {
	t.Named = a.namedSecretARN(id)
	if sec != nil {
		t.Secret = sec
		t.Resource = sec.GetArn()
		return
	}
	t.Resource = t.Named
	t.Keys.Set("secretsmanager:SecretId", t.Resource)
}

// requestKeys sets the condition keys a Secrets Manager request carries
// itself (the list of keys is in authz_keys.go). A read that names neither
// stage nor version reads AWSCURRENT, so secretsmanager:VersionStage is
// AWSCURRENT for it (and for each secret a BatchGetSecretValue reads).
func requestKeys(k policy.Keys, req proto.Message) {
	switch r := req.(type) {
	case *cofferv1.GetSecretValueRequest:
		stage := r.GetVersionStage()
		if stage == "" && r.GetVersionId() == "" {
			stage = "AWSCURRENT" // what is read when neither is given
		}
		if stage != "" {
			k.Set("secretsmanager:VersionStage", stage)
		}
		if r.GetVersionId() != "" {
			k.Set("secretsmanager:VersionId", r.GetVersionId())
		}
	case *cofferv1.PutSecretValueRequest:
		if len(r.GetVersionStages()) > 0 {
			k.Set("secretsmanager:VersionStage", r.GetVersionStages()...)
		}
	case *cofferv1.UpdateSecretVersionStageRequest:
		k.Set("secretsmanager:VersionStage", r.GetVersionStage())
	case *cofferv1.TagResourceRequest:
		requestTags(k, r.GetTags())
	case *cofferv1.UntagResourceRequest:
		k.Set("aws:TagKeys", r.GetTagKeys()...)
	case *cofferv1.DeleteSecretRequest:
		k.Set("secretsmanager:ForceDeleteWithoutRecovery", strconv.FormatBool(r.GetForceDeleteWithoutRecovery()))
		if r.RecoveryWindowInDays != nil {
			k.Set("secretsmanager:RecoveryWindowInDays", strconv.FormatInt(r.GetRecoveryWindowInDays(), 10))
		}
	case *cofferv1.PutResourcePolicyRequest:
		k.Set("secretsmanager:BlockPublicPolicy", strconv.FormatBool(r.GetBlockPublicPolicy()))
	case *cofferv1.UpdateSecretRequest:
		updateKeys(k, r)
	case *cofferv1.RotateSecretRequest:
		rotateKeys(k, r)
	case *cofferv1.ReplicateSecretToRegionsRequest:
		replicaKeys(k, r.GetAddReplicaRegions(), r.GetForceOverwriteReplicaSecret())
	}
}

func requestTags(k policy.Keys, tags []*cofferv1.Tag) {
	if len(tags) == 0 {
		return
	}
	keys := make([]string, 0, len(tags))
	for _, tag := range tags {
		k.Set("aws:RequestTag/"+tag.GetKey(), tag.GetValue())
		keys = append(keys, tag.GetKey())
	}
	k.Set("aws:TagKeys", keys...)
}
