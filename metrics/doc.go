// Package metrics owns Coffer's Prometheus metric families: their names,
// help, labels and buckets, the registry a node serves on its metrics
// listener, and the scrape-time collector that reads a node's Raft, disk,
// replication and secret state. Instrumented packages (server, replication,
// rotation) declare the small observer interfaces they call; Metrics
// implements them, so none of them imports Prometheus.
//
// It must never put a secret's name or value, a principal, an access key or
// any caller-chosen string in a label: labels come from closed sets
// (operations, AWS error types, steps, region names an operator paired).
package metrics
