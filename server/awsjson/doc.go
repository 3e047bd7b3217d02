// Package awsjson serves the AWS Secrets Manager wire protocol (awsJson1_1:
// POST / with X-Amz-Target: secretsmanager.<Operation>), so AWS SDKs, the
// AWS CLI and tools built on them can use Coffer unchanged. It owns the
// protocol only: routing by target, authenticating through an Authenticator,
// authorizing and auditing through the server.Gate,
// the mapping between AWS JSON members and the coffer.v1 messages (done
// generically from the proto descriptors), asking for the ClientRequestToken
// rule AWS applies to raw callers (server.WithClientTokenRequired; the
// Service applies it, in AWS's order of checks), request ids, read-consistency headers, and
// rendering errors as {"__type", "message"} with AWS's HTTP statuses.
//
// It must never own business logic — every operation is one call to the
// same cofferv1.SecretsManagerServiceServer the gRPC API serves, so the two
// protocols cannot drift — and it must never log, echo or keep a request or
// response body, a secret value or a generated password.
package awsjson
