package softhsm

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Modules are where Debian and other distributions put SoftHSM2's PKCS#11
// library.
var Modules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// Token is one initialised token.
type Token struct {
	// Module is the PKCS#11 library's path.
	Module string
	// Label, PIN and SOPIN are the token's label, user PIN and security
	// officer PIN.
	Label, PIN, SOPIN string
	// Conf is the SOFTHSM2_CONF file that holds the token directory.
	Conf string
}

// New makes a token labelled label with user PIN pin in a directory of
// its own and points SOFTHSM2_CONF at it for the rest of the test (so the
// test must not be parallel). It fails the test when SoftHSM2 is missing:
// `make test` installs it.
func New(t testing.TB, label, pin string) Token {
	t.Helper()
	tok := Token{Label: label, PIN: pin, SOPIN: "so-" + pin}
	for _, m := range Modules {
		if _, err := os.Stat(m); err == nil {
			tok.Module = m
			break
		}
	}
	util, err := exec.LookPath("softhsm2-util")
	if tok.Module == "" || err != nil {
		t.Fatalf("SoftHSM2 is needed (Debian's softhsm2; scripts/deps.sh installs it): library %q, softhsm2-util: %v", tok.Module, err)
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	tok.Conf = filepath.Join(dir, "softhsm2.conf")
	conf := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(tok.Conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", tok.Conf)
	cmd := exec.Command(util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", tok.SOPIN)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return tok
}
