package server

import (
	"fmt"
	"regexp"
	"strings"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage/kms"
)

// This file names and finds the region's KMS keys: their ARNs, their
// states, and how a KeyId a user wrote (key id, key ARN, alias name, alias
// ARN) resolves against the stored keyring record.

// KeyPolicyName is how a key's policy is named as the deciding policy.
const KeyPolicyName = "key-policy"

// KMS key states, as KMS spells them.
const (
	keyStateEnabled         = "Enabled"
	keyStateDisabled        = "Disabled"
	keyStatePendingDeletion = "PendingDeletion"
)

// keyState is the KMS KeyState of a stored key.
func keyState(k *storagev1.KmsKey) string {
	switch {
	case k.GetDeletionDate() != nil:
		return keyStatePendingDeletion
	case k.GetDisabled():
		return keyStateDisabled
	}
	return keyStateEnabled
}

func (c Config) keyARN(keyID string) string {
	return fmt.Sprintf("arn:%s:kms:%s:%s:key/%s", c.Partition, c.Region, c.AccountID, keyID)
}

func (c Config) aliasARN(alias string) string {
	return fmt.Sprintf("arn:%s:kms:%s:%s:%s", c.Partition, c.Region, c.AccountID, alias)
}

// keyRef is a KeyId as a user wrote it, parsed: an alias ("alias/…") or a
// key id; arn is set when it was written as an ARN.
type keyRef struct {
	alias, keyID string
	arn          bool
}

// parseKeyRef parses ref, or says it is not a key id, key ARN, alias name
// or alias ARN. An ARN of another region or account names no key here.
func (c Config) parseKeyRef(ref string) (keyRef, bool) {
	if !strings.HasPrefix(ref, "arn:") {
		if strings.HasPrefix(ref, "alias/") {
			return keyRef{alias: ref}, true
		}
		return keyRef{keyID: ref}, ref != ""
	}
	parts := strings.SplitN(ref, ":", 6)
	if len(parts) != 6 || parts[2] != "kms" {
		return keyRef{}, false
	}
	resource := parts[5]
	local := parts[1] == c.Partition && parts[3] == c.Region && parts[4] == c.AccountID
	switch {
	case strings.HasPrefix(resource, "key/"):
		id := strings.TrimPrefix(resource, "key/")
		if !local {
			id = "\x00" + id // names no key of this region
		}
		return keyRef{keyID: id, arn: true}, true
	case strings.HasPrefix(resource, "alias/"):
		if !local {
			resource = "alias/\x00"
		}
		return keyRef{alias: resource, arn: true}, true
	}
	return keyRef{}, false
}

// findKey resolves ref against the stored keyring rec: the key, or nil.
// The default key answers to its aliases and to alias/aws/secretsmanager.
func (c Config) findKey(rec *storagev1.Keyring, ref string) *storagev1.KmsKey {
	r, ok := c.parseKeyRef(ref)
	if !ok {
		return nil
	}
	for _, k := range rec.GetKeys() {
		switch {
		case r.keyID != "" && k.GetKeyId() == r.keyID:
			return k
		case r.alias != "" && containsString(k.GetAliases(), r.alias):
			return k
		case r.alias == kms.AWSManagedKeyAlias && containsString(k.GetAliases(), kms.DefaultKeyAlias):
			return k
		}
	}
	return nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// aliasPattern is what KMS accepts as an alias name.
var aliasPattern = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]+$`)

// maxAliasLength and maxKeyIDLength are KMS's bounds.
const (
	maxAliasLength = 256
	maxKeyIDLength = 2048
)

// defaultKeyPolicy is the policy KMS gives a key created without one: the
// account's root may do everything, which hands the decision to the
// account's identity policies.
func (c Config) defaultKeyPolicy() string {
	return fmt.Sprintf(`{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:%s:iam::%s:root"},"Action":"kms:*","Resource":"*"}]}`,
		c.Partition, c.AccountID)
}

// managedKeyPolicy is what GetKeyPolicy shows for the region's default key,
// which, like AWS's aws/secretsmanager key, any principal of the account may
// use through Secrets Manager.
func (c Config) managedKeyPolicy() string {
	return fmt.Sprintf(`{"Version":"2012-10-17","Id":"auto-secretsmanager-2","Statement":[{"Sid":"Allow access through AWS Secrets Manager for all principals in the account that are authorized to use AWS Secrets Manager","Effect":"Allow","Principal":{"AWS":"*"},"Action":["kms:Encrypt","kms:Decrypt","kms:ReEncrypt*","kms:GenerateDataKey*","kms:CreateGrant","kms:DescribeKey"],"Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"%s","kms:ViaService":"secretsmanager.%s.amazonaws.com"}}}]}`,
		c.AccountID, c.Region)
}
