package awsjson

import (
	"context"

	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// operation is one AWS operation: how to make its input message and which
// service method answers it.
type operation struct {
	newInput func() proto.Message
	invoke   func(ctx context.Context, h *Handler, in proto.Message) (proto.Message, error)
}

// bind adapts a service method (as a method expression) to an operation.
func bind[Req, Resp proto.Message](newInput func() Req, method func(cofferv1.SecretsManagerServiceServer, context.Context, Req) (Resp, error)) operation {
	return operation{
		newInput: func() proto.Message { return newInput() },
		invoke: func(ctx context.Context, h *Handler, in proto.Message) (proto.Message, error) {
			out, err := method(h.Service, ctx, in.(Req))
			if err != nil {
				return nil, err
			}
			return out, nil
		},
	}
}

// bindKMS adapts a KeyService method to an operation.
func bindKMS[Req, Resp proto.Message](method func(cofferv1.KeyServiceServer, context.Context, Req) (Resp, error)) operation {
	return operation{
		newInput: func() proto.Message {
			var zero Req
			return zero.ProtoReflect().New().Interface()
		},
		invoke: func(ctx context.Context, h *Handler, in proto.Message) (proto.Message, error) {
			out, err := method(h.Keys, ctx, in.(Req))
			if err != nil {
				return nil, err
			}
			return out, nil
		},
	}
}

type keys = cofferv1.KeyServiceServer

// kmsOperations maps the X-Amz-Target operation name of AWS KMS
// (TrentService.<Operation>) to the KeyService method.
var kmsOperations = map[string]operation{
	"CreateKey":            bindKMS(keys.CreateKey),
	"DescribeKey":          bindKMS(keys.DescribeKey),
	"ListKeys":             bindKMS(keys.ListKeys),
	"CreateAlias":          bindKMS(keys.CreateAlias),
	"ListAliases":          bindKMS(keys.ListAliases),
	"UpdateAlias":          bindKMS(keys.UpdateAlias),
	"DeleteAlias":          bindKMS(keys.DeleteAlias),
	"EnableKey":            bindKMS(keys.EnableKey),
	"DisableKey":           bindKMS(keys.DisableKey),
	"ScheduleKeyDeletion":  bindKMS(keys.ScheduleKeyDeletion),
	"CancelKeyDeletion":    bindKMS(keys.CancelKeyDeletion),
	"EnableKeyRotation":    bindKMS(keys.EnableKeyRotation),
	"DisableKeyRotation":   bindKMS(keys.DisableKeyRotation),
	"GetKeyRotationStatus": bindKMS(keys.GetKeyRotationStatus),
	"RotateKeyOnDemand":    bindKMS(keys.RotateKeyOnDemand),
	"GetKeyPolicy":         bindKMS(keys.GetKeyPolicy),
	"PutKeyPolicy":         bindKMS(keys.PutKeyPolicy),
}

type service = cofferv1.SecretsManagerServiceServer

// operations maps the X-Amz-Target operation name to the service method.
// The names are the AWS operation names, which are also the RPC names.
var operations = map[string]operation{
	"BatchGetSecretValue":  bind(func() *cofferv1.BatchGetSecretValueRequest { return new(cofferv1.BatchGetSecretValueRequest) }, service.BatchGetSecretValue),
	"CancelRotateSecret":   bind(func() *cofferv1.CancelRotateSecretRequest { return new(cofferv1.CancelRotateSecretRequest) }, service.CancelRotateSecret),
	"CreateSecret":         bind(func() *cofferv1.CreateSecretRequest { return new(cofferv1.CreateSecretRequest) }, service.CreateSecret),
	"DeleteResourcePolicy": bind(func() *cofferv1.DeleteResourcePolicyRequest { return new(cofferv1.DeleteResourcePolicyRequest) }, service.DeleteResourcePolicy),
	"DeleteSecret":         bind(func() *cofferv1.DeleteSecretRequest { return new(cofferv1.DeleteSecretRequest) }, service.DeleteSecret),
	"DescribeSecret":       bind(func() *cofferv1.DescribeSecretRequest { return new(cofferv1.DescribeSecretRequest) }, service.DescribeSecret),
	"GetRandomPassword":    bind(func() *cofferv1.GetRandomPasswordRequest { return new(cofferv1.GetRandomPasswordRequest) }, service.GetRandomPassword),
	"GetResourcePolicy":    bind(func() *cofferv1.GetResourcePolicyRequest { return new(cofferv1.GetResourcePolicyRequest) }, service.GetResourcePolicy),
	"GetSecretValue":       bind(func() *cofferv1.GetSecretValueRequest { return new(cofferv1.GetSecretValueRequest) }, service.GetSecretValue),
	"ListSecretVersionIds": bind(func() *cofferv1.ListSecretVersionIdsRequest { return new(cofferv1.ListSecretVersionIdsRequest) }, service.ListSecretVersionIds),
	"ListSecrets":          bind(func() *cofferv1.ListSecretsRequest { return new(cofferv1.ListSecretsRequest) }, service.ListSecrets),
	"PutResourcePolicy":    bind(func() *cofferv1.PutResourcePolicyRequest { return new(cofferv1.PutResourcePolicyRequest) }, service.PutResourcePolicy),
	"PutSecretValue":       bind(func() *cofferv1.PutSecretValueRequest { return new(cofferv1.PutSecretValueRequest) }, service.PutSecretValue),
	"RemoveRegionsFromReplication": bind(func() *cofferv1.RemoveRegionsFromReplicationRequest {
		return new(cofferv1.RemoveRegionsFromReplicationRequest)
	}, service.RemoveRegionsFromReplication),
	"ReplicateSecretToRegions": bind(func() *cofferv1.ReplicateSecretToRegionsRequest { return new(cofferv1.ReplicateSecretToRegionsRequest) }, service.ReplicateSecretToRegions),
	"RestoreSecret":            bind(func() *cofferv1.RestoreSecretRequest { return new(cofferv1.RestoreSecretRequest) }, service.RestoreSecret),
	"RotateSecret":             bind(func() *cofferv1.RotateSecretRequest { return new(cofferv1.RotateSecretRequest) }, service.RotateSecret),
	"StopReplicationToReplica": bind(func() *cofferv1.StopReplicationToReplicaRequest { return new(cofferv1.StopReplicationToReplicaRequest) }, service.StopReplicationToReplica),
	"TagResource":              bind(func() *cofferv1.TagResourceRequest { return new(cofferv1.TagResourceRequest) }, service.TagResource),
	"UntagResource":            bind(func() *cofferv1.UntagResourceRequest { return new(cofferv1.UntagResourceRequest) }, service.UntagResource),
	"UpdateSecret":             bind(func() *cofferv1.UpdateSecretRequest { return new(cofferv1.UpdateSecretRequest) }, service.UpdateSecret),
	"UpdateSecretVersionStage": bind(func() *cofferv1.UpdateSecretVersionStageRequest { return new(cofferv1.UpdateSecretVersionStageRequest) }, service.UpdateSecretVersionStage),
	"ValidateResourcePolicy":   bind(func() *cofferv1.ValidateResourcePolicyRequest { return new(cofferv1.ValidateResourcePolicyRequest) }, service.ValidateResourcePolicy),
}
