// Package region connects regions: the WAN gossip pool (which regions
// exist, their nodes and leaders), the region replication port (mutual TLS,
// trusting only the cluster CAs of paired regions), and the shipper, which
// on a region's leader streams the change feed to each paired region and
// records what it acknowledged. It also carries AWS API requests an
// endpoint received for another paired region to that region (ForwardAWS),
// whose own endpoint authenticates and answers them.
//
// It moves batches; it never builds a state-machine command, never holds a
// data key or a value, and never decides a domain outcome: reading the
// feed, re-wrapping data keys and applying a batch are the Feed's (the API
// service's) job. It must never accept a batch from a region it is not
// paired with, or from a certificate of another region than the batch
// claims to come from, nor authenticate or authorize a forwarded request
// itself.
package region
