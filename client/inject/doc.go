// Package inject is `coffer exec`: it resolves secret references (a
// secret, a JSON key in it, a stage or version; the ECS valueFrom ARN form
// too) through the client package, runs a command with them as
// environment variables and rendered into files from Go templates
// (written atomically with a chosen mode), forwards signals to it, exits
// with its code, and restarts or signals it when an injected value
// changes. It never logs a value.
package inject
