package server

import "context"

// MissingTokenMessage is AWS's answer to a raw caller that leaves out the
// ClientRequestToken every SDK and the CLI fill in.
const MissingTokenMessage = "You must provide a ClientRequestToken value. We recommend a UUID-type value."

type tokenRequiredKey struct{}

// WithClientTokenRequired returns ctx for a request whose protocol is
// AWS's: a CreateSecret or UpdateSecret with a value, a PutSecretValue or
// a RotateSecret without a ClientRequestToken is refused, as AWS refuses
// it, instead of given a generated one. The token is an idempotency token
// that the SDKs and the CLI generate, so AWS does not invent it: a retried
// raw request would otherwise create a second version. (The gRPC API, whose
// clients are told the token is optional, fills one in.)
func WithClientTokenRequired(ctx context.Context) context.Context {
	return context.WithValue(ctx, tokenRequiredKey{}, true)
}

// requireClientToken applies AWS's rule on a missing ClientRequestToken
// for a request that makes a version (or, for RotateSecret, a rotation):
// nil when the token is there or ctx does not ask for it. typ is the
// operation's error type for it — InvalidRequestException for CreateSecret,
// UpdateSecret and PutSecretValue, InvalidParameterException for
// RotateSecret, as AWS answers.
//
// Where it is called decides the order AWS validates in: after the
// model's constraints, which AWS checks in a pass of their own before the
// operation runs (its "N validation errors detected" lists every one), and
// before the operation's own checks — the name's characters, the secret's
// existence: a raw PutSecretValue, UpdateSecret or RotateSecret for a
// secret that does not exist gets this error from AWS, not
// ResourceNotFoundException (recorded against AWS by LocalStack's
// validated test_no_client_request_token). Where AWS has not been seen
// to decide — the token against a name's characters — the token comes
// first, as in that emulator.
func requireClientToken(ctx context.Context, typ, token string, makesVersion bool) *APIError {
	if token != "" || !makesVersion {
		return nil
	}
	if required, _ := ctx.Value(tokenRequiredKey{}).(bool); !required {
		return nil
	}
	return &APIError{Type: typ, Message: MissingTokenMessage}
}
