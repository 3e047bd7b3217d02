package storage

import (
	"errors"
	"fmt"
)

// The domain failures Apply and the readers return. Each is wrapped in an
// *Error whose message is the text a user sees (AWS wording where AWS has a
// well-known one); test for a kind with errors.Is. The server maps kinds to
// AWS error types and gRPC codes; this package never does.
var (
	// ErrSecretNotFound: no secret has that name or ARN.
	ErrSecretNotFound = errors.New("secret not found")
	// ErrVersionNotFound: the secret has no version with that id.
	ErrVersionNotFound = errors.New("version not found")
	// ErrStageNotFound: no version of the secret carries that staging label.
	ErrStageNotFound = errors.New("staging label not found")
	// ErrSecretExists: a secret with that name already exists.
	ErrSecretExists = errors.New("secret already exists")
	// ErrTokenInUse: the ClientRequestToken names a version with another value.
	ErrTokenInUse = errors.New("client request token already in use")
	// ErrMarkedForDeletion: the secret is scheduled for deletion, so the
	// operation is refused until it is restored.
	ErrMarkedForDeletion = errors.New("secret marked for deletion")
	// ErrStageMismatch: the VersionStage asked for is not on the VersionId asked for.
	ErrStageMismatch = errors.New("version stage does not match version id")
	// ErrInvalidParameter: a parameter breaks a rule that depends on state,
	// such as RemoveFromVersionId naming the wrong version.
	ErrInvalidParameter = errors.New("invalid parameter")
	// ErrLimitExceeded: the change would exceed a per-secret limit (versions,
	// labels per version, tags).
	ErrLimitExceeded = errors.New("limit exceeded")
	// ErrInvalidNextToken: a pagination token is malformed or belongs to another query.
	ErrInvalidNextToken = errors.New("invalid next token")
	// ErrPrincipalNotFound: no principal has that name.
	ErrPrincipalNotFound = errors.New("principal not found")
	// ErrPrincipalExists: a principal with that name exists.
	ErrPrincipalExists = errors.New("principal already exists")
	// ErrAccessKeyNotFound: no access key has that id.
	ErrAccessKeyNotFound = errors.New("access key not found")
	// ErrPolicyNotFound: no identity policy has that name.
	ErrPolicyNotFound = errors.New("policy not found")
	// ErrPolicyInUse: the policy is still attached to a principal.
	ErrPolicyInUse = errors.New("policy attached to principals")
	// ErrRotationInProgress: a rotation has not finished, so another cannot start.
	ErrRotationInProgress = errors.New("rotation in progress")
	// ErrNoRotationFunction: rotation needs a function and none is configured.
	ErrNoRotationFunction = errors.New("no rotation function")
	// ErrFunctionNotFound: no rotation function has that name.
	ErrFunctionNotFound = errors.New("rotation function not found")
	// ErrReplicaReadOnly: the secret is a replica; writes go to its primary region.
	ErrReplicaReadOnly = errors.New("replica secret is read-only")
	// ErrInvalidShipment: a batch shipped by another region breaks a rule
	// every shipped change must keep (ValidateShipment); nothing of it applies.
	ErrInvalidShipment = errors.New("invalid shipped change")
	// ErrWatchCompacted: a watcher's resume position is older than the
	// changes this node still holds; it must reread and watch from now.
	ErrWatchCompacted = errors.New("watch position compacted")
	// ErrKMSKeyNotFound: no KMS key has that id (KMS NotFoundException).
	ErrKMSKeyNotFound = errors.New("kms key not found")
	// ErrKMSAliasExists: the alias names a key already (KMS AlreadyExistsException).
	ErrKMSAliasExists = errors.New("kms alias already exists")
	// ErrKMSAliasNotFound: no key has that alias (KMS NotFoundException).
	ErrKMSAliasNotFound = errors.New("kms alias not found")
	// ErrKMSKeyDisabled: the key is disabled (KMS DisabledException).
	ErrKMSKeyDisabled = errors.New("kms key disabled")
	// ErrKMSInvalidState: the key's state forbids the change, such as a key
	// pending deletion (KMS KMSInvalidStateException).
	ErrKMSInvalidState = errors.New("kms key in an invalid state")
	// ErrRegionFenced: the region is fenced; its primary secrets refuse
	// writes until an operator lifts the fence. Retryable.
	ErrRegionFenced = errors.New("region fenced")
	// ErrSwitchingOver: the secret is being handed over to another region
	// by a planned switchover. Retryable (in the new primary region).
	ErrSwitchingOver = errors.New("switchover in progress")
)

// Error is a domain failure: a kind from the var block above and the message
// a user should read. Messages name secrets and versions, never values.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap makes errors.Is(err, ErrSecretNotFound) and friends work.
func (e *Error) Unwrap() error { return e.Kind }

func newError(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

func errSecretNotFound() *Error {
	return newError(ErrSecretNotFound, "Secrets Manager can't find the specified secret.")
}

func errMarkedForDeletion() *Error {
	return newError(ErrMarkedForDeletion, "You can't perform this operation on the secret because it was marked for deletion.")
}

func errTokenInUse(token, arn string) *Error {
	return newError(ErrTokenInUse, "You can't use ClientRequestToken %s because that value is already in use for a version of secret %s.", token, arn)
}

// Sentinels lists every error kind, in a fixed order, so that a result can
// cross the network (leader forwarding) as an index and come back as the same
// kind.
func Sentinels() []error {
	return []error{
		ErrSecretNotFound, ErrVersionNotFound, ErrStageNotFound, ErrSecretExists,
		ErrTokenInUse, ErrMarkedForDeletion, ErrStageMismatch, ErrInvalidParameter,
		ErrLimitExceeded, ErrInvalidNextToken,
		// Append only: a kind's position is its wire number.
		ErrPrincipalNotFound, ErrPrincipalExists, ErrAccessKeyNotFound,
		ErrPolicyNotFound, ErrPolicyInUse,
		ErrRotationInProgress, ErrNoRotationFunction, ErrFunctionNotFound,
		ErrReplicaReadOnly,
		ErrInvalidShipment,
		ErrRegionFenced, ErrSwitchingOver,
		ErrKMSKeyNotFound, ErrKMSAliasExists, ErrKMSAliasNotFound, ErrKMSKeyDisabled, ErrKMSInvalidState,
	}
}

// KindNumber is err's kind as carried on the wire and in stored proposal
// results: 0 for none or an error that is not a domain failure, else one
// plus the kind's position in Sentinels.
func KindNumber(err error) uint32 {
	var se *Error
	if !errors.As(err, &se) {
		return 0
	}
	for i, k := range Sentinels() {
		if se.Kind == k {
			return uint32(i + 1)
		}
	}
	return 0
}

// FromKindNumber rebuilds the domain failure KindNumber described; nil for 0
// or a number this build does not know.
func FromKindNumber(n uint32, msg string) *Error {
	if n == 0 || int(n) > len(Sentinels()) {
		return nil
	}
	return &Error{Kind: Sentinels()[n-1], Msg: msg}
}
