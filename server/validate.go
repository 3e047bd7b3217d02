package server

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage"
)

// Limits of the AWS API model that are checked here rather than in storage.
const (
	maxSecretIDLength    = 2048
	maxKmsKeyIDLength    = 2048
	maxFilters           = 10
	maxFilterValues      = 10
	maxFilterValueLength = 512
	maxBatchIDs          = 20
	maxListResults       = 100
	maxBatchResults      = 20
	maxTagKeysPerCall    = 200
)

var (
	// tagPattern is the AWS model's pattern for tag keys and values.
	tagPattern = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)
	// filterValuePattern is the AWS model's pattern for filter values.
	filterValuePattern = regexp.MustCompile(`^!?[a-zA-Z0-9 :_@/+=.\-!]*$`)
	// idPattern is what partitions and regions look like (aws, us-east-1).
	idPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	// accountPattern is a 12-digit account id.
	accountPattern = regexp.MustCompile(`^[0-9]{12}$`)
)

func checkLength(field, v string, lo, hi int) *APIError {
	if !utf8.ValidString(v) {
		return validationErr(field, "Member must be valid UTF-8 text")
	}
	n := utf8.RuneCountInString(v)
	switch {
	case n < lo:
		return validationErr(field, fmt.Sprintf("Member must have length greater than or equal to %d", lo))
	case n > hi:
		return validationErr(field, fmt.Sprintf("Member must have length less than or equal to %d", hi))
	}
	return nil
}

// validateSecretID checks a SecretId as every operation does before it
// looks the secret up: the model's constraints, then its shape.
func validateSecretID(id string) *APIError {
	return firstErr(secretIDConstraints(id), secretIDShape(id))
}

// secretIDConstraints checks a SecretId against the model: present, at
// most 2048 characters.
func secretIDConstraints(id string) *APIError {
	if id == "" {
		return apiErr(TypeInvalidParameter, "You must provide a SecretId.")
	}
	return checkLength("secretId", id, 1, maxSecretIDLength)
}

// secretIDShape refuses a name or ARN CreateSecret would refuse: every
// operation does, before the secret is looked up, as AWS does — never a
// ResourceNotFoundException, nor a forced delete's success. It is the
// operation's own check, not the model's.
func secretIDShape(id string) *APIError {
	name := id
	if strings.HasPrefix(id, "arn:") {
		p, ok := storage.ParseARN(id)
		if !ok {
			return apiErr(TypeValidation, "Invalid ARN. The ARN %s is not a valid Secrets Manager secret ARN.", truncateValue(id))
		}
		name = p.Rest
	}
	if !storage.ValidName(name) {
		return errInvalidName
	}
	return nil
}

// errInvalidName is AWS's answer to a name outside the allowed characters.
var errInvalidName = &APIError{Type: TypeValidation, Message: "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!"}

// nameConstraints checks a new secret's Name against the model: 1–512
// characters.
func nameConstraints(name string) *APIError {
	if name == "" || len(name) > storage.MaxNameLength {
		return checkLength("name", name, 1, storage.MaxNameLength)
	}
	return nil
}

// nameShape refuses a Name outside the characters (and length) a secret
// name may have: the operation's own check, after the model's.
func nameShape(name string) *APIError {
	if !storage.ValidName(name) {
		return errInvalidName
	}
	return nil
}

// validateToken checks a ClientRequestToken or version id when one is given.
func validateToken(field, tok string) *APIError {
	if tok == "" {
		return nil
	}
	if !utf8.ValidString(tok) {
		return validationErr(field, "Member must be valid UTF-8 text")
	}
	// A token is not sensitive: AWS names it in the message.
	switch n := utf8.RuneCountInString(tok); {
	case n < storage.MinTokenLength:
		return validationValueErr(field, tok, fmt.Sprintf("Member must have length greater than or equal to %d", storage.MinTokenLength))
	case n > storage.MaxTokenLength:
		return validationValueErr(field, tok, fmt.Sprintf("Member must have length less than or equal to %d", storage.MaxTokenLength))
	}
	for _, r := range tok {
		if r < 0x20 || r == 0x7f {
			return validationErr(field, "Member must not contain control characters")
		}
	}
	return nil
}

func validateDescription(d string) *APIError {
	return checkLength("description", d, 0, storage.MaxDescription)
}

func validateKmsKeyRef(k string) *APIError {
	return checkLength("kmsKeyId", k, 0, maxKmsKeyIDLength)
}

func validateStage(field, stage string) *APIError {
	return checkLength(field, stage, 1, storage.MaxStageLength)
}

func validateStages(stages []string) *APIError {
	if len(stages) > storage.MaxStagesPerVersion {
		return validationErr("versionStages", fmt.Sprintf("Member must have length less than or equal to %d", storage.MaxStagesPerVersion))
	}
	for i, s := range stages {
		if e := validateStage(fmt.Sprintf("versionStages.%d.member", i+1), s); e != nil {
			return e
		}
		if slices.Contains(stages[:i], s) {
			return apiErr(TypeInvalidParameter, "The staging label %s is listed more than once.", s)
		}
	}
	return nil
}

func validateTags(tags []*cofferv1.Tag) *APIError {
	if len(tags) > storage.MaxTagsPerSecret {
		return validationErr("tags", fmt.Sprintf("Member must have length less than or equal to %d", storage.MaxTagsPerSecret))
	}
	seen := map[string]bool{}
	for i, t := range tags {
		field := fmt.Sprintf("tags.%d.member", i+1)
		if e := checkLength(field+".key", t.GetKey(), 1, storage.MaxTagKeyLength); e != nil {
			return e
		}
		if e := checkLength(field+".value", t.GetValue(), 0, storage.MaxTagValueLength); e != nil {
			return e
		}
		if !tagPattern.MatchString(t.GetKey()) || !tagPattern.MatchString(t.GetValue()) {
			return validationErr(field, `Member must satisfy regular expression pattern: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`)
		}
		if strings.HasPrefix(strings.ToLower(t.GetKey()), "aws:") {
			return apiErr(TypeInvalidParameter, "Tag keys that start with aws: are reserved for AWS use.")
		}
		if seen[t.GetKey()] {
			return apiErr(TypeInvalidParameter, "The tag key %s is listed more than once.", t.GetKey())
		}
		seen[t.GetKey()] = true
	}
	return nil
}

func validateTagKeys(keys []string) *APIError {
	if len(keys) > maxTagKeysPerCall {
		return validationErr("tagKeys", fmt.Sprintf("Member must have length less than or equal to %d", maxTagKeysPerCall))
	}
	for i, k := range keys {
		if e := checkLength(fmt.Sprintf("tagKeys.%d.member", i+1), k, 1, storage.MaxTagKeyLength); e != nil {
			return e
		}
	}
	return nil
}

func validateFilters(filters []*cofferv1.Filter) *APIError {
	if len(filters) > maxFilters {
		return validationErr("filters", fmt.Sprintf("Member must have length less than or equal to %d", maxFilters))
	}
	for i, f := range filters {
		// AWS's answers, in its order: a filter without a key or without
		// values is an InvalidParameterException, an unknown key fails
		// the model's enum.
		switch {
		case f.GetKey() == "":
			return apiErr(TypeInvalidParameter, "Invalid filter key")
		case !slices.Contains(storage.FilterKeys, f.GetKey()):
			return apiErr(TypeValidation, "1 validation error detected: Value '%s' at 'filters.%d.member.key' failed to satisfy constraint: Member must satisfy enum value set: [%s]",
				truncateValue(f.GetKey()), i+1, strings.Join(storage.FilterKeys, ", "))
		case len(f.GetValues()) == 0:
			return apiErr(TypeInvalidParameter, "Invalid filter values for key: %s", f.GetKey())
		case len(f.GetValues()) > maxFilterValues:
			return validationErr(fmt.Sprintf("filters.%d.member.values", i+1),
				fmt.Sprintf("Member must have length less than or equal to %d", maxFilterValues))
		}
		for j, v := range f.GetValues() {
			field := fmt.Sprintf("filters.%d.member.values.%d.member", i+1, j+1)
			if e := checkLength(field, v, 1, maxFilterValueLength); e != nil {
				return e
			}
			if !filterValuePattern.MatchString(v) {
				return validationErr(field, `Member must satisfy regular expression pattern: ^\!?[a-zA-Z0-9 :_@/+=.\-!]*$`)
			}
		}
	}
	return nil
}

func storageFilters(filters []*cofferv1.Filter) []storage.Filter {
	out := make([]storage.Filter, len(filters))
	for i, f := range filters {
		out[i] = storage.Filter{Key: f.GetKey(), Values: slices.Clone(f.GetValues())}
	}
	return out
}

func validateMaxResults(field string, v *int32, hi int32) *APIError {
	if v == nil {
		return nil
	}
	if *v < 1 || *v > hi {
		return validationErr(field, fmt.Sprintf("Member must have value between 1 and %d", hi))
	}
	return nil
}

// valueConstraints checks SecretString and SecretBinary against the
// model: each, when given, 1 to 65,536 characters or bytes.
func valueConstraints(str *string, bin []byte, binSet bool) *APIError {
	if str != nil {
		if len(*str) == 0 {
			return validationErr("secretString", "Member must have length greater than or equal to 1")
		}
		if len(*str) > storage.MaxValueBytes {
			return validationErr("secretString", fmt.Sprintf("Member must have length less than or equal to %d", storage.MaxValueBytes))
		}
	}
	if binSet {
		if len(bin) == 0 {
			return validationErr("secretBinary", "Member must have length greater than or equal to 1")
		}
		if len(bin) > storage.MaxValueBytes {
			return validationErr("secretBinary", fmt.Sprintf("Member must have length less than or equal to %d", storage.MaxValueBytes))
		}
	}
	return nil
}

// secretValue checks the value a request gives — the model's constraints
// (valueConstraints), then that at most one of a string and a binary value
// is given, the string as UTF-8 — and returns it as bytes with its kind.
// ok is false when neither is given.
func secretValue(str *string, bin []byte, binSet bool) (kind storagev1.ValueKind, plain []byte, ok bool, err *APIError) {
	if e := valueConstraints(str, bin, binSet); e != nil {
		return 0, nil, false, e
	}
	hasStr := str != nil
	switch {
	case hasStr && binSet:
		return 0, nil, false, apiErr(TypeInvalidParameter, "You can't specify both a binary secret value and a string secret value in the same secret.")
	case hasStr:
		if !utf8.ValidString(*str) {
			return 0, nil, false, apiErr(TypeInvalidParameter, "SecretString must be valid UTF-8 text; store bytes in SecretBinary.")
		}
		return storagev1.ValueKind_VALUE_KIND_STRING, []byte(*str), true, nil
	case binSet:
		return storagev1.ValueKind_VALUE_KIND_BINARY, slices.Clone(bin), true, nil
	}
	return 0, nil, false, nil
}

// truncateValue bounds caller text echoed in a validation message.
func truncateValue(v string) string {
	if len(v) > 128 {
		return v[:128] + "..."
	}
	return v
}
