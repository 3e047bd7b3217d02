// Package load drives a key-value workload against a replicated store —
// Coffer's gRPC API or etcd — and measures it: throughput, errors by type
// and latency percentiles, from every latency recorded in per-client slices
// and sorted at the end.
//
// It owns the workload (keys, values, the put/get mix, warmup and the
// measured window) and the two clients that speak each system's API. It
// must never assert on speed: it reports numbers, and people or scripts
// compare them. It must never reach into a server's internals: it talks to
// endpoints over the network like any other client, so the same code runs
// against `cofferd dev`, a real region, or the in-process region of the
// profile command.
package load
