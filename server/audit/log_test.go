package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func testConfig(t *testing.T) Config {
	t.Helper()
	return Config{Path: filepath.Join(t.TempDir(), "audit.log"), Key: testKey, Node: "node-1", Sync: true}
}

func openLog(t *testing.T, cfg Config) *Log {
	t.Helper()
	l, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func record(i int) Record {
	return Record{
		Time:       time.Date(2026, 11, 22, 18, 0, 0, i, time.FixedZone("CET", 3600)),
		RequestID:  fmt.Sprintf("req-%d", i),
		Principal:  "alice",
		SourceAddr: "10.0.0.7:51234",
		Protocol:   "aws",
		Operation:  "GetSecretValue",
		SecretARN:  "arn:aws:secretsmanager:eu-west-1:000000000000:secret:db-AbCdEf",
		VersionID:  "v1",
		Decision:   "allow",
		Statement:  "AllowReads",
		Outcome:    "success",
	}
}

func writeN(t *testing.T, l *Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := l.Write(record(i)); err != nil {
			t.Fatalf("Write %d: %v", i, err)
		}
	}
}

func readLines(t *testing.T, name string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

func verifyAll(t *testing.T, path string) Report {
	t.Helper()
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(files)
	if err != nil {
		t.Fatalf("Verify(%v): %v", files, err)
	}
	return rep
}

func TestWriteProducesChainedJSONLines(t *testing.T) {
	cfg := testConfig(t)
	l := openLog(t, cfg)
	r := record(0)
	r.Params = map[string]string{"SecretString": l.HashValue("hunter2"), "VersionStage": "AWSCURRENT"}
	if err := l.Write(r); err != nil {
		t.Fatal(err)
	}
	writeN(t, l, 1, 4)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	lines := readLines(t, cfg.Path)
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5", len(lines))
	}
	var first map[string]any
	if err := json.Unmarshal(lines[0], &first); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"time": "2026-11-22T17:00:00Z", "node": "node-1", "request_id": "req-0", "principal": "alice",
		"source_addr": "10.0.0.7:51234", "protocol": "aws", "operation": "GetSecretValue",
		"secret_arn": r.SecretARN, "version_id": "v1", "decision": "allow", "statement": "AllowReads",
		"outcome": "success", "error_type": "", "seq": 1.0, "prev": "",
	}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("%s = %#v, want %#v", k, first[k], v)
		}
	}
	if p := first["params"].(map[string]any); p["VersionStage"] != "AWSCURRENT" || !strings.HasPrefix(p["SecretString"].(string), "hmac-sha256:") {
		t.Errorf("params = %v", p)
	}
	if bytes.Contains(lines[0], []byte("hunter2")) {
		t.Error("the hashed value appears in the log")
	}
	var prev string
	for i, line := range lines {
		var e entry
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatal(err)
		}
		if e.Seq != uint64(i+1) || e.Prev != prev || len(e.Hash) != 64 {
			t.Errorf("line %d: seq %d prev %q hash %q; want seq %d prev %q", i+1, e.Seq, e.Prev, e.Hash, i+1, prev)
		}
		prev = e.Hash
	}
	rep := verifyAll(t, cfg.Path)
	if rep.Records != 5 || rep.Head != (Anchor{Seq: 5, Hash: prev}) {
		t.Errorf("report %+v, want 5 records and head seq 5 %s", rep, prev)
	}
}

func TestFieldContentCannotBreakTheLine(t *testing.T) {
	cfg := testConfig(t)
	l := openLog(t, cfg)
	nasty := "a\"b\\c\nd\re\x00f\u2028g</script>\x1b[31m"
	r := record(0)
	r.Principal, r.Statement, r.ErrorType = nasty, "bad utf8 \xff\xfe", nasty
	r.Params = map[string]string{nasty: nasty}
	if err := l.Write(r); err != nil {
		t.Fatal(err)
	}
	writeN(t, l, 1, 1)
	l.Close()
	lines := readLines(t, cfg.Path)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), bytes.Join(lines, nil))
	}
	var e entry
	if err := json.Unmarshal(lines[0], &e); err != nil {
		t.Fatal(err)
	}
	if e.Principal != nasty || e.Params[nasty] != nasty || e.Statement != "bad utf8 \ufffd" {
		t.Errorf("decoded %q %q %q", e.Principal, e.Params[nasty], e.Statement)
	}
	if rep := verifyAll(t, cfg.Path); rep.Records != 2 {
		t.Errorf("verified %d records, want 2", rep.Records)
	}
}

func TestHashValue(t *testing.T) {
	cfg := testConfig(t)
	l := openLog(t, cfg)
	h := l.HashValue("canary-Zx81")
	if !strings.HasPrefix(h, "hmac-sha256:") || len(h) != len("hmac-sha256:")+64 {
		t.Fatalf("HashValue = %q", h)
	}
	if l.HashValue("canary-Zx81") != h {
		t.Error("HashValue is not deterministic")
	}
	if l.HashValue("canary-Zx82") == h {
		t.Error("different values hash alike")
	}
	cfg2 := testConfig(t)
	cfg2.Key = []byte("another key, 32 bytes long......")
	if openLog(t, cfg2).HashValue("canary-Zx81") == h {
		t.Error("the hash does not depend on the key")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Key: testKey},
		{Path: "x", Key: testKey, MaxBytes: -1},
		{Path: "x", Key: testKey[:MinKeyBytes-1]},
	} {
		if _, err := Open(c); !errors.Is(err, ErrConfig) {
			t.Errorf("Open(%+v) = %v, want ErrConfig", c, err)
		}
	}
}

func TestRotationContinuesTheChain(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxBytes = 1500 // a few records per file
	l := openLog(t, cfg)
	writeN(t, l, 0, 30)
	l.Close()
	files, err := Files(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 || files[len(files)-1] != cfg.Path || files[0] != cfg.Path+".000001" {
		t.Fatalf("Files = %v", files)
	}
	var prev string
	seq := uint64(0)
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > cfg.MaxBytes {
			t.Errorf("%s has %d bytes, more than MaxBytes %d", f, st.Size(), cfg.MaxBytes)
		}
		for _, line := range readLines(t, f) {
			var e entry
			json.Unmarshal(line, &e)
			seq++
			if e.Seq != seq || e.Prev != prev {
				t.Fatalf("%s: seq %d prev %.8s, want seq %d prev %.8s", f, e.Seq, e.Prev, seq, prev)
			}
			prev = e.Hash
		}
	}
	rep := verifyAll(t, cfg.Path)
	if rep.Records != 30 || len(rep.Files) != len(files) || rep.Head.Seq != 30 {
		t.Errorf("report %+v", rep)
	}

	// Reopening continues the numbering and the chain.
	l = openLog(t, cfg)
	writeN(t, l, 30, 10)
	l.Close()
	files2, _ := Files(cfg.Path)
	if len(files2) <= len(files) {
		t.Errorf("no rotation after reopening: %v", files2)
	}
	if rep := verifyAll(t, cfg.Path); rep.Records != 40 {
		t.Errorf("verified %d records, want 40", rep.Records)
	}
}

func TestReopenContinuesTheChain(t *testing.T) {
	cfg := testConfig(t)
	l := openLog(t, cfg)
	writeN(t, l, 0, 3)
	l.Close()
	l = openLog(t, cfg)
	writeN(t, l, 3, 3)
	l.Close()
	if rep := verifyAll(t, cfg.Path); rep.Records != 6 || rep.Head.Seq != 6 {
		t.Errorf("report %+v", rep)
	}

	// The active file is gone after a rotation that never started the new
	// one: the chain continues from the newest rotated file.
	if err := os.Rename(cfg.Path, cfg.Path+".000001"); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, cfg)
	writeN(t, l, 6, 2)
	l.Close()
	if rep := verifyAll(t, cfg.Path); rep.Records != 8 || len(rep.Files) != 2 {
		t.Errorf("report %+v", rep)
	}
}

func TestOpenCutsATornLastLine(t *testing.T) {
	cfg := testConfig(t)
	l := openLog(t, cfg)
	writeN(t, l, 0, 3)
	l.Close()
	lines := readLines(t, cfg.Path)
	f, _ := os.OpenFile(cfg.Path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(lines[1][:40]) // a crash in the middle of a write
	f.Close()

	l = openLog(t, cfg)
	writeN(t, l, 3, 1)
	l.Close()
	if rep := verifyAll(t, cfg.Path); rep.Records != 4 {
		t.Errorf("verified %d, want 4", rep.Records)
	}
}

func TestOpenRefusesADamagedLastRecord(t *testing.T) {
	cfg := testConfig(t)
	l := openLog(t, cfg)
	writeN(t, l, 0, 3)
	l.Close()
	b, _ := os.ReadFile(cfg.Path)
	os.WriteFile(cfg.Path, bytes.Replace(b, []byte(`"req-2"`), []byte(`"req-X"`), 1), 0o600)
	if _, err := Open(cfg); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open = %v, want ErrDamaged", err)
	}
}

func TestWriteAfterClose(t *testing.T) {
	l := openLog(t, testConfig(t))
	l.Close()
	if err := l.Write(record(0)); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrNotWritten) {
		t.Errorf("Write after Close = %v", err)
	}
}

func TestConcurrentWritesFormOneChain(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxBytes = 20 << 10
	var fx faults
	cfg.openFile = fx.open
	l := openLog(t, cfg)
	const writers, each = 8, 100
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r := record(i)
				r.RequestID = fmt.Sprintf("w%d-%d", w, i)
				if err := l.Write(r); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	l.Close()
	rep := verifyAll(t, cfg.Path)
	if rep.Records != writers*each {
		t.Fatalf("verified %d records, want %d", rep.Records, writers*each)
	}
	seen := map[string]bool{}
	files, _ := Files(cfg.Path)
	for _, f := range files {
		for _, line := range readLines(t, f) {
			var e entry
			json.Unmarshal(line, &e)
			if seen[e.RequestID] {
				t.Errorf("%s twice", e.RequestID)
			}
			seen[e.RequestID] = true
		}
	}
	if len(seen) != writers*each {
		t.Errorf("%d distinct request ids, want %d", len(seen), writers*each)
	}
	t.Logf("%d records, %d fsyncs", rep.Records, fx.syncs.Load())
}

func TestSecretsAreRecordedAndVerify(t *testing.T) {
	cfg := testConfig(t)
	l := openLog(t, cfg)
	r := record(0)
	r.Operation = "BatchGetSecretValue"
	r.Secrets = []SecretRef{
		{ARN: "arn:aws:secretsmanager:eu-west-1:000000000000:secret:a-AbCdEf", VersionID: "v1"},
		{ARN: "app/missing", ErrorType: "ResourceNotFoundException"},
	}
	if err := l.Write(r); err != nil {
		t.Fatal(err)
	}
	writeN(t, l, 1, 1) // a record without secrets: the member is left out
	l.Close()
	lines := readLines(t, cfg.Path)
	want := `"secrets":[{"arn":"arn:aws:secretsmanager:eu-west-1:000000000000:secret:a-AbCdEf","version_id":"v1"},{"arn":"app/missing","error_type":"ResourceNotFoundException"}]`
	if !bytes.Contains(lines[0], []byte(want)) {
		t.Errorf("line 1 lacks %s:\n%s", want, lines[0])
	}
	if bytes.Contains(lines[1], []byte(`"secrets"`)) {
		t.Errorf("a record without secrets has the member: %s", lines[1])
	}
	if rep := verifyAll(t, cfg.Path); rep.Records != 2 {
		t.Errorf("verified %d records, want 2", rep.Records)
	}
}
