package audit

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// faultyFile is an active file whose writes and syncs can be made to fail.
type faultyFile struct {
	*os.File
	failWrite atomic.Bool // write half the bytes, then fail with ENOSPC
	failSync  atomic.Bool
	syncs     *atomic.Int64
}

func (f *faultyFile) Write(p []byte) (int, error) {
	if f.failWrite.Load() {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, syscall.ENOSPC
	}
	return f.File.Write(p)
}

func (f *faultyFile) Sync() error {
	if f.failSync.Load() {
		return syscall.EIO
	}
	if f.syncs != nil {
		f.syncs.Add(1)
	}
	return f.File.Sync()
}

// faults hands out faultyFiles and sets faults on every file it opened.
type faults struct {
	mu    sync.Mutex
	files []*faultyFile
	write bool
	sync  bool
	syncs atomic.Int64
}

func (fs *faults) open(name string, flag int, perm fs.FileMode) (file, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	ff := &faultyFile{File: f, syncs: &fs.syncs}
	ff.failWrite.Store(fs.write)
	ff.failSync.Store(fs.sync)
	fs.files = append(fs.files, ff)
	return ff, nil
}

func (fs *faults) set(write, sync bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.write, fs.sync = write, sync
	for _, f := range fs.files {
		f.failWrite.Store(write)
		f.failSync.Store(sync)
	}
}

func TestFailedWritesFailClosedAndLeaveTheChainIntact(t *testing.T) {
	for _, tc := range []struct {
		name        string
		write, sync bool
		errno       error
	}{
		{"short write", true, false, syscall.ENOSPC},
		{"fsync", false, true, syscall.EIO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			var fx faults
			cfg.openFile = fx.open
			l := openLog(t, cfg)
			writeN(t, l, 0, 3)

			fx.set(tc.write, tc.sync)
			for i := 3; i < 6; i++ {
				err := l.Write(record(i))
				if !errors.Is(err, ErrNotWritten) || !errors.Is(err, tc.errno) {
					t.Fatalf("Write %d = %v, want ErrNotWritten and %v", i, err, tc.errno)
				}
			}
			// What is on disk is still a valid chain, without the failed records.
			if rep := verifyAll(t, cfg.Path); rep.Records != 3 {
				t.Errorf("verified %d records, want 3", rep.Records)
			}

			fx.set(false, false)
			writeN(t, l, 6, 2)
			l.Close()
			rep := verifyAll(t, cfg.Path)
			if rep.Records != 5 || rep.Head.Seq != 5 {
				t.Errorf("report %+v, want 5 records ending at seq 5", rep)
			}
			for _, line := range readLines(t, cfg.Path) {
				if bytes.Contains(line, []byte(`"req-3"`)) {
					t.Errorf("a failed record is in the log: %s", line)
				}
			}
		})
	}
}

func TestWriteFailsOnAFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	l := openLog(t, Config{Path: "/dev/full", Key: testKey, Sync: true})
	for i := 0; i < 2; i++ {
		if err := l.Write(record(i)); !errors.Is(err, ErrNotWritten) || !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("Write = %v, want ErrNotWritten and ENOSPC", err)
		}
	}
}

func TestWriteFailsWhenTheFileIsReplacedByADirectory(t *testing.T) {
	cfg := testConfig(t)
	l := openLog(t, cfg)
	writeN(t, l, 0, 2)
	if err := os.Rename(cfg.Path, cfg.Path+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(cfg.Path, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := 2; i < 4; i++ {
		if err := l.Write(record(i)); !errors.Is(err, ErrNotWritten) {
			t.Fatalf("Write = %v, want ErrNotWritten", err)
		}
	}
	// Once the path is a file again, the chain continues from the last
	// record written, so Verify of the new file shows what went missing.
	os.Remove(cfg.Path)
	writeN(t, l, 4, 1)
	l.Close()
	_, err := Verify([]string{cfg.Path})
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Line != 1 || !strings.Contains(ve.Reason, "seq 3 where 1") {
		t.Errorf("Verify = %v, want a gap at line 1", err)
	}
	if rep, err := Verify([]string{cfg.Path + ".moved", cfg.Path}); err != nil || rep.Records != 3 {
		t.Errorf("Verify(moved, new) = %+v, %v", rep, err)
	}
}

func TestWriteFailsWhenTheDirectoryIsReadOnly(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	cfg := testConfig(t)
	cfg.MaxBytes = 600
	l := openLog(t, cfg)
	writeN(t, l, 0, 1)
	dir := filepath.Dir(cfg.Path)
	os.Chmod(dir, 0o500)
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	var err error
	for i := 1; i < 10 && err == nil; i++ {
		err = l.Write(record(i)) // the first rotation cannot rename
	}
	if !errors.Is(err, ErrNotWritten) {
		t.Fatalf("Write = %v, want ErrNotWritten", err)
	}
	os.Chmod(dir, 0o700)
	writeN(t, l, 20, 3)
	l.Close()
	verifyAll(t, cfg.Path)
}

func TestRotationFailureFailsClosed(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxBytes = 1000
	l := openLog(t, cfg)
	writeN(t, l, 0, 1)
	// Something else holds the name the next rotation needs.
	blocker := cfg.Path + ".000001"
	if err := os.Mkdir(blocker, 0o700); err != nil {
		t.Fatal(err)
	}
	var err error
	n := 1
	for ; n < 20 && err == nil; n++ {
		err = l.Write(record(n))
	}
	if !errors.Is(err, ErrNotWritten) {
		t.Fatalf("Write = %v, want ErrNotWritten", err)
	}
	if rep, err := Verify([]string{cfg.Path}); err != nil || rep.Records != n-1 {
		t.Errorf("Verify = %+v, %v; want %d records", rep, err, n-1)
	}
	os.Remove(blocker)
	writeN(t, l, 100, 10)
	l.Close()
	if rep := verifyAll(t, cfg.Path); rep.Records != n-1+10 {
		t.Errorf("verified %d records, want %d", rep.Records, n-1+10)
	}
}

func TestHealthyReportsABrokenLogUntilAWriteSucceeds(t *testing.T) {
	cfg := testConfig(t)
	var fx faults
	cfg.openFile = fx.open
	l := openLog(t, cfg)
	if err := l.Healthy(); err != nil {
		t.Fatalf("Healthy on a new log = %v", err)
	}
	writeN(t, l, 0, 1)
	fx.set(true, false)
	if err := l.Write(record(1)); !errors.Is(err, ErrNotWritten) {
		t.Fatalf("Write = %v, want ErrNotWritten", err)
	}
	if err := l.Healthy(); !errors.Is(err, ErrBroken) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Healthy after a failed write = %v, want ErrBroken and ENOSPC", err)
	}
	// The disk has room again, but nothing has shown it yet: still broken.
	fx.set(false, false)
	if err := l.Healthy(); !errors.Is(err, ErrBroken) {
		t.Fatalf("Healthy before any write succeeded = %v, want ErrBroken", err)
	}
	writeN(t, l, 2, 1) // the probe: reopens, writes
	if err := l.Healthy(); err != nil {
		t.Fatalf("Healthy after a successful write = %v", err)
	}
	l.Close()
	if err := l.Healthy(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Healthy after Close = %v, want ErrClosed", err)
	}
}
