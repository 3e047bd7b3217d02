// Package faults is the fault-injection suite: it brings up the two-region
// compose deployment of deploy/compose (six cofferd containers, TLS on every
// listener), drives clients from the host through both the AWS protocol
// (aws-sdk-go-v2) and SigV4-signed gRPC, spread over the nodes, and breaks
// the deployment with the docker CLI: kill -9 of a leader, a follower or a
// whole region, pause of a leader past the election timeout, network
// partitions (docker network disconnect/connect) and a full disk.
//
// Every run records the client history and checks it with porcupine (each
// secret's AWSCURRENT value is a linearizable register), then checks that
// every acknowledged write is on every node, that no version appears twice
// or was never sent, and that the replica region converges to the
// primary's versions and labels.
//
// The tests run only with COFFER_FAULTS=1 (`make test-faults`; `make test`
// sets it when `docker info` works). COFFER_FAULTS_SOAK=1 adds the long
// runs that measure the figures in docs/FAULTS.md; COFFER_FAULTS_SEED
// replays a nemesis schedule. The deployment's names come from
// COFFER_FAULTS_PROJECT (default cofferfaults), COFFER_FAULTS_NET and
// COFFER_FAULTS_PORT_PREFIX, so it runs beside an operator's deployment;
// COFFER_FAULTS_KEEP=1 leaves it up afterwards.
package faults
