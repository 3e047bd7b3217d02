// Package diskspace measures the free space of the volume that holds a
// path, and decides whether it is below a threshold: what the Raft proposer
// checks before a write (so Apply never meets a full disk) and the audit log
// before a record. It imports nothing of Coffer's and decides nothing else.
package diskspace
