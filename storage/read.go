package storage

import (
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// Keyring returns the stored keyring, or nil before InitKeyring was applied.
func (s *Store) Keyring() (*storagev1.Keyring, error) {
	var k *storagev1.Keyring
	err := s.view(func(tx *bolt.Tx) error {
		buf := tx.Bucket(bucketMeta).Get(keyKeyring)
		if buf == nil {
			return nil
		}
		k = &storagev1.Keyring{}
		if err := proto.Unmarshal(buf, k); err != nil {
			return fmt.Errorf("decode keyring: %w", err)
		}
		return nil
	})
	return k, err
}

// Secret returns a secret's record by name, full ARN or partial ARN (the ARN
// without its random suffix). A secret scheduled for deletion is returned;
// the caller decides whether that is an error.
func (s *Store) Secret(ref string) (*storagev1.Secret, error) {
	var sec *storagev1.Secret
	err := s.view(func(tx *bolt.Tx) error {
		sec = resolve(tx, ref)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if sec == nil {
		return nil, errSecretNotFound()
	}
	return sec, nil
}

// resolve finds a secret by name, full ARN or partial ARN. Names cannot hold
// ':' so an "arn:" prefix is never a name.
func resolve(tx *bolt.Tx, ref string) *storagev1.Secret {
	if !strings.HasPrefix(ref, "arn:") {
		return getSecret(tx, ref)
	}
	if name, ok := nameFromFullARN(ref); ok {
		if sec := getSecret(tx, name); sec != nil && sec.GetArn() == ref {
			return sec
		}
	}
	p, ok := ParseARN(ref)
	if !ok {
		return nil
	}
	sec := getSecret(tx, p.Rest)
	if sec != nil && len(sec.GetArn()) == len(ref)+1+ARNSuffixLength && strings.HasPrefix(sec.GetArn(), ref+"-") {
		return sec
	}
	return nil
}

// SecretValue is one version of a secret, still sealed.
type SecretValue struct {
	Secret  *storagev1.Secret
	Version *storagev1.Version
	Value   *storagev1.SealedValue
}

// SecretValue finds the version GetSecretValue asks for: by versionID, by
// stage, by both (which must agree), or AWSCURRENT when neither is given.
// Reads of a secret scheduled for deletion fail with ErrMarkedForDeletion.
func (s *Store) SecretValue(ref, versionID, stage string) (*SecretValue, error) {
	var out *SecretValue
	var derr *Error
	err := s.view(func(tx *bolt.Tx) error {
		sec := resolve(tx, ref)
		if sec == nil {
			derr = errSecretNotFound()
			return nil
		}
		v, e := pickVersion(sec, versionID, stage)
		if e != nil {
			derr = e
			return nil
		}
		if !HasValue(v) {
			if versionID != "" {
				derr = newError(ErrVersionNotFound, "Secrets Manager can't find the specified secret value for VersionId: %s", versionID)
			} else {
				derr = newError(ErrStageNotFound, "Secrets Manager can't find the specified secret value for staging label: %s", orCurrent(stage))
			}
			return nil
		}
		val := getValue(tx, sec.GetArn(), v.GetVersionId())
		if val == nil {
			return fmt.Errorf("storage: value of %s version %s is missing", sec.GetArn(), v.GetVersionId())
		}
		out = &SecretValue{Secret: sec, Version: v, Value: val}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	return out, nil
}

func pickVersion(sec *storagev1.Secret, versionID, stage string) (*storagev1.Version, *Error) {
	if sec.GetDeletedDate() != nil {
		return nil, errMarkedForDeletion()
	}
	if versionID != "" {
		v := findVersion(sec, versionID)
		if v == nil {
			return nil, newError(ErrVersionNotFound, "Secrets Manager can't find the specified secret value for VersionId: %s", versionID)
		}
		if stage != "" && !slices.Contains(v.GetStages(), stage) {
			return nil, newError(ErrStageMismatch, "You provided a VersionStage that is not associated to the provided VersionId.")
		}
		return v, nil
	}
	if stage == "" {
		stage = StageCurrent
	}
	v := stageHolder(sec, stage)
	if v == nil {
		return nil, newError(ErrStageNotFound, "Secrets Manager can't find the specified secret value for staging label: %s", stage)
	}
	return v, nil
}

// Secrets calls fn for every secret, in name order, until fn returns false.
func (s *Store) Secrets(fn func(*storagev1.Secret) bool) error {
	return s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSecrets).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			sec := &storagev1.Secret{}
			if err := proto.Unmarshal(v, sec); err != nil {
				return fmt.Errorf("decode secret %q: %w", k, err)
			}
			if !fn(sec) {
				return nil
			}
		}
		return nil
	})
}

func orCurrent(stage string) string {
	if stage == "" {
		return StageCurrent
	}
	return stage
}
