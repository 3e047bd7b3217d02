// Package ops tests what an operator sees of a running region: the
// Prometheus exposition, scraped by Debian's real prometheus, and the
// health endpoints through leader loss, partitions, fencing and a broken
// audit log. It has no non-test code.
package ops
