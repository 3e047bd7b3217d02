// Package client is the Go client applications use to read secrets from
// Coffer: GetSecretValue by id, stage or version over SigV4-signed gRPC
// (or a client certificate), retried with backoff on retryable answers,
// across the endpoints of the nearest region first and the other regions
// after, with an in-memory cache that the WatchSecrets stream keeps fresh
// (a TTL bounds an entry's age whenever the stream is not following). It
// never logs or returns a value in an error, and never imports the server.
package client
