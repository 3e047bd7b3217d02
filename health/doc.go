// Package health serves a node's HTTP health endpoints: /livez and /readyz
// in the style of etcd and Kubernetes (named checks, ?verbose, ?exclude=),
// and Vault's /v1/sys/health with status codes a load balancer can act on.
// They need no authentication, so they must reveal nothing sensitive:
// check names and fixed reasons only, never an error's text, a path or a
// secret.
package health
