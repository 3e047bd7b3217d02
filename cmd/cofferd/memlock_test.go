package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/storage/kms"
)

// TestMemoryLockIsRequiredUnlessAllowed (issue 13, item 13): cofferd keeps
// its keys in locked memory. Where it cannot lock them it refuses to start
// and names the setting to raise, unless allow_no_mlock (file, environment
// or flag) asks to run with them unlocked, which it warns about loudly;
// cofferd dev allows it. The systemd unit raises the limit it needs.
func TestMemoryLockIsRequiredUnlessAllowed(t *testing.T) {
	cannot := func() error {
		return fmt.Errorf("%w: mlock of 65536 bytes: cannot allocate memory (RLIMIT_MEMLOCK is 4096 bytes)", kms.ErrMemoryLock)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	cfg, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AllowNoMlock {
		t.Fatal("allow_no_mlock is on by default")
	}
	if mode, err := memoryLock(cfg, log, func() error { return nil }); err != nil || mode != kms.LockRequired {
		t.Fatalf("where memory can be locked: %v, %v; want LockRequired", mode, err)
	}
	_, err = memoryLock(cfg, log, cannot)
	for _, want := range []string{"RLIMIT_MEMLOCK is 4096 bytes", "LimitMEMLOCK=infinity", "--ulimit memlock", "allow_no_mlock: true", "64 KiB"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("start without lockable memory: %v; want it to say %q", err, want)
		}
	}

	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("allow_no_mlock: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"file":        {[]string{"--config", file}, nil},
		"environment": {nil, map[string]string{"COFFER_ALLOW_NO_MLOCK": "true"}},
		"flag":        {[]string{"--allow-no-mlock=true"}, nil},
	} {
		cfg, err := load(t, c.args, c.env)
		if err != nil || !cfg.AllowNoMlock {
			t.Fatalf("allow_no_mlock from the %s: %v, %v", name, cfg.AllowNoMlock, err)
		}
		logs.Reset()
		mode, merr := memoryLock(cfg, log, cannot)
		if merr != nil || mode != kms.LockBestEffort || !strings.Contains(logs.String(), "UNLOCKED") {
			t.Errorf("allow_no_mlock from the %s: %v, %v, logged %q; want best effort and a loud warning", name, mode, merr, logs.String())
		}
	}

	_, self, _, _ := runtime.Caller(0)
	unit, err := os.ReadFile(filepath.Join(filepath.Dir(self), "..", "..", "deploy", "systemd", "cofferd.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nLimitMEMLOCK=infinity\n", "\nLimitCORE=0\n", "\nMemorySwapMax=0\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("deploy/systemd/cofferd.service lacks %q", strings.TrimSpace(want))
		}
	}
}
