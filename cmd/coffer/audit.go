package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/audit"
)

// auditCommands is "coffer audit": verify reads a node's audit log files
// directly, with no server; hash asks the server for a value's keyed hash.
func auditCommands() *command {
	return group("audit", "Check audit log files; find a value's hash in them",
		"audit verify and audit ack read a node's audit log files directly and make no RPC;\n"+
			"audit hash asks the region for the keyed hash a record holds in place of a value.",
		&command{
			name: "ack", synopsis: "FILE...", run: runAuditAck,
			summary: "Mark rotated audit log files as shipped, so retention may delete them",
			detail: "Run it on the node, after the files were copied somewhere the node cannot rewrite.\n" +
				"For each rotated file (audit.log.NNNNNN; never the active audit.log) it writes\n" +
				"FILE.shipped, holding the head of the file as SEQ:HASH, and prints that head: keep it,\n" +
				"it is the --start of 'audit verify' once the file is deleted. Retention (audit.max_files,\n" +
				"audit.max_age) deletes only shipped files, oldest first, unless audit.delete_unshipped\n" +
				"is set. Any shipper may create the marker itself instead.",
		},
		&command{
			name: "hash", synopsis: "[--value-file FILE]", run: runAuditHash,
			summary: "Print the audit log's hash of a value, to search the log for it",
			detail: "Audit records hold secret values, tokens and keys only as a keyed hash (HMAC-SHA256\n" +
				"under a key every node of the region derives from its keyring). This prints the hash\n" +
				"of one value, so that the records of requests that carried it can be found with grep.\n" +
				"The value is read from stdin, one trailing newline removed (what echo or a terminal\n" +
				"adds), or byte for byte from --value-file FILE (- for stdin), as 'secrets put\n" +
				"--value-file' stores it. It is never taken from the command line, where other local\n" +
				"users and shell history would see it. Needs coffer:AuditHash.",
		},
		&command{
			name: "verify", synopsis: "FILE... [--start SEQ:HASH] [--expect SEQ:HASH]...", run: runAuditVerify,
			summary: "Check that audit log files hold one unbroken hash chain",
			detail: "Checks every record of FILE..., oldest first, and exits 1 at the first record that was\n" +
				"changed, removed, inserted or moved, naming the file and line. A FILE that is a log's\n" +
				"base path (audit.log) stands for its rotated set (audit.log.000001 ... audit.log).\n" +
				"Prints the number of records verified and the head: keep the head hash elsewhere and\n" +
				"give it to --expect later, so that a log rewritten as a whole is found too.",
		},
	)
}

// anchorFlags collects repeated SEQ:HASH flags.
type anchorFlags []audit.Anchor

var hashPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

func parseAnchor(s string) (audit.Anchor, error) {
	seq, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || !hashPattern.MatchString(hash) {
		return audit.Anchor{}, fmt.Errorf("%q is not SEQ:HASH (a record number and 64 hex digits)", s)
	}
	return audit.Anchor{Seq: n, Hash: hash}, nil
}

func (a *anchorFlags) String() string { return "" }

func (a *anchorFlags) Set(s string) error {
	anchor, err := parseAnchor(s)
	if err != nil {
		return err
	}
	*a = append(*a, anchor)
	return nil
}

// auditVerifyResult is the -o json output of "audit verify".
type auditVerifyResult struct {
	Valid bool `json:"valid"`
	audit.Report
	Error *audit.VerifyError `json:"error,omitempty"`
}

func runAuditVerify(l *leaf, args []string) error {
	var expect anchorFlags
	start := l.fs.String("start", "", "the record before the first one in the files, as `SEQ:HASH`, when older files were removed on purpose")
	l.fs.Var(&expect, "expect", "a record kept elsewhere, as `SEQ:HASH`, that must be in the chain (repeatable)")
	pos, err := l.parse(args, "FILE...")
	if err != nil {
		return err
	}
	var opts audit.VerifyOptions
	opts.Expect = expect
	if l.given["start"] {
		if opts.Start, err = parseAnchor(*start); err != nil {
			return l.usageErrorf("--start: %v", err)
		}
	}
	files, err := expandAuditFiles(pos)
	if err != nil {
		return err
	}
	rep, verr := audit.VerifyWith(files, opts)
	var broken *audit.VerifyError
	if verr != nil && !errors.As(verr, &broken) {
		return verr // a file that cannot be read: nothing was decided
	}
	if l.inv.opts.output == outputJSON {
		b, err := json.MarshalIndent(auditVerifyResult{Valid: verr == nil, Report: rep, Error: broken}, "", "  ")
		if err != nil {
			return err
		}
		if _, err := l.inv.stdout.Write(append(b, '\n')); err != nil {
			return err
		}
	} else if verr == nil {
		t := &table{tw: tabwriter.NewWriter(l.inv.stdout, 0, 8, 2, ' ', 0)}
		t.field("Records", strconv.Itoa(rep.Records))
		lines := make([]string, len(rep.Files))
		for i, f := range rep.Files {
			lines[i] = fmt.Sprintf("%s: %d records", f.File, f.Records)
			if f.Records > 0 {
				lines[i] += fmt.Sprintf(", seq %d-%d", f.FirstSeq, f.LastSeq)
			}
		}
		t.fieldLines("Files", lines)
		if rep.Records > 0 {
			t.field("Head", fmt.Sprintf("%d:%s", rep.Head.Seq, rep.Head.Hash))
		}
		if err := t.tw.Flush(); err != nil {
			return err
		}
	}
	if verr != nil {
		return &exitError{code: exitFailure, msg: fmt.Sprintf("audit chain broken after %d good records: %v", rep.Records, verr)}
	}
	return nil
}

// auditAck is one line of "audit ack" output.
type auditAck struct {
	File string       `json:"file"`
	Head audit.Anchor `json:"head"`
}

// runAuditAck marks rotated audit files as shipped.
func runAuditAck(l *leaf, args []string) error {
	pos, err := l.parse(args, "FILE...")
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return l.usageErrorf("audit ack needs the rotated files to mark as shipped")
	}
	var acks []auditAck
	for _, f := range pos {
		head, err := audit.Ack(f)
		if err != nil {
			return err
		}
		acks = append(acks, auditAck{File: f, Head: head})
	}
	if l.inv.opts.output == outputJSON {
		b, err := json.MarshalIndent(acks, "", "  ")
		if err != nil {
			return err
		}
		_, err = l.inv.stdout.Write(append(b, '\n'))
		return err
	}
	t := &table{tw: tabwriter.NewWriter(l.inv.stdout, 0, 8, 2, ' ', 0)}
	for _, a := range acks {
		t.field(a.File, fmt.Sprintf("shipped, head %d:%s", a.Head.Seq, a.Head.Hash))
	}
	return t.tw.Flush()
}

// expandAuditFiles replaces each argument that is a log's base path with its
// rotated set, and drops repeats and shipped markers, so "audit.log*" from a
// shell (which sorts audit.log first, and lists audit.log.000001.shipped)
// still verifies in chain order.
func expandAuditFiles(args []string) ([]string, error) {
	var files []string
	seen := map[string]bool{}
	for _, a := range args {
		if strings.HasSuffix(a, audit.ShippedSuffix) {
			continue
		}
		set, err := audit.Files(a)
		if err != nil {
			return nil, err
		}
		if len(set) == 0 || set[0] == a {
			set = []string{a} // not a base path with rotated files: as given
		}
		for _, f := range set {
			if !seen[f] {
				seen[f] = true
				files = append(files, f)
			}
		}
	}
	return files, nil
}

// runAuditHash prints the region's audit hash of a value read from stdin or
// a file.
func runAuditHash(l *leaf, args []string) error {
	valueFile := l.fs.String("value-file", "", "read the value from `FILE` (- for stdin), byte for byte")
	pos, err := l.parse(args, "[ARG...]")
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		// Not echoed: it is probably the value.
		return l.usageErrorf("audit hash takes no argument: give the value on stdin or with --value-file")
	}
	var value []byte
	if l.given["value-file"] {
		if value, err = readFileArg(l, *valueFile); err != nil {
			return fmt.Errorf("--value-file: %w", err)
		}
	} else if value, err = readValueLine(l); err != nil {
		return fmt.Errorf("read the value from stdin: %w", err)
	}
	defer clear(value)
	resp, err := callAdmin(l, adminClient.AuditHash, &cofferv1.AuditHashRequest{Value: value})
	if err != nil {
		return err
	}
	return l.printLine(resp, resp.GetHash())
}

// readValueLine reads the value from stdin without one trailing newline:
// all of it from a pipe, or one line from a terminal, after a prompt.
func readValueLine(l *leaf) ([]byte, error) {
	var b []byte
	var err error
	if f, ok := l.inv.stdin.(*os.File); ok && isTerminalFile(f) {
		fmt.Fprint(l.inv.stderr, "value: ")
		b, err = bufio.NewReader(f).ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			err = nil
		}
	} else {
		b, err = io.ReadAll(l.inv.stdin)
	}
	if err != nil {
		return nil, err
	}
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b, nil
}

func isTerminalFile(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
