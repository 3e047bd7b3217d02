// Package dbtest starts throwaway PostgreSQL and MariaDB servers for tests:
// a fresh data directory under t.TempDir, a free loopback port, password
// authentication on, stopped in t.Cleanup. It is for tests only and must
// never be imported by production code.
//
// The servers come from the distribution's packages (scripts/deps.sh
// installs postgresql and mariadb-server). When the binaries are missing a
// test is skipped, unless CI is set, when it fails: CI must not pass by
// skipping the database tests.
package dbtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// startTimeout bounds how long a server may take to accept connections.
// It is a limit for giving up, not an assertion about speed.
const startTimeout = 2 * time.Minute

// Server is a running database server.
type Server struct {
	// Engine is "postgres" or "mysql", as the RDS secret's engine field.
	Engine string
	Host   string
	Port   int
	// AdminUser and AdminPassword are a superuser's credentials (the
	// master user of the alternating-users strategy).
	AdminUser     string
	AdminPassword string
	// DBName is a database every user may connect to.
	DBName string
}

// SecretJSON returns an RDS-shaped secret value for user on this server,
// with extra fields (such as masterarn) added.
func (s *Server) SecretJSON(user, password string, extra map[string]any) string {
	m := map[string]any{
		"engine": s.Engine, "host": s.Host, "port": s.Port,
		"username": user, "password": password,
	}
	if s.DBName != "" {
		m["dbname"] = s.DBName
	}
	for k, v := range extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // only plain values go in
	}
	return string(b)
}

// Login logs in as user with password, runs a trivial query and logs out.
func (s *Server) Login(ctx context.Context, user, password string) error {
	_, err := s.QueryInt(ctx, user, password, "SELECT 1")
	return err
}

// QueryInt logs in as user with password and returns the integer query
// returns, such as a count of rows the user may read.
func (s *Server) QueryInt(ctx context.Context, user, password, query string) (int64, error) {
	var n int64
	switch s.Engine {
	case "postgres":
		conn, err := pgx.ConnectConfig(ctx, s.pgConfig(user, password))
		if err != nil {
			return 0, err
		}
		defer conn.Close(context.Background())
		err = conn.QueryRow(ctx, query).Scan(&n)
		return n, err
	default:
		db := sql.OpenDB(s.mysqlConnector(user, password))
		defer db.Close()
		err := db.QueryRowContext(ctx, query).Scan(&n)
		return n, err
	}
}

// Exec runs statements as the admin user, failing t on error.
func (s *Server) Exec(t testing.TB, statements ...string) {
	t.Helper()
	if err := s.exec(context.Background(), statements...); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) exec(ctx context.Context, statements ...string) error {
	switch s.Engine {
	case "postgres":
		conn, err := pgx.ConnectConfig(ctx, s.pgConfig(s.AdminUser, s.AdminPassword))
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		for _, st := range statements {
			if _, err := conn.Exec(ctx, st); err != nil {
				return fmt.Errorf("%s: %w", st, err)
			}
		}
		return nil
	default:
		db := sql.OpenDB(s.mysqlConnector(s.AdminUser, s.AdminPassword))
		defer db.Close()
		for _, st := range statements {
			if _, err := db.ExecContext(ctx, st); err != nil {
				return fmt.Errorf("%s: %w", st, err)
			}
		}
		return nil
	}
}

func (s *Server) pgConfig(user, password string) *pgx.ConnConfig {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password),
		Host: net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), Path: "/" + s.DBName,
		RawQuery: "sslmode=disable&connect_timeout=5"}
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		panic(err) // the URL is built above
	}
	return cfg
}

func (s *Server) mysqlConnector(user, password string) driver.Connector {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net = user, password, "tcp"
	cfg.Addr = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	cfg.Timeout = 5 * time.Second
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		panic(err)
	}
	return c
}

// IsAuthError reports whether err is the server refusing credentials.
func IsAuthError(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "28P01" || pgErr.Code == "28000"
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		return myErr.Number == 1045 || myErr.Number == 1698
	}
	return false
}

// require skips t when a binary is missing and CI is not set, and fails it
// when CI is set.
func require(t testing.TB, what, hint string) {
	t.Helper()
	msg := fmt.Sprintf("dbtest: %s not found; %s", what, hint)
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI is set, so this is a failure, not a skip)")
	}
	t.Skip(msg)
}

func lookPath(names []string, dirs ...string) string {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		for _, d := range dirs {
			p := filepath.Join(d, n)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return p
			}
		}
	}
	return ""
}

// postgresBinDir finds initdb and postgres: $COFFER_PG_BINDIR, else the
// newest Debian /usr/lib/postgresql/<ver>/bin, else PATH.
func postgresBinDir() string {
	has := func(dir string) bool {
		for _, b := range []string{"initdb", "postgres"} {
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				return false
			}
		}
		return true
	}
	if d := os.Getenv("COFFER_PG_BINDIR"); d != "" && has(d) {
		return d
	}
	vers, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(vers, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(vers[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(vers[j])))
		return vi > vj
	})
	for _, d := range vers {
		if has(d) {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && has(filepath.Dir(real)) {
			return filepath.Dir(real)
		}
		if has(filepath.Dir(p)) {
			return filepath.Dir(p)
		}
	}
	return ""
}

func randomPassword(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// unprivileged is the account PostgreSQL runs as when the test runs as
// root (PostgreSQL refuses root): postgres when the package created it,
// else nobody. ok is false when no switch is needed.
func unprivileged(t testing.TB) (cred *syscall.Credential, ok bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil, false
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, true
	}
	t.Fatal("dbtest: running as root and no postgres or nobody user to run PostgreSQL as")
	return nil, false
}

// process is a server process started by this package.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

func startProcess(cmd *exec.Cmd, logPath string) (*process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// A test binary killed by its timeout runs no cleanup; the kernel then
	// stops the server rather than leaving it running. (Go sets this after
	// switching the user, which would otherwise clear it.)
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// stop asks the server to shut down with sig and waits; after a grace
// period it kills it.
func (p *process) stop(sig os.Signal) {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the end of a log file, for failure messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(bytes.TrimSpace(b))
}

// waitReady polls until the server accepts the admin's login, the process
// exits, or startTimeout passes.
func waitReady(t testing.TB, s *Server, p *process) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			t.Fatalf("dbtest: %s exited during start-up (%v); log:\n%s", s.Engine, p.err, tail(p.log))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		last = s.Login(ctx, s.AdminUser, s.AdminPassword)
		cancel()
		if last == nil {
			return
		}
		select {
		case <-p.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("dbtest: %s did not accept connections within %v (last error: %v); log:\n%s", s.Engine, startTimeout, last, tail(p.log))
}

func run(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
