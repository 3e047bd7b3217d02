package kms

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mappingFlags returns the VmFlags smaps shows for the mapping that holds
// addr ("lo" locked, "dd" left out of core dumps).
func mappingFlags(t *testing.T, addr uintptr) []string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	inside := false
	for sc.Scan() {
		line := sc.Text()
		if lo, hi, ok := mappingRange(line); ok {
			inside = lo <= addr && addr < hi
			continue
		}
		if inside {
			if flags, ok := strings.CutPrefix(line, "VmFlags:"); ok {
				return strings.Fields(flags)
			}
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return nil
}

// mappingRange parses a smaps header line "lo-hi perms …".
func mappingRange(line string) (lo, hi uintptr, ok bool) {
	field, _, _ := strings.Cut(line, " ")
	a, b, found := strings.Cut(field, "-")
	if !found {
		return 0, 0, false
	}
	x, err1 := strconv.ParseUint(a, 16, 64)
	y, err2 := strconv.ParseUint(b, 16, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uintptr(x), uintptr(y), true
}

// canLock skips a test where this process may not lock a page.
func canLock(t *testing.T) {
	t.Helper()
	if err := CheckMemoryLock(); err != nil {
		t.Skipf("this process cannot lock memory here: %v", err)
	}
}

// TestKeyMaterialIsLockedAndNotDumped (issue 13, item 13): the root key
// and the keyring's unsealed material live in memory the kernel reports
// locked (never swapped) and excluded from core dumps, outside the Go heap;
// freeing it zeroes it.
func TestKeyMaterialIsLockedAndNotDumped(t *testing.T) {
	canLock(t)
	root := randomKey()
	rec, err := NewKeyring(root, testNow)
	if err != nil {
		t.Fatal(err)
	}
	locked, err := NewLockedKey(root, LockRequired)
	if err != nil {
		t.Fatalf("NewLockedKey: %v", err)
	}
	defer locked.Destroy()
	var k *Keyring
	if err := locked.Use(func(key []byte) error {
		if !bytes.Equal(key, root) {
			return errors.New("the locked copy differs")
		}
		k, err = Open(key, rec, LockRequired)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !locked.Locked() || !k.Locked() {
		t.Fatalf("Locked: root %v keyring %v", locked.Locked(), k.Locked())
	}
	for name, addr := range map[string]uintptr{
		"root key":        uintptr(unsafe.Pointer(&locked.region.mem[0])),
		"key material":    uintptr(unsafe.Pointer(&k.keys[k.DefaultKeyID()].versions[1][0])),
		"fingerprint key": uintptr(unsafe.Pointer(&k.fingerprintKey[0])),
	} {
		flags := mappingFlags(t, addr)
		if !contains(flags, "lo") || !contains(flags, "dd") {
			t.Errorf("%s at %#x: VmFlags %v, want lo (locked) and dd (not dumped)", name, addr, flags)
		}
	}
	// The keyring works from that memory.
	sealed, err := k.Seal(k.DefaultKeyID(), testName, testARN, testVersionID, kindText, []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.Unseal(sealed, testARN, testVersionID); err != nil || string(got) != "v" {
		t.Fatalf("Unseal = %q, %v", got, err)
	}
	runtime.KeepAlive(k)

	region := k.region
	mem := region.mapped
	region.free()
	region.free() // twice is harmless
	if region.mapped != nil {
		t.Fatal("free left the mapping")
	}
	_ = mem // unmapped now: reading it would fault
}

// TestMemoryLockRequiredFailsLoudly: with RLIMIT_MEMLOCK below what a node
// needs, CheckMemoryLock and a required lock fail with ErrMemoryLock naming
// the limit, and best effort carries on unlocked.
func TestMemoryLockRequiredFailsLoudly(t *testing.T) {
	// Lowering the limit is for this process, and it cannot be raised again
	// without privilege; run in a child.
	if os.Getenv("COFFER_MEMLOCK_CHILD") == "1" {
		lim := unix.Rlimit{Cur: 4096, Max: 4096}
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
			fmt.Println("SETRLIMIT", err)
			return
		}
		err := CheckMemoryLock()
		fmt.Println("CHECK", err)
		_, err = NewLockedKey(make([]byte, 32), LockBestEffort)
		fmt.Println("BESTEFFORT", err)
		return
	}
	cmd := execSelf(t, "TestMemoryLockRequiredFailsLoudly")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	text := string(out)
	if strings.Contains(text, "CHECK <nil>") {
		t.Skipf("this process may lock beyond RLIMIT_MEMLOCK (CAP_IPC_LOCK):\n%s", text)
	}
	if !strings.Contains(text, "CHECK "+ErrMemoryLock.Error()) || !strings.Contains(text, "RLIMIT_MEMLOCK is 4096 bytes") {
		t.Errorf("CheckMemoryLock under a 4 KiB limit:\n%s\nwant ErrMemoryLock naming the limit", text)
	}
	if !strings.Contains(text, "BESTEFFORT <nil>") {
		t.Errorf("best effort under a 4 KiB limit:\n%s", text)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// execSelf runs this test binary again with only test and
// COFFER_MEMLOCK_CHILD=1. As root it runs it as nobody, from a copy nobody
// can execute: root may lock beyond the limit (CAP_IPC_LOCK), nobody may not.
func execSelf(t *testing.T, test string) *exec.Cmd {
	t.Helper()
	bin := os.Args[0]
	var attr *syscall.SysProcAttr
	if os.Getuid() == 0 {
		dir, err := os.MkdirTemp("", "memlock")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		self, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		bin = dir + "/kms.test"
		if err := os.WriteFile(bin, self, 0o755); err != nil {
			t.Fatal(err)
		}
		attr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	cmd := exec.Command(bin, "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), "COFFER_MEMLOCK_CHILD=1")
	cmd.Dir = os.TempDir()
	cmd.SysProcAttr = attr
	return cmd
}
