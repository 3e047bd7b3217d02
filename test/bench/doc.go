// Command bench is Coffer's load generator. It drives the same closed-loop
// workload against a Coffer region (gRPC API) or an etcd cluster (KV API),
// so the two can be compared with identical parameters, and reports
// operations, errors by type, ops/s and p50/p90/p99/max latency.
//
//	go run . --target coffer --endpoints 127.0.0.1:7400,127.0.0.1:7410,127.0.0.1:7420 --op put
//	go run . --target etcd --endpoints 127.0.0.1:23790,127.0.0.1:23792,127.0.0.1:23794 --op get --json
//	go run . compare coffer-put.json etcd-put.json ...
//
// This directory is its own Go module (github.com/cofferhq/coffer/test/bench)
// so the etcd client never enters Coffer's go.mod. It owns the load
// generator (package load), this command, and the in-process profiling
// command (profile/). It must never assert on speed — it measures and
// prints — and it is not part of `make test`; scripts/bench-vs-etcd.sh runs
// it side by side against etcd.
//
// Credentials: `cofferd dev` takes gRPC calls without any. For a region
// that requires them, set COFFER_ACCESS_KEY_ID and COFFER_SECRET_ACCESS_KEY
// (as for the coffer CLI); every call then carries them as a bearer token.
//
// Clients: --clients workers run closed loops, spread round-robin over
// --endpoints; every --clients-per-conn (8) workers on one endpoint share
// one connection (gRPC multiplexes their calls over one HTTP/2 connection),
// so 64 clients on 3 endpoints use 9 connections, for both systems.
//
// Keys and Coffer's version limit: Coffer keeps at most 100 versions of a
// secret created in the last 24 hours. A run that writes to Coffer
// therefore uses keys under a prefix of its own (bench/run-<id>/), creates
// them first, and sends each key at most 90 puts (load.PutsPerKey); past
// keys×90 puts it moves on to a fresh generation of --keys secrets,
// created in the background once the current one is half used (one
// CreateSecret per 90 puts, about 1% extra writes). A read-only run uses a
// stable prefix (bench/coffer-v<size>/), so reruns reuse its secrets:
// CreateSecret's ResourceExistsException counts as success. --prefix
// overrides both; reusing a written prefix within 24 hours can hit the
// limit, which then shows as LimitExceededException errors.
package main
