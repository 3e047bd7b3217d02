// Command profile finds what bounds Coffer under the load generator's
// workload. It starts a 3-node region in this process — the same assembly
// as `cofferd dev --nodes 3`: node.Start with mutual-TLS cluster
// certificates from a fresh CA, gossip and autopilot — drives it with
// package load over loopback gRPC, and profiles the measured window only:
//
//   - CPU (runtime/pprof), split into server and load-generator time by the
//     pprof label bench=client that the load generator's goroutines carry;
//   - lock contention (mutex profile) and blocking (block profile);
//   - a few seconds of runtime/trace, turned into syscall and
//     synchronisation blocking profiles (where fsync waits show up: off-CPU
//     time that a CPU profile cannot see);
//   - Raft's own metrics (hashicorp/raft and raft-boltdb, through an
//     in-memory go-metrics sink): log batches, their size, fsync-bound
//     storeLogs time, commit time, FSM batches.
//
// It prints the load report, then `go tool pprof -top` of each profile,
// and keeps the profiles in --out. Usage, from test/bench:
//
//	go run ./profile --op put --duration 15s
//	go run ./profile --op get --clients 64
//
// It owns nothing but this diagnosis; it must never be used to assert on
// speed, and it must never listen anywhere but loopback.
package main
