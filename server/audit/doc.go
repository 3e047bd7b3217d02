// Package audit owns Coffer's tamper-evident audit trail: it appends one JSON
// line per request to a node-local file, chains every record to the one before
// it by SHA-256 (across size-based rotation and restarts), commits concurrent
// writers with one fsync, fails closed — Write returns an error whenever a
// record is not durably on disk, so the caller can fail the request — and
// verifies a chain of files (Verify, "coffer audit verify"). It must never
// hold or write a secret value, data key, secret access key or session token:
// callers pass only metadata, and any request parameter that could carry a
// secret goes through HashValue (a keyed HMAC) before it reaches a Record.
// It decides nothing about access and never reads Raft or storage state.
package audit
