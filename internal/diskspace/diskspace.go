package diskspace

import (
	"errors"
	"fmt"
)

// ErrLow is wrapped by Check's error when a volume is below its threshold.
var ErrLow = errors.New("low on free space")

// Usage is a volume's space in bytes: what an unprivileged writer can still
// use, and the whole volume.
type Usage struct {
	Free, Total uint64
}

// Measure is how a volume's usage is read; Of is the real one, tests
// replace it.
type Measure func(path string) (Usage, error)

// DefaultMinFree is the threshold when none is configured: 1 GiB, or a
// tenth of a smaller volume, so a test machine or a small volume still
// works while a large one keeps a full gibibyte back.
func DefaultMinFree(total uint64) uint64 {
	const gib = 1 << 30
	return min(gib, total/10)
}

// Threshold resolves a configured threshold: 0 means DefaultMinFree of the
// volume, a negative one means no threshold (0).
func Threshold(configured int64, total uint64) uint64 {
	switch {
	case configured < 0:
		return 0
	case configured == 0:
		return DefaultMinFree(total)
	}
	return uint64(configured)
}

// Check measures the volume of path and returns an error wrapping ErrLow,
// with the figures, when its free space minus need is below minFree (see
// Threshold). need is what the caller is about to write, when it knows.
func Check(measure Measure, path string, configured int64, need uint64) error {
	if measure == nil {
		measure = Of
	}
	u, err := measure(path)
	if err != nil {
		return fmt.Errorf("measure free space of %s: %w", path, err)
	}
	limit := Threshold(configured, u.Total)
	if limit == 0 && need == 0 {
		return nil
	}
	if u.Free < need || u.Free-need < limit {
		return fmt.Errorf("%w: %s has %s free, needs %s more than the %s kept back", ErrLow, path, Bytes(u.Free), Bytes(need), Bytes(limit))
	}
	return nil
}

// Bytes renders a size for messages.
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
