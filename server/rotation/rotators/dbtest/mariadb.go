package dbtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/cofferhq/coffer/test/testkit"
)

// StartMariaDB starts a MariaDB (or MySQL-compatible mysqld) server on a
// free 127.0.0.1 port with a fresh data directory in t.TempDir. AdminUser
// "coffer_admin"@"%" has every privilege WITH GRANT OPTION; host names are
// not resolved, so accounts are matched by address or '%'. The server
// stops in t.Cleanup.
func StartMariaDB(t testing.TB) *Server {
	t.Helper()
	server := lookPath([]string{"mariadbd", "mysqld"}, "/usr/sbin", "/usr/local/sbin", "/usr/libexec")
	install := lookPath([]string{"mariadb-install-db", "mysql_install_db"}, "/usr/bin", "/usr/local/bin", "/usr/sbin")
	if server == "" || install == "" {
		require(t, "MariaDB server binaries (mariadbd, mariadb-install-db)", "install the mariadb-server package (make deps)")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	// A Unix socket path must fit in 108 bytes, which t.TempDir may not.
	sockDir, err := os.MkdirTemp("", "dbtest-mdb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	var asRoot []string
	if os.Geteuid() == 0 {
		asRoot = []string{"--user=root"}
	}
	installArgs := append([]string{"--no-defaults", "--datadir=" + data,
		"--auth-root-authentication-method=normal", "--skip-test-db"}, asRoot...)
	install1 := exec.Command(install, installArgs...)
	install1.Dir = dir
	if err := run(install1); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	s := &Server{Engine: "mysql", Host: "127.0.0.1", AdminUser: "coffer_admin", AdminPassword: randomPassword(t)}
	initFile := filepath.Join(dir, "init.sql")
	initSQL := fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'%%' IDENTIFIED BY '%s';\n"+
		"GRANT ALL PRIVILEGES ON *.* TO '%s'@'%%' WITH GRANT OPTION;\n",
		s.AdminUser, s.AdminPassword, s.AdminUser) // hex password and fixed name: nothing to escape
	if err := os.WriteFile(initFile, []byte(initSQL), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Port = testkit.FreePort(t)
	args := append([]string{"--no-defaults", "--datadir=" + data,
		"--socket=" + filepath.Join(sockDir, "m.sock"), "--pid-file=" + filepath.Join(dir, "mariadbd.pid"),
		"--bind-address=" + s.Host, "--port=" + strconv.Itoa(s.Port), "--skip-name-resolve",
		"--tmpdir=" + dir, "--init-file=" + initFile, "--skip-log-bin",
		"--innodb-buffer-pool-size=32M", "--innodb-flush-log-at-trx-commit=0", "--max-connections=200"}, asRoot...)
	cmd := exec.Command(server, args...)
	cmd.Dir = dir
	p, err := startProcess(cmd, filepath.Join(dir, "mariadbd.log"))
	if err != nil {
		t.Fatalf("dbtest: start mariadbd: %v", err)
	}
	t.Cleanup(func() { p.stop(syscall.SIGTERM) })
	waitReady(t, s, p)
	return s
}
