package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ShippedSuffix marks a rotated file as shipped: "audit.log.000042" is
// shipped once "audit.log.000042.shipped" exists. The operator's shipper
// creates it (Ack, "coffer audit ack FILE", or any tool that creates the
// file) after it has copied the file somewhere the node cannot rewrite.
const ShippedSuffix = ".shipped"

// Retention says which rotated files the log deletes. The active file is
// never deleted, and a rotated one only when it is over a limit AND shipped
// (or DeleteUnshipped is set): a file the operator has not had the chance
// to ship stays, however many there are. Files go oldest first and only as
// a run from the oldest, so what is left is always one unbroken chain
// ("coffer audit verify --start SEQ:HASH", the head of the last file
// deleted, which Ack prints and writes into the marker).
type Retention struct {
	// MaxFiles keeps at most this many rotated files; 0: no count limit.
	MaxFiles int
	// MaxAge deletes rotated files last written longer ago; 0: no age limit.
	MaxAge time.Duration
	// DeleteUnshipped applies the limits to files that are not marked
	// shipped too: the operator accepts losing records nobody copied.
	DeleteUnshipped bool
}

// active reports whether r deletes anything at all.
func (r Retention) active() bool { return r.MaxFiles > 0 || r.MaxAge > 0 }

// retentionInterval is how often retention looks at the files besides
// after each rotation: files age without rotations.
const retentionInterval = time.Minute

// ErrNotRotated is returned by Ack for a file that is not a rotated audit
// file (the active log, or another file).
var ErrNotRotated = errors.New("audit: not a rotated audit log file")

// isRotatedName reports whether name ends as rotate names files (.NNNNNN).
func isRotatedName(name string) bool {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return false
	}
	suffix := name[i+1:]
	n, err := strconv.ParseUint(suffix, 10, 64)
	return err == nil && n > 0 && fmt.Sprintf("%06d", n) == suffix
}

// Ack marks the rotated file name as shipped, so that retention may delete
// it, and returns the head of the file (its last record), which a later
// "coffer audit verify --start" needs once it is deleted. The marker holds
// that head as "SEQ:HASH".
func Ack(name string) (Anchor, error) {
	if !isRotatedName(filepath.Base(name)) {
		return Anchor{}, fmt.Errorf("%w: %s (only rotated files, NAME.NNNNNN, can be marked shipped; the active log is still written)", ErrNotRotated, name)
	}
	seq, hash, err := headOf(name)
	if err != nil {
		return Anchor{}, err
	}
	if seq == 0 {
		return Anchor{}, fmt.Errorf("audit: %s holds no record", name)
	}
	head := Anchor{Seq: seq, Hash: hash}
	if err := os.WriteFile(name+ShippedSuffix, fmt.Appendf(nil, "%d:%s\n", seq, hash), 0o600); err != nil {
		return Anchor{}, err
	}
	return head, nil
}

func shipped(name string) bool {
	_, err := os.Lstat(name + ShippedSuffix)
	return err == nil
}

// retain runs retention at start, after every rotation and every
// retentionInterval, until the log closes.
func (l *Log) retain() {
	defer close(l.retained)
	t := time.NewTicker(retentionInterval)
	defer t.Stop()
	for {
		l.prune()
		select {
		case <-l.stopRetain:
			return
		case <-l.rotatedCh:
		case <-t.C:
		}
	}
}

// prune deletes what Retention allows, oldest first, and stops at the
// first file it must keep.
func (l *Log) prune() {
	r := l.cfg.Retention
	nums, err := rotated(l.cfg.Path)
	if err != nil {
		slog.Warn("audit: retention cannot list the rotated files", "path", l.cfg.Path, "err", err)
		return
	}
	now := time.Now()
	deleted := 0
	for i, n := range nums {
		name := rotatedName(l.cfg.Path, n)
		over := r.MaxFiles > 0 && len(nums)-i > r.MaxFiles
		old := false
		if r.MaxAge > 0 {
			if st, err := os.Stat(name); err == nil {
				old = now.Sub(st.ModTime()) > r.MaxAge
			}
		}
		if !over && !old {
			break
		}
		if !r.DeleteUnshipped && !shipped(name) {
			slog.Warn("audit: rotated files are over the retention limits but not shipped; none is deleted until it is (coffer audit ack FILE once it is copied)",
				"path", l.cfg.Path, "oldest_unshipped", name, "rotated_files", len(nums)-i)
			break
		}
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			slog.Warn("audit: retention cannot delete a rotated file", "file", name, "err", err)
			break
		}
		_ = os.Remove(name + ShippedSuffix)
		deleted++
	}
	if deleted > 0 && l.cfg.Sync {
		_ = syncDir(filepath.Dir(l.cfg.Path))
	}
}
