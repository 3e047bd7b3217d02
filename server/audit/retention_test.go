package audit

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/diskspace"
	"github.com/cofferhq/coffer/test/wait"
)

// rotatedFiles lists the log's rotated files by base name, oldest first.
func rotatedFiles(t *testing.T, path string) []string {
	t.Helper()
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if f != path {
			out = append(out, filepath.Base(f))
		}
	}
	return out
}

// TestRetentionDeletesOnlyShippedFiles: rotated files over MaxFiles are
// deleted only once the operator's shipper has marked them shipped, oldest
// first and only as a run from the oldest, so what is left verifies from
// the head Ack printed for the last one deleted.
func TestRetentionDeletesOnlyShippedFiles(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxBytes = 600 // a couple of records per file
	cfg.Retention = Retention{MaxFiles: 2}
	l := openLog(t, cfg)
	writeN(t, l, 0, 12)
	all := rotatedFiles(t, cfg.Path)
	if len(all) < 6 {
		t.Fatalf("rotated files %v: the test needs at least 6", all)
	}
	l.prune()
	if got := rotatedFiles(t, cfg.Path); !slices.Equal(got, all) {
		t.Fatalf("retention deleted unshipped files: %v left of %v", got, all)
	}

	// The shipper copies and acknowledges the three oldest but the second.
	dir := filepath.Dir(cfg.Path)
	heads := map[string]Anchor{}
	for _, name := range []string{all[0], all[2], all[3]} {
		head, err := Ack(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		heads[name] = head
	}
	l.prune()
	if got := rotatedFiles(t, cfg.Path); !slices.Equal(got, all[1:]) {
		t.Fatalf("after shipping 1, 3 and 4 of %v: %v left, want all but the first (the second is not shipped)", all, got)
	}
	if _, err := Ack(filepath.Join(dir, all[1])); err != nil {
		t.Fatal(err)
	}
	l.prune()
	want := all[4:] // the fifth and later were never shipped
	got := rotatedFiles(t, cfg.Path)
	if !slices.Equal(got, want) {
		t.Fatalf("after shipping the four oldest: %v left, want %v", got, want)
	}
	for _, name := range all[:4] {
		if _, err := os.Stat(filepath.Join(dir, name+ShippedSuffix)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the marker of deleted %s is still there (%v)", name, err)
		}
	}
	// What is left verifies from the head of the last file deleted.
	files, err := Files(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyWith(files, VerifyOptions{Start: heads[all[3]]}); err != nil {
		t.Fatalf("verify the rest from %v: %v", heads[all[3]], err)
	}
	marker, err := os.ReadFile(filepath.Join(dir, want[0]) + ShippedSuffix)
	if err == nil {
		t.Fatalf("a file nobody shipped has a marker: %s", marker)
	}
}

// TestRetentionByAgeWithDeleteUnshipped: with DeleteUnshipped, files older
// than MaxAge go whether shipped or not — the operator's explicit choice —
// and the retention goroutine does it on its own.
func TestRetentionByAgeWithDeleteUnshipped(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxBytes = 600
	cfg.Retention = Retention{MaxAge: time.Hour, DeleteUnshipped: true}
	l := openLog(t, cfg)
	writeN(t, l, 0, 8)
	all := rotatedFiles(t, cfg.Path)
	old := time.Now().Add(-2 * time.Hour)
	for _, name := range all[:2] {
		if err := os.Chtimes(filepath.Join(filepath.Dir(cfg.Path), name), old, old); err != nil {
			t.Fatal(err)
		}
	}
	writeN(t, l, 8, 3) // rotates, which wakes retention
	wait.True(t, 10*time.Second, "the two old files to be deleted", func() bool {
		got := rotatedFiles(t, cfg.Path)
		return len(got) > 0 && got[0] == all[2]
	})
	if _, err := Ack(cfg.Path); !errors.Is(err, ErrNotRotated) {
		t.Fatalf("Ack of the active log = %v, want ErrNotRotated", err)
	}
}

// TestLowSpaceFailsClosedWithAClearError: below MinFreeBytes on its volume
// the log refuses records before the disk is full, saying why; it writes
// again once there is room.
func TestLowSpaceFailsClosedWithAClearError(t *testing.T) {
	cfg := testConfig(t)
	free := uint64(1 << 30)
	cfg.MinFreeBytes = 100 << 20
	cfg.measure = func(string) (diskspace.Usage, error) { return diskspace.Usage{Free: free, Total: 10 << 30}, nil }
	l := openLog(t, cfg)
	writeN(t, l, 0, 2)
	free = 50 << 20
	err := l.Write(record(2))
	if !errors.Is(err, ErrNotWritten) || !errors.Is(err, ErrLowSpace) || !strings.Contains(err.Error(), "coffer audit ack") {
		t.Fatalf("Write below the free-space threshold = %v, want ErrNotWritten and ErrLowSpace saying what to do", err)
	}
	if herr := l.Healthy(); !errors.Is(herr, ErrLowSpace) {
		t.Fatalf("Healthy = %v, want the low-space reason", herr)
	}
	free = 1 << 30
	writeN(t, l, 3, 1)
	if rep := verifyAll(t, cfg.Path); rep.Records != 3 {
		t.Fatalf("%d records verified, want 3 (the refused one is not in the log)", rep.Records)
	}
}
