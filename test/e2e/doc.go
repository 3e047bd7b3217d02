// Package e2e holds Coffer's end-to-end tests: they build the cofferd and
// coffer binaries, run cofferd as a real child process on loopback ports with
// its own data directory and root key, and drive it through the gRPC API and
// the CLI as a user would, asserting on the values a user sees, the AWS error
// types, the exit codes, what survives a restart, and what lands on disk.
//
// The package owns only black-box tests. It must never import the daemon's
// internals to reach around the API (the one exception is server.TypeOf, the
// documented way to read an error's AWS type), never sleep where it can wait
// for a condition, and never assert on how long something took.
package e2e
