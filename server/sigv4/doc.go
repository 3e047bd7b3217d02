// Package sigv4 owns AWS Signature Version 4 for Coffer's AWS-compatible
// HTTP API: Verifier checks that a request was signed, with the Authorization
// header, by the holder of a known access key (rebuilding the canonical
// request from the SignedHeaders list the request carries, so that the Go
// SDK's seven signed headers and botocore's four both verify), and returns
// the credentials and the region named in the credential scope; Sign signs a
// request the same way, for tests and for Coffer's own clients. Its failures
// are *Error values carrying the AWS error type and AWS's wording, for
// server/ to send as they are. It must never log a secret access key, a
// session token or a signature, nor put one in an error; never accept a
// request whose Host header is unsigned, whose date is outside the allowed
// clock skew or whose scope names another service; and never compare
// signatures or tokens in time that depends on their contents (hmac.Equal,
// crypto/subtle).
package sigv4
