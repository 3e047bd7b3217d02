package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzVerify feeds arbitrary bytes to the verifier: it must never panic, and
// whatever it accepts must be whole, newline-terminated records.
func FuzzVerify(f *testing.F) {
	dir := f.TempDir()
	cfg := Config{Path: filepath.Join(dir, "audit.log"), Key: testKey}
	l, err := Open(cfg)
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		r := record(i)
		r.Params = map[string]string{"SecretId": "db", "SecretString": l.HashValue("x")}
		if err := l.Write(r); err != nil {
			f.Fatal(err)
		}
	}
	l.Close()
	valid, err := os.ReadFile(cfg.Path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add(bytes.Replace(valid, []byte(`"seq":2`), []byte(`"seq":3`), 1))
	f.Add([]byte("{}\n"))
	f.Add([]byte("\n\n"))
	f.Add([]byte(`{"seq":1,"prev":"","hash":"` + string(bytes.Repeat([]byte("a"), 64)) + `"}` + "\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		v := verifier{expect: map[uint64]string{}}
		err := v.file("fuzz", bytes.NewReader(data))
		if err != nil {
			return
		}
		if n := bytes.Count(data, []byte("\n")); v.report.Records != n || (n > 0 && data[len(data)-1] != '\n') {
			t.Fatalf("accepted %d records from %d lines of %q", v.report.Records, n, data)
		}
	})
}
