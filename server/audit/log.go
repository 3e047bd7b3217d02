package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/cofferhq/coffer/internal/diskspace"
)

var (
	// ErrNotWritten wraps every error from Write: the record is not durably in
	// the log, and the request it describes must fail.
	ErrNotWritten = errors.New("audit: record not written")
	// ErrClosed is returned by Write after Close.
	ErrClosed = errors.New("audit: log closed")
	// ErrConfig wraps the reasons a Config is refused.
	ErrConfig = errors.New("audit: invalid config")
	// ErrBroken is returned by Healthy while the log is broken: a write
	// failed and no write has succeeded since.
	ErrBroken = errors.New("audit: log is broken")
	// ErrDamaged means the last record of an existing log is not a valid
	// record, so Open cannot continue its chain; run "coffer audit verify".
	ErrDamaged = errors.New("audit: log is damaged")
	// ErrLowSpace is why a record is not written when the log's volume is
	// below Config.MinFreeBytes: the log fails closed before the disk is
	// full, and says so.
	ErrLowSpace = errors.New("audit: the audit log's volume is low on free space")
)

// DefaultMinFreeBytes is Config.MinFreeBytes when it is zero.
const DefaultMinFreeBytes = 64 << 20

// DefaultMaxBytes is the rotation size when Config.MaxBytes is zero.
const DefaultMaxBytes = 64 << 20

// MinKeyBytes is the shortest Config.Key accepted: a short key would let
// anyone who reads the log test guesses of a parameter's value offline.
const MinKeyBytes = 16

// Config says where and how a node writes its audit log.
type Config struct {
	Path     string // the active file; rotated files sit beside it as Path.000001...
	MaxBytes int64  // rotate when the next record would make the file larger; 0 means DefaultMaxBytes
	Key      []byte // the per-cluster HMAC key for HashValue, at least MinKeyBytes long
	Node     string // written into records that name no node
	Sync     bool   // fsync before Write returns (group commit); without it a crash can lose acknowledged records
	// Retention says which rotated files the log deletes (retention.go);
	// the zero value deletes none.
	Retention Retention
	// MinFreeBytes refuses records while the log's volume has less free
	// space (ErrLowSpace); 0 means DefaultMinFreeBytes, negative no check.
	MinFreeBytes int64

	// openFile opens the active file; tests replace it to inject failures.
	openFile func(name string, flag int, perm fs.FileMode) (file, error)
	// measure reads the volume's free space; tests replace it.
	measure diskspace.Measure
}

// Validate reports what is wrong with c, wrapping ErrConfig.
func (c Config) Validate() error {
	switch {
	case c.Path == "":
		return fmt.Errorf("%w: Path is empty", ErrConfig)
	case c.MaxBytes < 0:
		return fmt.Errorf("%w: MaxBytes %d is negative", ErrConfig, c.MaxBytes)
	case c.Retention.MaxFiles < 0 || c.Retention.MaxAge < 0:
		return fmt.Errorf("%w: retention limits must not be negative", ErrConfig)
	case len(c.Key) < MinKeyBytes:
		return fmt.Errorf("%w: Key has %d bytes, fewer than %d", ErrConfig, len(c.Key), MinKeyBytes)
	}
	return nil
}

// file is what the Log needs of its active file; *os.File is one.
type file interface {
	io.Writer
	io.ReaderAt
	Sync() error
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
	Close() error
}

var _ file = (*os.File)(nil)

func openOSFile(name string, flag int, perm fs.FileMode) (file, error) {
	return os.OpenFile(name, flag, perm)
}

// Log appends hash-chained records to a file. Its methods are safe for
// concurrent use; records are chained in the order Write takes its lock,
// and one background goroutine writes them, batching whatever queued while
// the previous batch was being written and synced (group commit).
type Log struct {
	cfg Config

	mu      sync.Mutex
	cond    *sync.Cond // signals the flusher: a batch is pending, or Close
	seq     uint64     // the last record chained, written or queued
	prev    string     // its hash
	durable Anchor     // the last record known to be written
	pending *batch     // records queued behind the one being written
	err     error      // set when a write failed: the log is broken until recover succeeds
	suspect error      // l.err as it was when recover reopened the file: cleared once a batch is written again
	closing bool
	stopped chan struct{} // closed when the flusher has returned

	// Retention (retain): rotatedCh wakes it after a rotation, stopRetain
	// stops it, retained is closed when it has returned (nil: not running).
	rotatedCh  chan struct{}
	stopRetain chan struct{}
	retained   chan struct{}

	// Owned by the flusher while the log is healthy, and by recover (under mu)
	// while it is broken; see Write.
	f    file
	size int64  // bytes of f that hold complete, written records
	next uint64 // the number the active file takes when rotated
	buf  []byte
}

// batch is the records one write+fsync covers.
type batch struct {
	first     uint64 // seq of lines[0]
	lines     [][]byte
	hashes    []string
	committed int // how many of lines are durably in the log
	err       error
	done      chan struct{}
}

// Open opens the log at cfg.Path, creating it if needed, and continues the
// chain from the last record of the newest file of its rotated set. A torn
// last line (a crash during a write, whose Write never returned) is cut off;
// a last record that is not valid makes Open fail with ErrDamaged.
func Open(cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	cfg.Key = bytes.Clone(cfg.Key) // the caller may reuse its slice
	if cfg.openFile == nil {
		cfg.openFile = openOSFile
	}
	l := &Log{cfg: cfg, stopped: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	if err := l.reopen(); err != nil {
		return nil, err
	}
	l.durable = Anchor{Seq: l.seq, Hash: l.prev}
	go l.flusher()
	if cfg.Retention.active() {
		l.rotatedCh, l.stopRetain, l.retained = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go l.retain()
	}
	return l, nil
}

// reopen (re)opens the active file and reads the chain's head from disk.
func (l *Log) reopen() error {
	if l.f != nil {
		l.f.Close() // already broken; its error says nothing new
		l.f = nil
	}
	nums, err := rotated(l.cfg.Path)
	if err != nil {
		return err
	}
	l.next = 1
	if len(nums) > 0 {
		l.next = nums[len(nums)-1] + 1
	}
	f, err := l.cfg.openFile(l.cfg.Path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	size, seq, prev, err := head(f, l.cfg.Path)
	if err == nil && size == 0 && len(nums) > 0 {
		// A rotation that renamed the full file but failed before its first
		// record, or a new file: the chain continues from the newest rotated one.
		seq, prev, err = headOf(rotatedName(l.cfg.Path, nums[len(nums)-1]))
	}
	if err == nil && l.cfg.Sync {
		err = syncDir(filepath.Dir(l.cfg.Path))
	}
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size, l.seq, l.prev = f, size, seq, prev
	return nil
}

// head returns the size of f's complete lines, cutting a torn last line off,
// and the seq and hash of its last record (0 and "" when it has none).
func head(f file, name string) (size int64, seq uint64, prev string, err error) {
	st, err := f.Stat()
	if err != nil {
		return 0, 0, "", err
	}
	line, end, err := lastLine(f, st.Size())
	if err != nil {
		return 0, 0, "", err
	}
	if end < st.Size() {
		slog.Warn("audit: cutting off a torn last line", "file", name, "offset", end, "bytes", st.Size()-end)
		if err := f.Truncate(end); err != nil {
			return 0, 0, "", err
		}
	}
	if line == nil {
		return end, 0, "", nil
	}
	e, reason := parseLine(line)
	if reason != "" {
		return 0, 0, "", fmt.Errorf("%w: %s: last record: %s", ErrDamaged, name, reason)
	}
	return end, e.Seq, e.Hash, nil
}

// headOf returns the seq and hash of the last record in the named file.
func headOf(name string) (uint64, string, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, "", err
	}
	line, _, err := lastLine(f, st.Size())
	if err != nil || line == nil {
		return 0, "", err
	}
	e, reason := parseLine(line)
	if reason != "" {
		return 0, "", fmt.Errorf("%w: %s: last record: %s", ErrDamaged, name, reason)
	}
	return e.Seq, e.Hash, nil
}

// lastLine returns the last newline-terminated line of r (without its
// newline; nil if there is none) and end, the offset just after it.
func lastLine(r io.ReaderAt, size int64) (line []byte, end int64, err error) {
	const chunk = 64 << 10
	var tail []byte // the bytes [off, size)
	off := size
	end = -1
	for {
		if end < 0 {
			if i := bytes.LastIndexByte(tail, '\n'); i >= 0 {
				end = off + int64(i) + 1
			}
		}
		if end >= 0 {
			body := tail[:end-off-1]
			if j := bytes.LastIndexByte(body, '\n'); j >= 0 {
				return body[j+1:], end, nil
			}
			if off == 0 {
				return body, end, nil
			}
		} else if off == 0 {
			return nil, 0, nil
		}
		n := min(int64(chunk), off)
		grown := make([]byte, n+int64(len(tail)))
		if _, err := r.ReadAt(grown[:n], off-n); err != nil {
			return nil, 0, err
		}
		copy(grown[n:], tail)
		tail, off = grown, off-n
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// HashValue returns "hmac-sha256:<hex>", the HMAC-SHA256 of v under the
// log's key: what a Record holds in place of a parameter that could carry a
// secret. The same value always gives the same hash, so an operator who
// holds the key can search the log for a known value.
func (l *Log) HashValue(v string) string {
	m := hmac.New(sha256.New, l.cfg.Key)
	m.Write([]byte(v))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// Healthy reports, without touching the file, whether the log can be
// expected to take a record: nil, or an error wrapping ErrBroken (the last
// write failed; the error says why) or ErrClosed. It is cheap enough to ask
// before every request, so that a request is refused before it acts rather
// than after. A broken log heals only through Write, which reopens the file
// first: the record of the refused request is the probe.
func (l *Log) Healthy() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closing:
		return ErrClosed
	case l.err != nil:
		return fmt.Errorf("%w: %w", ErrBroken, l.err)
	case l.suspect != nil:
		// Reopened, but no record has been written since: a probe is in
		// flight, and a full disk still looks like a healthy file.
		return fmt.Errorf("%w: %w (reopened; not written to since)", ErrBroken, l.suspect)
	}
	return nil
}

// Write appends r to the log and returns once it is written (and, with
// Config.Sync, fsynced). Any error, wrapping ErrNotWritten, means the record
// is not in the log and the request must fail. After a failed write the log
// is broken: the failed bytes are cut off again, records queued behind the
// failed one fail too, and every Write fails until one can reopen the file;
// the chain then continues from the last record this Log wrote.
func (l *Log) Write(r Record) error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrNotWritten, ErrClosed)
	}
	if l.err != nil {
		// The flusher never touches the file while the log is broken, so it
		// is ours to reopen. Batches chained on the old state must fail.
		if err := l.recover(); err != nil {
			l.mu.Unlock()
			return fmt.Errorf("%w: %w", ErrNotWritten, err)
		}
	}
	hash, line, err := seal(newEntry(r, l.cfg.Node, l.seq+1, l.prev))
	if err != nil {
		l.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrNotWritten, err)
	}
	l.seq, l.prev = l.seq+1, hash
	if l.pending == nil {
		l.pending = &batch{first: l.seq, done: make(chan struct{})}
		l.cond.Signal()
	}
	b := l.pending
	i := len(b.lines)
	b.lines = append(b.lines, line)
	b.hashes = append(b.hashes, hash)
	l.mu.Unlock()

	<-b.done
	if i < b.committed {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrNotWritten, b.err)
}

// recover reopens a broken log. l.mu is held. The chain continues from the
// last record this Log knows it wrote, not from what the file now ends with:
// if the file was removed, replaced or rolled back meanwhile, the next
// record's seq and prev show the discontinuity to Verify.
func (l *Log) recover() error {
	if b := l.pending; b != nil {
		b.err = l.err
		close(b.done)
		l.pending = nil
	}
	if err := l.reopen(); err != nil {
		return err
	}
	if l.seq != l.durable.Seq || l.prev != l.durable.Hash {
		slog.Warn("audit: the reopened log does not end with the last record written; continuing the chain from that record",
			"file", l.cfg.Path, "file_seq", l.seq, "written_seq", l.durable.Seq)
	}
	l.seq, l.prev = l.durable.Seq, l.durable.Hash
	l.suspect, l.err = l.err, nil
	return nil
}

// flusher writes each pending batch until Close.
func (l *Log) flusher() {
	defer close(l.stopped)
	for {
		l.mu.Lock()
		for l.pending == nil && !l.closing {
			l.cond.Wait()
		}
		b, broken := l.pending, l.err
		l.pending = nil
		l.mu.Unlock()
		if b == nil {
			return
		}
		if broken != nil {
			b.err = broken
		} else {
			b.err = l.commit(b)
			l.mu.Lock()
			if c := b.committed; c > 0 {
				l.durable = Anchor{Seq: b.first + uint64(c) - 1, Hash: b.hashes[c-1]}
			}
			if b.err != nil {
				l.err = b.err
			} else {
				l.suspect = nil
			}
			l.mu.Unlock()
		}
		close(b.done)
	}
}

// commit writes b's lines, rotating first whenever the next line would take
// the active file past MaxBytes, and counts in b.committed the lines that are
// durably written. On error the file is cut back to its last complete record.
func (l *Log) commit(b *batch) error {
	if err := l.checkPath(); err != nil {
		return err
	}
	if err := l.checkSpace(b); err != nil {
		return err
	}
	buf := l.buf[:0]
	for i, line := range b.lines {
		if l.size+int64(len(buf)+len(line)) > l.cfg.MaxBytes && l.size+int64(len(buf)) > 0 {
			if err := l.append(buf); err != nil {
				return err
			}
			b.committed, buf = i, buf[:0]
			if err := l.rotate(); err != nil {
				return err
			}
		}
		buf = append(buf, line...)
	}
	if err := l.append(buf); err != nil {
		return err
	}
	b.committed = len(b.lines)
	if cap(buf) <= 1<<20 {
		l.buf = buf // reuse, unless one huge batch would pin its memory
	}
	return nil
}

// checkPath fails when the active file is no longer at Config.Path: it was
// removed, renamed or replaced, and records written to it would be lost to
// anyone reading the log.
func (l *Log) checkPath() error {
	at, err := os.Stat(l.cfg.Path)
	if err != nil {
		return err
	}
	open, err := l.f.Stat()
	if err != nil {
		return err
	}
	if !os.SameFile(at, open) {
		return fmt.Errorf("audit: %s was replaced or removed while open", l.cfg.Path)
	}
	return nil
}

// checkSpace refuses b when writing it would leave the log's volume below
// MinFreeBytes, so the log fails closed, with a clear reason, before the
// disk is full (where the node's state and Raft log may live too).
func (l *Log) checkSpace(b *batch) error {
	if l.cfg.MinFreeBytes < 0 {
		return nil
	}
	var need uint64
	for _, line := range b.lines {
		need += uint64(len(line))
	}
	keep := l.cfg.MinFreeBytes
	if keep == 0 {
		keep = DefaultMinFreeBytes
	}
	if err := diskspace.Check(l.cfg.measure, filepath.Dir(l.cfg.Path), keep, need); err != nil {
		return fmt.Errorf("%w (audit.min_free_bytes): %w; ship and acknowledge rotated files (coffer audit ack) so retention can delete them, or free space", ErrLowSpace, err)
	}
	return nil
}

// append writes p to the active file and syncs it if configured.
func (l *Log) append(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	n, err := l.f.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err == nil && l.cfg.Sync {
		err = l.f.Sync()
	}
	if err != nil {
		// Cut the failed bytes off so no half line breaks the chain for the
		// records after it. If that fails too, reopen cuts a torn line.
		if terr := l.f.Truncate(l.size); terr != nil {
			err = fmt.Errorf("%w (and cutting it off: %v)", err, terr)
		}
		return err
	}
	l.size += int64(len(p))
	return nil
}

// rotate renames the active file to the next rotated name and starts an
// empty one, whose first record will chain from the renamed file's last.
func (l *Log) rotate() error {
	if err := l.f.Close(); err != nil {
		return err
	}
	l.f = nil
	name := rotatedName(l.cfg.Path, l.next)
	if _, err := os.Lstat(name); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("audit: rotating to %s: file exists or cannot be checked (%v)", name, err)
	}
	if err := os.Rename(l.cfg.Path, name); err != nil {
		return err
	}
	l.next++
	if l.rotatedCh != nil {
		select {
		case l.rotatedCh <- struct{}{}:
		default: // a pass is already due
		}
	}
	f, err := l.cfg.openFile(l.cfg.Path, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	l.f, l.size = f, 0
	if l.cfg.Sync {
		return syncDir(filepath.Dir(l.cfg.Path))
	}
	return nil
}

// Close writes what is queued, then closes the file. Write fails after it.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closing = true
	l.cond.Signal()
	l.mu.Unlock()
	<-l.stopped
	if l.retained != nil {
		close(l.stopRetain)
		<-l.retained
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return l.err
	}
	err := l.f.Sync()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
