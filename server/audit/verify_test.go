package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sixRecords returns the lines of a fresh six-record log.
func sixRecords(t *testing.T) [][]byte {
	t.Helper()
	cfg := testConfig(t)
	l := openLog(t, cfg)
	writeN(t, l, 0, 6)
	l.Close()
	return readLines(t, cfg.Path)
}

// reseal re-hashes a changed line as a forger who knows the format would.
func reseal(t *testing.T, line []byte, change func(e *entry)) []byte {
	t.Helper()
	var e entry
	if err := json.Unmarshal(line, &e); err != nil {
		t.Fatal(err)
	}
	change(&e)
	_, out, err := seal(e)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeFile(t *testing.T, name string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(name, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func wantBroken(t *testing.T, err error, file string, line int, reason string) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, ErrChainBroken) {
		t.Fatalf("Verify = %v, want a *VerifyError", err)
	}
	if ve.File != file || ve.Line != line || !strings.Contains(ve.Reason, reason) {
		t.Errorf("Verify = %v, want %s:%d: ...%s...", err, file, line, reason)
	}
}

func TestVerifyFindsEveryKindOfTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, lines [][]byte) [][]byte
		line   int
		reason string
	}{
		{"edit a field", func(t *testing.T, l [][]byte) [][]byte {
			l[2] = bytes.Replace(l[2], []byte(`"allow"`), []byte(`"deny"`), 1)
			return l
		}, 3, "hash mismatch"},
		{"edit a field and re-hash it", func(t *testing.T, l [][]byte) [][]byte {
			l[2] = reseal(t, l[2], func(e *entry) { e.Principal = "mallory" })
			return l
		}, 4, "prev does not match"},
		{"edit whitespace", func(t *testing.T, l [][]byte) [][]byte {
			l[1] = bytes.Replace(l[1], []byte(`,"node"`), []byte(`, "node"`), 1)
			return l
		}, 2, "canonical form"},
		{"add a field", func(t *testing.T, l [][]byte) [][]byte {
			l[1] = bytes.Replace(l[1], []byte(`{"time"`), []byte(`{"note":"x","time"`), 1)
			return l
		}, 2, "not a record"},
		{"delete a line", func(t *testing.T, l [][]byte) [][]byte {
			return slices.Delete(l, 2, 3)
		}, 3, "seq 4 where 3 was expected: 1 records"},
		{"delete the first line", func(t *testing.T, l [][]byte) [][]byte {
			return l[1:]
		}, 1, "seq 2 where 1 was expected"},
		{"swap two lines", func(t *testing.T, l [][]byte) [][]byte {
			l[3], l[4] = l[4], l[3]
			return l
		}, 4, "seq 5 where 4 was expected"},
		{"insert a copied line", func(t *testing.T, l [][]byte) [][]byte {
			return slices.Insert(l, 4, l[1])
		}, 5, "seq 2 where 5 was expected"},
		{"insert a forged line", func(t *testing.T, l [][]byte) [][]byte {
			// A forger who chains a record from line 2 gets past it, but the
			// original record 3 no longer fits after it.
			forged := reseal(t, l[2], func(e *entry) { e.RequestID = "forged" })
			return slices.Insert(l, 2, forged)
		}, 4, "seq 3 where 4 was expected"},
		{"insert a blank line", func(t *testing.T, l [][]byte) [][]byte {
			return slices.Insert(l, 3, []byte("\n"))
		}, 4, "empty line"},
		{"truncate mid-line", func(t *testing.T, l [][]byte) [][]byte {
			l[5] = l[5][:len(l[5])/2]
			return l
		}, 6, "torn record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := tc.tamper(t, sixRecords(t))
			name := filepath.Join(t.TempDir(), "audit.log")
			writeFile(t, name, lines)
			_, err := Verify([]string{name})
			wantBroken(t, err, name, tc.line, tc.reason)
		})
	}
}

func TestVerifyAcrossRotatedFiles(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxBytes = 1500
	cfg.Sync = false
	l := openLog(t, cfg)
	writeN(t, l, 0, 20)
	l.Close()
	files, _ := Files(cfg.Path)
	if len(files) < 4 {
		t.Fatalf("want at least 4 files, got %v", files)
	}
	full := verifyAll(t, cfg.Path)

	t.Run("missing middle file", func(t *testing.T) {
		_, err := Verify(slices.Delete(slices.Clone(files), 1, 2))
		wantBroken(t, err, files[2], 1, "records before it are missing")
	})
	t.Run("missing last rotated file", func(t *testing.T) {
		n := len(files)
		_, err := Verify(slices.Delete(slices.Clone(files), n-2, n-1))
		wantBroken(t, err, files[n-1], 1, "records before it are missing")
	})
	t.Run("files out of order", func(t *testing.T) {
		swapped := slices.Clone(files)
		swapped[0], swapped[1] = swapped[1], swapped[0]
		_, err := Verify(swapped)
		wantBroken(t, err, swapped[0], 1, "where 1 was expected")
	})
	t.Run("missing oldest file", func(t *testing.T) {
		_, err := Verify(files[1:])
		wantBroken(t, err, files[1], 1, "where 1 was expected")
		// Removed on purpose (retention): start from the removed file's head.
		first, err := Verify(files[:1])
		if err != nil {
			t.Fatal(err)
		}
		rep, err := VerifyWith(files[1:], VerifyOptions{Start: first.Head})
		if err != nil || rep.Records != full.Records-first.Records {
			t.Errorf("VerifyWith(Start) = %+v, %v", rep, err)
		}
	})
	t.Run("expected head", func(t *testing.T) {
		mid := Anchor{Seq: 10}
		for _, f := range full.Files {
			if f.FirstSeq <= 10 && 10 <= f.LastSeq {
				for _, line := range readLines(t, f.File) {
					var e entry
					json.Unmarshal(line, &e)
					if e.Seq == 10 {
						mid.Hash = e.Hash
					}
				}
			}
		}
		if _, err := VerifyWith(files, VerifyOptions{Expect: []Anchor{mid, full.Head}}); err != nil {
			t.Errorf("VerifyWith(Expect) on the real log: %v", err)
		}
		// A rewritten log chains, but not to the shipped hash.
		_, err := VerifyWith(files, VerifyOptions{Expect: []Anchor{{Seq: 10, Hash: strings.Repeat("0", 64)}}})
		if !errors.Is(err, ErrChainBroken) || !strings.Contains(err.Error(), "rewritten") {
			t.Errorf("VerifyWith(wrong hash) = %v", err)
		}
		// Records cut from the end: the shipped head is no longer there.
		_, err = VerifyWith(files[:len(files)-1], VerifyOptions{Expect: []Anchor{full.Head}})
		if !errors.Is(err, ErrChainBroken) || !strings.Contains(err.Error(), "removed") {
			t.Errorf("VerifyWith(truncated) = %v", err)
		}
	})
}

func TestVerifyEmptyAndMissing(t *testing.T) {
	if _, err := Verify(nil); err == nil {
		t.Error("Verify(nil) succeeded")
	}
	dir := t.TempDir()
	if _, err := Verify([]string{filepath.Join(dir, "nope")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Verify(missing) = %v", err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	if rep, err := Verify([]string{empty}); err != nil || rep.Records != 0 {
		t.Errorf("Verify(empty) = %+v, %v", rep, err)
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "a[1].log") // glob characters in the name
	for _, n := range []string{".000010", ".000002", ".0000001", ".x", ".000003.tmp", ""} {
		os.WriteFile(base+n, nil, 0o600)
	}
	os.WriteFile(filepath.Join(dir, "other.log.000001"), nil, 0o600)
	got, err := Files(base)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{base + ".000002", base + ".000010", base}
	if !slices.Equal(got, want) {
		t.Errorf("Files = %v, want %v", got, want)
	}
	if got, err := Files(filepath.Join(dir, "none")); err != nil || len(got) != 0 {
		t.Errorf("Files(none) = %v, %v", got, err)
	}
}
