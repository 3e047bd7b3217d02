package kms

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// lockedRegion is memory mapped for key material alone (see memlock.go).
type lockedRegion struct {
	mem    []byte
	mapped []byte // the whole mapping, whole pages
	locked bool
	once   sync.Once
}

// newLockedRegion maps n bytes (rounded up to whole pages), locks them and
// leaves them out of core dumps. When they cannot be locked it fails with
// LockRequired and keeps them unlocked with LockBestEffort.
func newLockedRegion(n int, mode LockMode) (*lockedRegion, error) {
	page := os.Getpagesize()
	size := max((n+page-1)/page*page, page)
	mapped, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("kms: map key memory: %w", err)
	}
	r := &lockedRegion{mem: mapped[:n], mapped: mapped}
	// Best effort: a kernel without MADV_DONTDUMP still locks.
	_ = unix.Madvise(mapped, unix.MADV_DONTDUMP)
	if err := unix.Mlock(mapped); err != nil {
		if mode == LockRequired {
			_ = unix.Munmap(mapped)
			return nil, fmt.Errorf("%w: mlock of %d bytes: %w (%s)", ErrMemoryLock, size, err, memlockLimit())
		}
		return r, nil
	}
	r.locked = true
	return r, nil
}

// free zeroes the region, unlocks and unmaps it, once.
func (r *lockedRegion) free() {
	r.once.Do(func() {
		clear(r.mapped)
		if r.locked {
			_ = unix.Munlock(r.mapped)
		}
		_ = unix.Munmap(r.mapped)
		r.mem, r.mapped = nil, nil
	})
}

// memlockLimit describes the process's RLIMIT_MEMLOCK, for errors.
func memlockLimit() string {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		return "RLIMIT_MEMLOCK unknown"
	}
	if lim.Cur == unix.RLIM_INFINITY {
		return "RLIMIT_MEMLOCK is unlimited"
	}
	return fmt.Sprintf("RLIMIT_MEMLOCK is %d bytes", lim.Cur)
}
