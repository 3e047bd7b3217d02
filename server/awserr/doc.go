// Package awserr is the one table of the AWS error types Coffer answers
// with: each type's name (the string AWS SDKs switch on), the HTTP status
// the AWS protocols send it with, the gRPC code Coffer's own API sends it
// with, and the code the STS Query protocol spells it as. server, awsjson,
// sts and sigv4 all read it, so a type cannot answer differently on two
// paths.
//
// It is a leaf: it must never import another Coffer package (sigv4, which
// must not depend on server, reads it too), never hold a message, and never
// decide which failure is which type — that is server's (AsAPIError) and
// sigv4's.
package awserr
