package kms

import (
	"errors"
	"runtime"
)

// Key material in memory. The root key, the keyring's unsealed key material
// and the pairwise replication keys live outside the Go heap, in memory
// mapped for them alone (lockedRegion): locked against swapping (mlock) and
// left out of core dumps (MADV_DONTDUMP), so that no copy of a long-lived
// key is written to a swap device or a core file. The garbage collector
// never sees, moves or copies that memory; it is zeroed before it is
// unmapped. What Go's crypto derives from a key for one operation (an AES
// key schedule, an HMAC's padded key) lives on the heap for that operation
// only; data keys, one per value, are on the heap for one seal or unseal
// and cleared after.

// LockMode says what happens when key material cannot be locked in memory.
type LockMode int

const (
	// LockBestEffort keeps material that cannot be locked in memory that is
	// not locked; its holder reports it (Locked is false). For tests and
	// cofferd dev, and for cofferd with allow_no_mlock.
	LockBestEffort LockMode = iota
	// LockRequired fails with ErrMemoryLock instead: cofferd's default.
	LockRequired
)

// ErrMemoryLock means key material could not be locked in memory: the
// process's RLIMIT_MEMLOCK is too low, or the platform cannot lock memory.
var ErrMemoryLock = errors.New("kms: key memory cannot be locked in memory (mlock)")

// MinMemoryLock is the locked memory (RLIMIT_MEMLOCK) a node needs at
// least: a page for the root key, one for the keyring, one per paired
// region's replication key, and room for more. CheckMemoryLock locks this
// much to find out.
const MinMemoryLock = 64 << 10

// LockedKey is a key held in locked memory. It is freed (zeroed, unlocked,
// unmapped) by Destroy or once it is unreachable; Use keeps it alive while
// its function runs, so the bytes it hands out must not outlive that call.
type LockedKey struct {
	region  *lockedRegion
	n       int
	cleanup runtime.Cleanup
}

// NewLockedKey copies key into locked memory. With LockRequired it fails
// with ErrMemoryLock when the memory cannot be locked. The caller clears
// its own copy.
func NewLockedKey(key []byte, mode LockMode) (*LockedKey, error) {
	r, err := newLockedRegion(len(key), mode)
	if err != nil {
		return nil, err
	}
	copy(r.mem, key)
	k := &LockedKey{region: r, n: len(key)}
	k.cleanup = runtime.AddCleanup(k, (*lockedRegion).free, r)
	return k, nil
}

// Use calls fn with the key. fn must not keep the slice.
func (k *LockedKey) Use(fn func(key []byte) error) error {
	defer runtime.KeepAlive(k)
	return fn(k.region.mem[:k.n])
}

// Bytes is the key itself, for a holder that keeps k reachable for as long
// as it uses the slice (a cache that never drops k): the memory is freed
// once k is unreachable. Use is the safe form.
func (k *LockedKey) Bytes() []byte { return k.region.mem[:k.n] }

// Locked reports whether the key's memory is locked against swapping.
func (k *LockedKey) Locked() bool { return k.region.locked }

// Destroy zeroes and frees the key now; it must not be used after.
func (k *LockedKey) Destroy() {
	k.cleanup.Stop()
	k.region.free()
}

// CheckMemoryLock finds out whether this process can lock the memory a
// node needs (MinMemoryLock): nil, or an error wrapping ErrMemoryLock that
// names the limit in force. cofferd calls it before it unseals the root
// key.
func CheckMemoryLock() error {
	r, err := newLockedRegion(MinMemoryLock, LockRequired)
	if err != nil {
		return err
	}
	r.free()
	return nil
}
