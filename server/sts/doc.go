// Package sts serves the two AWS STS operations Coffer offers on its AWS
// endpoint — GetSessionToken and GetCallerIdentity — in the STS Query
// protocol (POST / with a form body Action=…&Version=2011-06-15, SigV4 with
// the "sts" signing name, XML responses), so `aws sts get-session-token
// --endpoint-url …` and SDK STS clients work unchanged against a node.
//
// It owns the protocol only: form decoding, XML encoding, STS's error
// codes. The operations are the IAM service's (server.IAM), authorized and
// audited through the same server.Gate as every other request. It must
// never log, echo or keep a secret access key or a session token; they
// appear only in the GetSessionToken response body.
package sts
