package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// ErrChainBroken is wrapped by every *VerifyError.
var ErrChainBroken = errors.New("audit: chain broken")

// VerifyError is the first place where a chain of files is not the log its
// writer wrote: File and 1-based Line name the record, Reason says why.
type VerifyError struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
}

func (e *VerifyError) Unwrap() error { return ErrChainBroken }

// Anchor names one record by its seq and hash: where a chain starts, or a
// head hash an operator shipped elsewhere to check the chain against later.
type Anchor struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// FileReport is what Verify found in one file.
type FileReport struct {
	File     string `json:"file"`
	Records  int    `json:"records"`
	FirstSeq uint64 `json:"firstSeq,omitempty"`
	LastSeq  uint64 `json:"lastSeq,omitempty"`
}

// Report is what Verify checked: the records that were verified (up to the
// first broken link, when there is one) and the head of the chain, the last
// verified record, whose hash an operator keeps elsewhere to detect a
// rewrite of the whole log.
type Report struct {
	Records int          `json:"records"`
	Files   []FileReport `json:"files"`
	Head    Anchor       `json:"head"`
}

// VerifyOptions widen what Verify accepts.
type VerifyOptions struct {
	// Start is the record just before the first one in the files: zero (seq
	// 0, hash "") for a log that begins at its first record, or the head of
	// files that were removed on purpose (retention).
	Start Anchor
	// Expect lists records whose hashes were kept elsewhere: each must be in
	// the chain with that hash, so a rewritten (re-hashed) log fails.
	Expect []Anchor
}

// Verify checks that files, oldest first (see Files), hold one unbroken chain
// from the log's first record. It returns a *VerifyError for the first record
// that was changed, removed, inserted or moved, a torn last line, or a
// missing file, and other errors for files it cannot read.
func Verify(files []string) (Report, error) {
	return VerifyWith(files, VerifyOptions{})
}

// VerifyWith is Verify with options.
func VerifyWith(files []string, opts VerifyOptions) (Report, error) {
	v := verifier{seq: opts.Start.Seq, hash: opts.Start.Hash, expect: map[uint64]string{}}
	for _, a := range opts.Expect {
		v.expect[a.Seq] = a.Hash
	}
	if len(files) == 0 {
		return v.report, errors.New("audit: no files to verify")
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return v.report, err
		}
		err = v.file(name, f)
		f.Close()
		if err != nil {
			return v.report, err
		}
	}
	for _, a := range opts.Expect {
		if a.Seq > v.seq || a.Seq <= opts.Start.Seq {
			last := files[len(files)-1]
			return v.report, &VerifyError{File: last, Line: v.lastLine,
				Reason: fmt.Sprintf("expected record seq %d is not among the verified seq %d..%d: records at the end were removed, or the wrong files were given", a.Seq, opts.Start.Seq+1, v.seq)}
		}
	}
	return v.report, nil
}

type verifier struct {
	seq      uint64 // of the last verified record
	hash     string // of the last verified record
	expect   map[uint64]string
	report   Report
	lastLine int
}

func (v *verifier) file(name string, r io.Reader) error {
	fr := FileReport{File: name}
	defer func() { v.report.Files = append(v.report.Files, fr) }()
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			if len(line) == 0 {
				return nil
			}
			return &VerifyError{File: name, Line: n, Reason: "torn record: the last line has no newline (the file was cut mid-record)"}
		}
		if err != nil {
			return err
		}
		broken := func(format string, a ...any) error {
			return &VerifyError{File: name, Line: n, Reason: fmt.Sprintf(format, a...)}
		}
		e, reason := parseLine(line[:len(line)-1])
		if reason != "" {
			return broken("%s", reason)
		}
		switch want := v.seq + 1; {
		case e.Seq > want:
			return broken("seq %d where %d was expected: %d records before it are missing (lines or a file removed)", e.Seq, want, e.Seq-want)
		case e.Seq < want:
			return broken("seq %d where %d was expected: the record was moved, copied or inserted", e.Seq, want)
		}
		if e.Prev != v.hash {
			return broken("prev does not match the hash of the record before it (seq %d): a record was changed and re-hashed, or replaced", v.seq)
		}
		if h, ok := v.expect[e.Seq]; ok && h != e.Hash {
			return broken("seq %d has hash %s, not the expected %s: the log was rewritten", e.Seq, e.Hash, h)
		}
		v.seq, v.hash, v.lastLine = e.Seq, e.Hash, n
		if fr.Records == 0 {
			fr.FirstSeq = e.Seq
		}
		fr.Records++
		fr.LastSeq = e.Seq
		v.report.Records++
		v.report.Head = Anchor{Seq: e.Seq, Hash: e.Hash}
	}
}

// parseLine decodes one line (without its newline) and checks it on its
// own: it is one entry in canonical form whose hash matches its content.
// It returns the entry, or why the line is not a valid record.
func parseLine(line []byte) (entry, string) {
	var e entry
	if len(line) == 0 {
		return e, "empty line"
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, "not a record: " + err.Error()
	}
	if dec.InputOffset() != int64(len(line)) {
		return e, "not a record: data after the JSON object"
	}
	if len(e.Hash) != sha256.Size*2 {
		return e, "not a record: no valid hash"
	}
	if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
		return e, "not a record: bad time"
	}
	claimed := e.Hash
	hash, canonical, err := seal(e)
	if err != nil {
		return e, "not a record: " + err.Error()
	}
	if hash != claimed {
		return e, fmt.Sprintf("hash mismatch: the record (seq %d) was changed after it was written", e.Seq)
	}
	if !bytes.Equal(canonical[:len(canonical)-1], line) {
		return e, fmt.Sprintf("record (seq %d) is not in canonical form: its bytes were edited", e.Seq)
	}
	return e, ""
}
