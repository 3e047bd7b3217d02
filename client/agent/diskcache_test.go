package agent

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	testKey  = []byte("0123456789abcdef0123456789abcdef-key-one")
	otherKey = []byte("0123456789abcdef0123456789abcdef-key-two")
)

const testValue = "s3cr3t-p4ssw0rd-of-the-database"

func testEntry(id string, fetched time.Time) diskEntry {
	v := testValue
	return diskEntry{ID: id, Stage: "AWSCURRENT", Fetched: fetched, Answer: getSecretValueOutput{
		ARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:" + id + "-AbCdEf", Name: id,
		VersionID: "11111111-1111-1111-1111-111111111111", SecretString: &v, VersionStages: []string{"AWSCURRENT"}, CreatedDate: 1.5,
	}}
}

func openCache(t *testing.T, dir string, key []byte) *DiskCache {
	t.Helper()
	d, err := OpenDiskCache(dir, key)
	if err != nil {
		t.Fatalf("OpenDiskCache: %v", err)
	}
	return d
}

// files returns every file of dir and its content.
func files(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

// TestDiskCacheAtRest: an entry reads back as stored, from a directory of
// mode 0700 holding 0600 files and no temporary file, in which neither the
// value (raw or base64) nor the secret's name appears.
func TestDiskCacheAtRest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	d := openCache(t, dir, testKey)
	fetched := time.Now().Add(-time.Hour).Round(0)
	if err := d.store(testEntry("prod/db", fetched)); err != nil {
		t.Fatal(err)
	}
	got, found, err := openCache(t, dir, testKey).load("prod/db", "", "AWSCURRENT")
	if err != nil || !found || *got.Answer.SecretString != testValue || got.Answer.Name != "prod/db" || !got.Fetched.Equal(fetched) {
		t.Fatalf("load: %+v found %v err %v", got, found, err)
	}
	if _, found, err := d.load("prod/db", "", ""); found || err != nil {
		t.Fatalf("another stage: found %v err %v, want nothing", found, err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v (%v), want 0700", st.Mode().Perm(), err)
	}
	fs := files(t, dir)
	if len(fs) != 2 {
		t.Fatalf("files %v, want the marker and one entry", fs)
	}
	for name, b := range fs {
		st, _ := os.Stat(filepath.Join(dir, name))
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, st.Mode().Perm())
		}
		for _, secret := range []string{testValue, base64.StdEncoding.EncodeToString([]byte(testValue)), "prod/db", "AbCdEf"} {
			if bytes.Contains(b, []byte(secret)) || strings.Contains(name, secret) {
				t.Errorf("%s holds %q in clear", name, secret)
			}
		}
	}
}

// TestDiskCacheRefuses: a directory written with another key is refused
// as a whole; an altered file, or one moved over another entry's name, is
// refused and not served.
func TestDiskCacheRefuses(t *testing.T) {
	dir := t.TempDir()
	d := openCache(t, dir, testKey)
	now := time.Now()
	for _, id := range []string{"a", "b"} {
		if err := d.store(testEntry(id, now)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := OpenDiskCache(dir, otherKey); !errors.Is(err, ErrCacheKeyMismatch) {
		t.Fatalf("another key: %v, want ErrCacheKeyMismatch", err)
	}
	if _, err := OpenDiskCache(t.TempDir(), []byte("short")); !errors.Is(err, ErrCacheKeyTooShort) {
		t.Fatalf("short key: %v, want ErrCacheKeyTooShort", err)
	}

	a, b := filepath.Join(dir, d.name("a", "", "AWSCURRENT")), filepath.Join(dir, d.name("b", "", "AWSCURRENT"))
	ab, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, ab, 0o600); err != nil { // a's file under b's name
		t.Fatal(err)
	}
	if _, found, err := d.load("b", "", "AWSCURRENT"); found || !errors.Is(err, ErrCacheEntryRefused) {
		t.Fatalf("a moved over b: found %v err %v, want ErrCacheEntryRefused", found, err)
	}
	ab[len(ab)-5] ^= 1
	if err := os.WriteFile(a, ab, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, found, err := d.load("a", "", "AWSCURRENT"); found || !errors.Is(err, ErrCacheEntryRefused) {
		t.Fatalf("altered: found %v err %v, want ErrCacheEntryRefused", found, err)
	}
	// A directory of another key's entries under this key's marker.
	other := t.TempDir()
	if err := openCache(t, other, otherKey).store(testEntry("c", now)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(other, cacheMarker)); err != nil {
		t.Fatal(err)
	}
	d2 := openCache(t, other, testKey)
	for name, content := range files(t, other) {
		if strings.HasSuffix(name, cacheEntrySuffix) {
			if err := os.WriteFile(filepath.Join(other, d2.name("c", "", "AWSCURRENT")), content, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, found, err := d2.load("c", "", "AWSCURRENT"); found || !errors.Is(err, ErrCacheEntryRefused) {
		t.Fatalf("sealed under another key: found %v err %v, want ErrCacheEntryRefused", found, err)
	}
	if err := d.remove("a", "", "AWSCURRENT"); err != nil {
		t.Fatal(err)
	}
	if _, found, err := d.load("a", "", "AWSCURRENT"); found || err != nil {
		t.Fatalf("removed: found %v err %v", found, err)
	}
}

// TestDiskCacheWrites: a file is rewritten for a new answer, not for the
// same fetch again (a memory-cache hit), and for the same answer fetched
// again only once diskRefreshInterval has passed.
func TestDiskCacheWrites(t *testing.T) {
	dir := t.TempDir()
	d := openCache(t, dir, testKey)
	path := filepath.Join(dir, d.name("a", "", "AWSCURRENT"))
	t0 := time.Now()
	content := func() []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if err := d.store(testEntry("a", t0)); err != nil {
		t.Fatal(err)
	}
	first := content()
	for _, at := range []time.Time{t0, t0.Add(-time.Second), t0.Add(diskRefreshInterval)} {
		if err := d.store(testEntry("a", at)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(content(), first) {
			t.Fatalf("the same answer fetched at t0%+v was written again", at.Sub(t0))
		}
	}
	if err := d.store(testEntry("a", t0.Add(diskRefreshInterval+time.Second))); err != nil {
		t.Fatal(err)
	}
	second := content()
	if bytes.Equal(second, first) {
		t.Fatal("the same answer fetched after the refresh interval was not written")
	}
	e := testEntry("a", t0.Add(diskRefreshInterval+2*time.Second))
	e.Answer.VersionID = "22222222-2222-2222-2222-222222222222"
	if err := d.store(e); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := d.load("a", "", "AWSCURRENT"); got.Answer.VersionID != e.Answer.VersionID {
		t.Fatalf("a new answer was not written: %s", got.Answer.VersionID)
	}
}

// TestCacheKey: the key comes from the file given, else the environment
// variable (a value, or file://PATH); none, or one too short, is an error.
func TestCacheKey(t *testing.T) {
	env := map[string]string{}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if _, err := CacheKey(lookup, ""); err == nil {
		t.Fatal("no key: no error")
	}
	env[CacheKeyEnv] = string(testKey)
	if k, err := CacheKey(lookup, ""); err != nil || !bytes.Equal(k, testKey) {
		t.Fatalf("env: %q %v", k, err)
	}
	f := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(f, append(otherKey, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := CacheKey(lookup, f); err != nil || !bytes.Equal(k, otherKey) {
		t.Fatalf("file: %q %v", k, err)
	}
	env[CacheKeyEnv] = "file://" + f
	if k, err := CacheKey(lookup, ""); err != nil || !bytes.Equal(k, otherKey) {
		t.Fatalf("env file://: %q %v", k, err)
	}
	env[CacheKeyEnv] = "too-short"
	if _, err := CacheKey(lookup, ""); !errors.Is(err, ErrCacheKeyTooShort) {
		t.Fatalf("short: %v", err)
	}
}
