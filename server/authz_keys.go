package server

import (
	"strconv"
	"strings"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/policy"
)

// This file is the one list of the condition keys Coffer sets, and the
// request keys it sets for each Secrets Manager action — where the AWS
// service authorization reference for Secrets Manager says the action
// carries them. A policy that names any other key is warned about
// (PutPolicy, PutResourcePolicy) and reported (ValidateResourcePolicy,
// CONDITION_KEY_CHECK): its condition is evaluated as if the key were
// absent from every request, so a Deny on it would silently never deny.
// TestEveryConditionKeyIsListed fails on a key set here but not listed.

// conditionKeys are the keys Coffer sets, compared without regard to case.
var conditionKeys = map[string]bool{}

// conditionKeyPrefixes are the tag keys, set under a tag's name.
var conditionKeyPrefixes = []string{
	"aws:principaltag/", "aws:resourcetag/", "secretsmanager:resourcetag/", "aws:requesttag/",
}

func init() {
	for _, k := range []string{
		// Every request (Authorizer.keys).
		"aws:CurrentTime", "aws:EpochTime", "aws:SecureTransport", "aws:username", "aws:PrincipalArn",
		"aws:PrincipalAccount", "aws:PrincipalType", "aws:SourceIp", "aws:RequestedRegion",
		// The secret a request names (Authorizer.keys).
		"secretsmanager:SecretId", "secretsmanager:Name", "secretsmanager:SecretPrimaryRegion",
		"secretsmanager:resource/AllowRotationLambdaArn",
		// What a request carries (requestKeys, TargetOf).
		"secretsmanager:VersionStage", "secretsmanager:VersionId", "aws:TagKeys",
		"secretsmanager:ForceDeleteWithoutRecovery", "secretsmanager:RecoveryWindowInDays",
		"secretsmanager:BlockPublicPolicy", "secretsmanager:Description", "secretsmanager:KmsKeyId",
		"secretsmanager:AddReplicaRegions", "secretsmanager:ForceOverwriteReplicaSecret",
		"secretsmanager:RotationLambdaARN", "secretsmanager:RotateImmediately", "secretsmanager:ModifyRotationRules",
		"iam:PolicyARN",
		// A key Secrets Manager uses on the caller's behalf (callerKeys).
		"kms:ViaService", "kms:CallerAccount",
	} {
		conditionKeys[strings.ToLower(k)] = true
	}
}

// SetsConditionKey reports whether Coffer ever sets the condition key key.
func SetsConditionKey(key string) bool {
	key = strings.ToLower(key)
	if conditionKeys[key] {
		return true
	}
	for _, p := range conditionKeyPrefixes {
		if strings.HasPrefix(key, p) && len(key) > len(p) {
			return true
		}
	}
	return false
}

// conditionKeyWarnings are the warnings about the keys doc's conditions
// name that Coffer never sets (nil when there are none).
func conditionKeyWarnings(doc *policy.Document) []string {
	var out []string
	for _, f := range doc.UnsetConditionKeys(SetsConditionKey) {
		out = append(out, f.ErrorMessage)
	}
	return out
}

// secretKeys sets the keys of the secret a request names: its id, name,
// tags, primary region (for a multi-Region secret) and rotation function.
func secretKeys(k policy.Keys, s *storagev1.Secret, region string) {
	k.Set("secretsmanager:SecretId", s.GetArn())
	k.Set("secretsmanager:Name", s.GetName())
	for _, tag := range s.GetTags() {
		k.Set("secretsmanager:ResourceTag/"+tag.GetKey(), tag.GetValue())
		k.Set("aws:ResourceTag/"+tag.GetKey(), tag.GetValue())
	}
	switch {
	case s.GetReplica():
		k.Set("secretsmanager:SecretPrimaryRegion", s.GetPrimaryRegion())
	case len(s.GetReplicas()) > 0:
		k.Set("secretsmanager:SecretPrimaryRegion", region)
	}
	if arn := s.GetRotationLambdaArn(); arn != "" {
		k.Set("secretsmanager:resource/AllowRotationLambdaArn", arn)
	}
}

// createKeys sets what a CreateSecret request carries: the name, the
// description and KMS key when given, the replica regions, whether to
// overwrite replicas, and the tags.
func createKeys(k policy.Keys, r *cofferv1.CreateSecretRequest) {
	k.Set("secretsmanager:Name", r.GetName())
	if r.GetDescription() != "" {
		k.Set("secretsmanager:Description", r.GetDescription())
	}
	if r.GetKmsKeyId() != "" {
		k.Set("secretsmanager:KmsKeyId", r.GetKmsKeyId())
	}
	replicaKeys(k, r.GetAddReplicaRegions(), r.GetForceOverwriteReplicaSecret())
	requestTags(k, r.GetTags())
}

// replicaKeys sets secretsmanager:AddReplicaRegions (when regions are
// asked for) and secretsmanager:ForceOverwriteReplicaSecret (always: false
// is what a request without it means).
func replicaKeys(k policy.Keys, regions []*cofferv1.ReplicaRegion, force bool) {
	if len(regions) > 0 {
		names := make([]string, 0, len(regions))
		for _, r := range regions {
			names = append(names, r.GetRegion())
		}
		k.Set("secretsmanager:AddReplicaRegions", names...)
	}
	k.Set("secretsmanager:ForceOverwriteReplicaSecret", strconv.FormatBool(force))
}

// rotateKeys sets what a RotateSecret request carries: the function when
// given, whether it rotates now (true unless it says otherwise, as AWS
// defaults it) and whether it changes the rotation rules.
func rotateKeys(k policy.Keys, r *cofferv1.RotateSecretRequest) {
	if r.GetRotationLambdaArn() != "" {
		k.Set("secretsmanager:RotationLambdaARN", r.GetRotationLambdaArn())
	}
	immediately := r.RotateImmediately == nil || r.GetRotateImmediately()
	k.Set("secretsmanager:RotateImmediately", strconv.FormatBool(immediately))
	k.Set("secretsmanager:ModifyRotationRules", strconv.FormatBool(r.GetRotationRules() != nil))
}

// updateKeys sets what an UpdateSecret request carries: the description
// and KMS key when it changes them.
func updateKeys(k policy.Keys, r *cofferv1.UpdateSecretRequest) {
	if r.Description != nil {
		k.Set("secretsmanager:Description", r.GetDescription())
	}
	if r.KmsKeyId != nil {
		k.Set("secretsmanager:KmsKeyId", r.GetKmsKeyId())
	}
}
