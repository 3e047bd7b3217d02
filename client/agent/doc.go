// Package agent is `coffer agent`: a local HTTP service that is a drop-in
// for aws-secretsmanager-agent (port 2773, /secretsmanager/get and
// /v1/<id>, the SSRF token header, the same status codes, /ping without a
// token as its health check), reading through the client package's cache,
// which the WatchSecrets stream keeps fresh. When Coffer is unreachable it
// serves the last good value with an X-Coffer-Cache-Age header; with a
// DiskCache it also keeps each answer encrypted at rest (AES-256-GCM, under
// a key the operator keeps elsewhere) and serves it after a restart while
// Coffer is unreachable, refusing a directory written with another key and
// any file that fails authentication. It only reads secrets and never logs
// a value.
package agent
