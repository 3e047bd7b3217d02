// Package failover runs the multi-step failover procedures against live
// regions through their public API: a planned switchover (fence the
// handed-over secrets, drain to lag 0, promote in the target, wait for the
// old primary to become its replica), failback, and a complete drill with
// canary writers that measures RTO and RPO and writes a report.
//
// It holds no state of its own and reads no secret value beyond the
// drill's own canaries: every step is a coffer: or secretsmanager: call the
// regions authorize and audit. The CLI (coffer region switchover,
// coffer region failback, coffer drill) and the tests use it.
package failover
