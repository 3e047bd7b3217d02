//go:build !linux

package kms

import (
	"fmt"
	"runtime"
)

// lockedRegion is key memory on a platform where Coffer does not lock
// memory: ordinary memory, zeroed when freed.
type lockedRegion struct {
	mem    []byte
	locked bool
}

func newLockedRegion(n int, mode LockMode) (*lockedRegion, error) {
	if mode == LockRequired {
		return nil, fmt.Errorf("%w: not supported on %s", ErrMemoryLock, runtime.GOOS)
	}
	return &lockedRegion{mem: make([]byte, n)}, nil
}

func (r *lockedRegion) free() { clear(r.mem) }
