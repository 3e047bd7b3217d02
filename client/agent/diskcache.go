package agent

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The cache at rest (--cache-dir). The agent writes each answer it gives
// (the last good value of what was asked: secret id, version id, stage) to
// a file of its own, encrypted with AES-256-GCM under a key the operator
// provides and that is not kept beside the cache (--cache-key-file, or
// COFFER_AGENT_CACHE_KEY), so that an agent restarted while Coffer is
// unreachable still answers, with X-Coffer-Cache-Age. A file's name is an
// HMAC of what was asked, so names reveal no secret name; its content is
// sealed with its name as additional data, so a file copied over another
// name, altered, or written under another key is refused, never served.
// A marker file records a check value of the key (an HMAC, not the key):
// opening the directory with another key fails with ErrCacheKeyMismatch.
//
// Every file is written to a temporary file (0600) in the directory,
// synced, and renamed over its name; the directory is synced after. A
// write happens when Coffer gave a new answer (not a hit of the agent's
// memory cache), and for an unchanged answer at most every
// diskRefreshInterval, so a hot secret does not cost an fsync per read.

// Errors of the cache at rest.
var (
	// ErrCacheKeyMismatch: the cache directory was written with another key.
	ErrCacheKeyMismatch = errors.New("the cache directory was written with another key")
	// ErrCacheEntryRefused: a cached file failed authentication (altered,
	// moved from another name, or sealed under another key); it is not
	// served.
	ErrCacheEntryRefused = errors.New("cached entry failed authentication")
	// ErrCacheKeyTooShort: the key material is under MinCacheKeyLen bytes.
	ErrCacheKeyTooShort = errors.New("cache key too short")
)

// MinCacheKeyLen is the least key material accepted, in bytes; generate it
// with `openssl rand -base64 32` (44 characters, 256 bits).
const MinCacheKeyLen = 32

// CacheKeyEnv is the environment variable the cache key is read from when
// no key file is given; a value file://PATH reads it from PATH.
const CacheKeyEnv = "COFFER_AGENT_CACHE_KEY"

const (
	cacheMarker         = "coffer-agent-cache.json"
	cacheEntrySuffix    = ".entry"
	cacheFormat         = 1
	cacheMagic          = "CAC1" // file format 1: magic, nonce, sealed JSON
	diskRefreshInterval = time.Minute
)

// CacheKey reads the cache key material: from file when it is not empty,
// else from the environment variable CacheKeyEnv (its value, or the file a
// file://PATH value names). Surrounding white space is trimmed. It is
// at least MinCacheKeyLen bytes.
func CacheKey(lookup func(string) (string, bool), file string) ([]byte, error) {
	from := "--cache-key-file " + file
	var v string
	switch env, ok := lookup(CacheKeyEnv); {
	case file != "":
	case ok && env != "":
		from = CacheKeyEnv
		if path, isFile := strings.CutPrefix(env, "file://"); isFile {
			file, from = path, CacheKeyEnv+"=file://"+path
		} else {
			v = env
		}
	default:
		return nil, fmt.Errorf("no cache key: give --cache-key-file or set %s (a key kept away from the cache directory)", CacheKeyEnv)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("cache key from %s: %w", from, err)
		}
		v = string(b)
	}
	key := []byte(strings.TrimSpace(v))
	if len(key) < MinCacheKeyLen {
		return nil, fmt.Errorf("cache key from %s is %d bytes, want at least %d (openssl rand -base64 32): %w", from, len(key), MinCacheKeyLen, ErrCacheKeyTooShort)
	}
	return key, nil
}

// DiskCache is the agent's cache at rest.
type DiskCache struct {
	dir   string
	aead  cipher.AEAD
	names []byte // HMAC key of the file names

	mu      sync.Mutex
	written map[string]writtenEntry // by file name
}

type writtenEntry struct {
	fingerprint [32]byte // of the answer, without its time
	fetched     time.Time
}

// diskEntry is what a file holds, sealed.
type diskEntry struct {
	ID      string               `json:"id"`
	Version string               `json:"version_id,omitempty"`
	Stage   string               `json:"version_stage,omitempty"`
	Answer  getSecretValueOutput `json:"answer"`
	// Fetched is when Coffer gave the answer: X-Coffer-Cache-Age counts from it.
	Fetched time.Time `json:"fetched"`
}

type cacheMarkerFile struct {
	Format   int    `json:"format"`
	Cipher   string `json:"cipher"`
	KeyCheck string `json:"key_check"`
}

// OpenDiskCache opens (creating it, mode 0700) the cache directory dir
// with key material key. It fails with ErrCacheKeyMismatch when dir was
// written with another key.
func OpenDiskCache(dir string, key []byte) (*DiskCache, error) {
	if len(key) < MinCacheKeyLen {
		return nil, fmt.Errorf("agent cache: %w (%d bytes, want at least %d)", ErrCacheKeyTooShort, len(key), MinCacheKeyLen)
	}
	derive := func(purpose string) []byte {
		k, err := hkdf.Key(sha256.New, key, nil, "coffer agent cache v1 "+purpose, 32)
		if err != nil {
			panic(err) // only for a length over 255 hashes
		}
		return k
	}
	block, err := aes.NewCipher(derive("encryption"))
	if err != nil {
		return nil, fmt.Errorf("agent cache: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("agent cache: %w", err)
	}
	d := &DiskCache{dir: dir, aead: aead, names: derive("names"), written: map[string]writtenEntry{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent cache: %w", err)
	}
	// An old temporary file is what a write interrupted by a crash left (a
	// recent one may be another agent's write in progress).
	if tmps, err := filepath.Glob(filepath.Join(dir, ".tmp-*")); err == nil {
		for _, tmp := range tmps {
			if st, err := os.Stat(tmp); err == nil && time.Since(st.ModTime()) > time.Minute {
				_ = os.Remove(tmp)
			}
		}
	}
	check := hex.EncodeToString(d.mac("key check"))
	path := filepath.Join(dir, cacheMarker)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		m, _ := json.Marshal(cacheMarkerFile{Format: cacheFormat, Cipher: "AES-256-GCM", KeyCheck: check})
		if err := d.writeFile(cacheMarker, m); err != nil {
			return nil, err
		}
		return d, nil
	case err != nil:
		return nil, fmt.Errorf("agent cache: %w", err)
	}
	var m cacheMarkerFile
	if err := json.Unmarshal(b, &m); err != nil || m.Format != cacheFormat {
		return nil, fmt.Errorf("agent cache: %s is not a cache marker of format %d", path, cacheFormat)
	}
	if subtle.ConstantTimeCompare([]byte(m.KeyCheck), []byte(check)) != 1 {
		return nil, fmt.Errorf("agent cache %s: %w: give the key it was written with, or remove the directory to start an empty cache", dir, ErrCacheKeyMismatch)
	}
	return d, nil
}

// Dir is the cache directory.
func (d *DiskCache) Dir() string { return d.dir }

func (d *DiskCache) mac(s string) []byte {
	h := hmac.New(sha256.New, d.names)
	h.Write([]byte(s))
	return h.Sum(nil)
}

// name is the file name of what was asked.
func (d *DiskCache) name(id, version, stage string) string {
	return hex.EncodeToString(d.mac("entry\x00"+id+"\x00"+version+"\x00"+stage)) + cacheEntrySuffix
}

func aad(name string) []byte { return []byte("coffer agent cache v1\x00" + name) }

// store keeps e, unless the file already holds the same answer written
// less than diskRefreshInterval before e was fetched.
func (d *DiskCache) store(e diskEntry) error {
	name := d.name(e.ID, e.Version, e.Stage)
	d.mu.Lock()
	defer d.mu.Unlock()
	w, seen := d.written[name]
	if seen && !e.Fetched.After(w.fetched) {
		return nil // a hit of the memory cache, or an older answer finishing late
	}
	plain, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("agent cache: %w", err)
	}
	answer, _ := json.Marshal(e.Answer)
	fp := sha256.Sum256(answer)
	if seen && w.fingerprint == fp && !e.Fetched.After(w.fetched.Add(diskRefreshInterval)) {
		return nil
	}
	nonce := make([]byte, d.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("agent cache: %w", err)
	}
	out := append([]byte(cacheMagic), nonce...)
	out = d.aead.Seal(out, nonce, plain, aad(name))
	if err := d.writeFile(name, out); err != nil {
		return err
	}
	d.written[name] = writtenEntry{fingerprint: fp, fetched: e.Fetched}
	return nil
}

// load returns what was stored for what was asked: found false when
// nothing was, ErrCacheEntryRefused when the file fails authentication.
func (d *DiskCache) load(id, version, stage string) (e diskEntry, found bool, err error) {
	name := d.name(id, version, stage)
	b, err := os.ReadFile(filepath.Join(d.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("agent cache: %w", err)
	}
	ns := d.aead.NonceSize()
	if len(b) < len(cacheMagic)+ns || string(b[:len(cacheMagic)]) != cacheMagic {
		return e, false, fmt.Errorf("agent cache file %s: not a cache file: %w", name, ErrCacheEntryRefused)
	}
	b = b[len(cacheMagic):]
	plain, err := d.aead.Open(nil, b[:ns], b[ns:], aad(name))
	if err != nil {
		return e, false, fmt.Errorf("agent cache file %s (altered, moved, or sealed under another key): %w", name, ErrCacheEntryRefused)
	}
	if err := json.Unmarshal(plain, &e); err != nil || e.ID != id || e.Version != version || e.Stage != stage {
		return diskEntry{}, false, fmt.Errorf("agent cache file %s holds another entry: %w", name, ErrCacheEntryRefused)
	}
	return e, true, nil
}

// remove forgets what was asked (Coffer says it no longer exists).
func (d *DiskCache) remove(id, version, stage string) error {
	name := d.name(id, version, stage)
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.written, name)
	if err := os.Remove(filepath.Join(d.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("agent cache: %w", err)
	}
	return syncDir(d.dir)
}

// writeFile writes name atomically: a 0600 temporary file, synced, renamed
// over it, then the directory synced.
func (d *DiskCache) writeFile(name string, b []byte) error {
	f, err := os.CreateTemp(d.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("agent cache: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("agent cache: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("agent cache: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("agent cache: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("agent cache: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, name)); err != nil {
		return fmt.Errorf("agent cache: %w", err)
	}
	ok = true
	return syncDir(d.dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("agent cache: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("agent cache: %w", err)
	}
	return nil
}
