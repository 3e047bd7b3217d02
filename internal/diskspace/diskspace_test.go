package diskspace

import (
	"errors"
	"testing"
)

func TestCheck(t *testing.T) {
	const gib = 1 << 30
	volume := func(free, total uint64) Measure {
		return func(string) (Usage, error) { return Usage{Free: free, Total: total}, nil }
	}
	for _, tt := range []struct {
		name       string
		free, size uint64
		configured int64
		need       uint64
		low        bool
	}{
		{"default: 1 GiB on a large volume", 2 * gib, 100 * gib, 0, 0, false},
		{"default: under 1 GiB", gib - 1, 100 * gib, 0, 0, true},
		{"default: a tenth of a small volume", 300 << 20, 2 * gib, 0, 0, false},
		{"default: under a tenth of a small volume", 100 << 20, 2 * gib, 0, 0, true},
		{"configured", 5 << 20, 100 * gib, 4 << 20, 0, false},
		{"configured, with what is about to be written", 5 << 20, 100 * gib, 4 << 20, 2 << 20, true},
		{"off", 1, 100 * gib, -1, 0, false},
		{"off, but the write does not fit", 1, 100 * gib, -1, 2, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(volume(tt.free, tt.size), "/data", tt.configured, tt.need)
			if got := errors.Is(err, ErrLow); got != tt.low {
				t.Fatalf("Check = %v, want low %v", err, tt.low)
			}
		})
	}
	if _, err := Of(t.TempDir()); err != nil {
		t.Fatalf("measuring a real directory: %v", err)
	}
}
