package dbtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/cofferhq/coffer/test/testkit"
)

// StartPostgres starts a PostgreSQL server on a free 127.0.0.1 port with a
// fresh cluster in t.TempDir, scram-sha-256 password authentication for
// every TCP connection and no Unix socket. AdminUser is the superuser
// "postgres". The server stops in t.Cleanup.
//
// PostgreSQL refuses to run as root, so a test running as root starts it
// as the postgres (or nobody) user, letting that user into the temporary
// directory.
func StartPostgres(t testing.TB) *Server {
	t.Helper()
	bin := postgresBinDir()
	if bin == "" {
		require(t, "PostgreSQL server binaries (initdb, postgres)", "install the postgresql package (make deps)")
	}
	cred, switchUser := unprivileged(t)
	top := t.TempDir()
	dir := filepath.Join(top, "pg")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	pwfile := filepath.Join(dir, "pwfile")
	s := &Server{Engine: "postgres", Host: "127.0.0.1", AdminUser: "postgres",
		AdminPassword: randomPassword(t), DBName: "postgres"}
	if err := os.WriteFile(pwfile, []byte(s.AdminPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	attr := &syscall.SysProcAttr{}
	if switchUser {
		// t.TempDir and its parent are private to root; let the server's
		// user pass through them and own its own directory.
		for _, d := range []string{filepath.Dir(top), top} {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []string{dir, pwfile} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				t.Fatal(err)
			}
		}
		attr.Credential = cred
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", s.AdminUser,
		"--pwfile="+pwfile, "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.Dir, initdb.SysProcAttr = dir, attr
	if err := run(initdb); err != nil {
		t.Fatalf("dbtest: initdb: %v", err)
	}
	if err := os.Remove(pwfile); err != nil {
		t.Fatal(err)
	}
	s.Port = testkit.FreePort(t)
	// Durability is not what these servers are for; speed and a small
	// footprint on shared machines are.
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-h", s.Host, "-p", strconv.Itoa(s.Port), "-k", "",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=16MB",
		"-c", "password_encryption=scram-sha-256")
	cmd.Dir, cmd.SysProcAttr = dir, attr
	p, err := startProcess(cmd, filepath.Join(top, "postgres.log"))
	if err != nil {
		t.Fatalf("dbtest: start postgres: %v", err)
	}
	// SIGINT is PostgreSQL's fast shutdown.
	t.Cleanup(func() { p.stop(syscall.SIGINT) })
	waitReady(t, s, p)
	return s
}
