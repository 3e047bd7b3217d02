package storage

import (
	"fmt"
	"strings"
)

// Limits from the AWS Secrets Manager API model that the state machine and
// the server both enforce.
const (
	MaxNameLength  = 512
	MaxValueBytes  = 65536
	MinTokenLength = 32
	MaxTokenLength = 64
	MaxVersions    = 100
	// MinVersionsQuota is the lowest versions-per-secret quota a region may
	// configure: room for AWSCURRENT, AWSPREVIOUS and a rotation's AWSPENDING.
	MinVersionsQuota    = 3
	MaxStagesPerVersion = 20
	MaxStageLength      = 256
	MaxTagsPerSecret    = 50
	MaxTagKeyLength     = 128
	MaxTagValueLength   = 256
	MaxDescription      = 2048

	// ARNSuffixLength is the length of the random suffix after "name-".
	ARNSuffixLength = 6
)

// The staging labels AWS gives meaning to.
const (
	StageCurrent  = "AWSCURRENT"
	StagePending  = "AWSPENDING"
	StagePrevious = "AWSPREVIOUS"
)

// ValidName reports whether name is 1–512 characters of A-Za-z0-9/_+=.@-.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > MaxNameLength {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !nameChar(name[i]) {
			return false
		}
	}
	return true
}

func nameChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("/_+=.@-", c) >= 0
}

// ARNPrefix is everything of a secret ARN before the name.
func ARNPrefix(partition, region, account string) string {
	return fmt.Sprintf("arn:%s:secretsmanager:%s:%s:secret:", partition, region, account)
}

// SecretARN builds a secret's full ARN from its parts.
func SecretARN(partition, region, account, name, suffix string) string {
	return ARNPrefix(partition, region, account) + name + "-" + suffix
}

// ARNParts is a secret ARN taken apart.
type ARNParts struct {
	Partition, Region, Account string
	// Rest is what follows "secret:": name-XXXXXX for a full ARN, the bare
	// name for a partial one.
	Rest string
}

// ParseARN splits a secretsmanager secret ARN. ok is false when s is not one.
func ParseARN(s string) (p ARNParts, ok bool) {
	f := strings.SplitN(s, ":", 7)
	if len(f) != 7 || f[0] != "arn" || f[2] != "secretsmanager" || f[5] != "secret" || f[6] == "" {
		return ARNParts{}, false
	}
	return ARNParts{Partition: f[1], Region: f[3], Account: f[4], Rest: f[6]}, true
}

// NameFromFullARN returns the name inside a full ARN (without its
// suffix); ok is false for anything but a full ARN.
func NameFromFullARN(arn string) (string, bool) { return nameFromFullARN(arn) }

// nameFromFullARN returns the name inside a full ARN (without its suffix).
func nameFromFullARN(arn string) (string, bool) {
	p, ok := ParseARN(arn)
	if !ok || len(p.Rest) <= ARNSuffixLength+1 || p.Rest[len(p.Rest)-ARNSuffixLength-1] != '-' {
		return "", false
	}
	return p.Rest[:len(p.Rest)-ARNSuffixLength-1], true
}

// WithRegion returns arn with its region replaced: a replica's ARN is the
// primary's with the replica's region.
func WithRegion(arn, region string) string {
	f := strings.SplitN(arn, ":", 5)
	if len(f) != 5 {
		return arn
	}
	f[3] = region
	return strings.Join(f, ":")
}
