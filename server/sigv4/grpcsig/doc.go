// Package grpcsig owns SigV4 over gRPC metadata, the way clients of Coffer's
// gRPC API authenticate: Credentials (a grpc.PerRPCCredentials, with the
// interceptors of DialOptions) signs every call with an access key, and
// Verify checks such a call on the server. A signature covers the method
// (the canonical request's path), the :authority, the time (x-amz-date),
// the session token when there is one, and the request message (the SHA-256
// of its deterministic encoding, in x-amz-content-sha256), so a captured
// call is good only unchanged, for the same method, within the server's
// clock window: it is not a reusable credential, as a bearer secret is.
// Both sides build the canonical request with server/sigv4, so there is one
// definition of it. The package must never log or return a secret access
// key, a session token or a signature, and must stay importable by clients
// (it depends on sigv4, gRPC and protobuf only).
package grpcsig
