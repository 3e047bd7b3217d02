package rotators

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// mysqlDB is MySQL 5.7.6 or newer, or MariaDB 10.2 or newer, through
// go-sql-driver/mysql.
type mysqlDB struct{}

func (mysqlDB) engines() []string {
	return []string{"mysql", "mariadb", "aurora-mysql", "aurora"}
}

func (mysqlDB) defaultPort() int { return 3306 }

// maxUsername is MySQL's limit; MariaDB allows 80 but a secret should work
// on both.
func (mysqlDB) maxUsername() int { return 32 }

// mysqlTLS maps libpq's sslmode onto the driver's tls parameter.
func mysqlTLS(mode string) string {
	switch mode {
	case "disable":
		return "false"
	case "require":
		return "skip-verify"
	case "verify-ca", "verify-full":
		return "true"
	}
	return "preferred" // allow, prefer
}

func (mysqlDB) connect(ctx context.Context, s *dbSecret) (session, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = s.Username, s.Password
	cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	cfg.DBName = s.DBName
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = connectTimeout, statementTimeout, statementTimeout
	cfg.TLSConfig = mysqlTLS(s.SSLMode)
	// Client-side interpolation: the account statements below are not all
	// preparable, and the driver escapes values for the session's sql_mode.
	cfg.InterpolateParams = true
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot build MySQL connection settings for %s", ErrMalformedSecret, s.Host)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(1)
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := db.Conn(cctx)
	if err != nil {
		_ = db.Close()
		var myErr *mysql.MySQLError
		// 1045 access denied, 1044 no access to the database, 1698 access
		// denied without a password: the credentials do not work.
		if errors.As(err, &myErr) && (myErr.Number == 1045 || myErr.Number == 1044 || myErr.Number == 1698) {
			return nil, fmt.Errorf("%w as %s: %s (error %d)", ErrLogin, s.Username, myErr.Message, myErr.Number)
		}
		return nil, fmt.Errorf("connect to MySQL at %s as %s: %w", cfg.Addr, s.Username, err)
	}
	return &mysqlSession{db: db, conn: conn}, nil
}

type mysqlSession struct {
	db   *sql.DB
	conn *sql.Conn
}

func (m *mysqlSession) close() {
	_ = m.conn.Close()
	_ = m.db.Close()
}

func (m *mysqlSession) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, statementTimeout)
	defer cancel()
	var now string
	if err := m.conn.QueryRowContext(ctx, "SELECT NOW()").Scan(&now); err != nil {
		return fmt.Errorf("%w: test query: %w", ErrDatabase, err)
	}
	return nil
}

// passwordExpr is how SET PASSWORD takes a plain password: MariaDB wants
// PASSWORD(), MySQL 5.7.6 and newer take the string.
func (m *mysqlSession) passwordExpr(ctx context.Context) (string, error) {
	var version string
	if err := m.conn.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return "", fmt.Errorf("%w: server version: %w", ErrDatabase, err)
	}
	if strings.Contains(strings.ToLower(version), "mariadb") {
		return "PASSWORD(?)", nil
	}
	return "?", nil
}

// setOwnPassword uses SET PASSWORD without FOR, which any user may run for
// itself; ALTER USER would need CREATE USER on MariaDB.
func (m *mysqlSession) setOwnPassword(ctx context.Context, _, password string) error {
	ctx, cancel := context.WithTimeout(ctx, statementTimeout)
	defer cancel()
	expr, err := m.passwordExpr(ctx)
	if err != nil {
		return err
	}
	if _, err := m.conn.ExecContext(ctx, "SET PASSWORD = "+expr, password); err != nil {
		return fmt.Errorf("%w: SET PASSWORD: %w", ErrDatabase, err)
	}
	return nil
}

// quoteName quotes a user or host name as an identifier. Doubling the
// backtick is the only escape identifiers have, whatever the sql_mode.
func quoteName(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}

func account(user, host string) string { return quoteName(user) + "@" + quoteName(host) }

// setAlternate gives alt the password on every host current has, as the
// master user.
//
// The pair is base and base_clone, the clone made by this rotator on every
// host base has, with base's grants (SHOW GRANTS, re-issued) and TLS
// requirement. The rotator only
//
//   - creates alt@host when it does not exist and alt is current's _clone,
//     copying current@host's grants to it;
//   - sets the password of an existing alt@host when its grants are
//     exactly current@host's once the user name is substituted, which is
//     what the rotator left when it copied them: the new password then
//     lets its holder do nothing the current user cannot.
//
// A secret naming "root_clone" (an account its author made) therefore
// cannot have the master reset the password of "root", whose grants are
// not root_clone's. A grant given to one user of the pair but not the
// other stops the rotation with ErrNotClone until both have it. Every
// host is checked before anything changes, so a refusal changes nothing.
func (m *mysqlSession) setAlternate(ctx context.Context, current, alt, password string) error {
	ctx, cancel := context.WithTimeout(ctx, statementTimeout)
	defer cancel()
	_, _, altIsClone := pairOf(current, alt)
	expr, err := m.passwordExpr(ctx)
	if err != nil {
		return err
	}
	hosts, err := m.strings(ctx, "SELECT Host FROM mysql.user WHERE User = ? ORDER BY Host", current)
	if err != nil {
		return fmt.Errorf("%w: look up user %s: %w", ErrDatabase, current, err)
	}
	if len(hosts) == 0 {
		return fmt.Errorf("%w: user %s does not exist", ErrDatabase, current)
	}
	exists := make([]bool, len(hosts))
	for i, host := range hosts {
		acct := account(alt, host)
		var n int
		if err := m.conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.user WHERE User = ? AND Host = ?", alt, host).Scan(&n); err != nil {
			return fmt.Errorf("%w: look up user %s: %w", ErrDatabase, acct, err)
		}
		if exists[i] = n > 0; !exists[i] {
			if !altIsClone {
				return fmt.Errorf("%w: %s does not exist, and the rotator only creates %s users", ErrNotClone, acct, cloneSuffix)
			}
			continue
		}
		want, err := m.grantsFor(ctx, current, host, acct)
		if err != nil {
			return err
		}
		got, err := m.grantsFor(ctx, alt, host, acct)
		if err != nil {
			return err
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(want, got) {
			return fmt.Errorf("%w: the grants of %s differ from those of %s, so they are not a pair this rotator made, or a grant was given to only one of them; "+
				"not changing the password of %s", ErrNotClone, acct, account(current, host), acct)
		}
	}
	for i, host := range hosts {
		acct := account(alt, host)
		if !exists[i] {
			if err := m.createClone(ctx, current, host, acct, password); err != nil {
				return err
			}
		}
		if err := m.copyTLS(ctx, current, host, acct); err != nil {
			return err
		}
		if _, err := m.conn.ExecContext(ctx, "SET PASSWORD FOR "+acct+" = "+expr, password); err != nil {
			return fmt.Errorf("%w: SET PASSWORD FOR %s: %w", ErrDatabase, acct, err)
		}
	}
	return nil
}

// createClone creates acct with base@host's grants.
func (m *mysqlSession) createClone(ctx context.Context, base, host, acct, password string) error {
	if _, err := m.conn.ExecContext(ctx, "CREATE USER "+acct+" IDENTIFIED BY ?", password); err != nil {
		return fmt.Errorf("%w: CREATE USER %s: %w", ErrDatabase, acct, err)
	}
	grants, err := m.grantsFor(ctx, base, host, acct)
	if err != nil {
		return err
	}
	for _, stmt := range grants {
		// No arguments: the statement is sent as it is, so a '?' in a
		// quoted name is never taken for a placeholder.
		if _, err := m.conn.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%w: copy a grant to %s: %w", ErrDatabase, acct, err)
		}
	}
	return nil
}

// grantsFor returns user@host's SHOW GRANTS lines rewritten as statements
// granting the same to acct, in the server's order (a role is granted
// before SET DEFAULT ROLE names it). Two users have the same privileges
// exactly when their lists, rewritten for one acct, hold the same lines.
func (m *mysqlSession) grantsFor(ctx context.Context, user, host, acct string) ([]string, error) {
	lines, err := m.strings(ctx, "SHOW GRANTS FOR "+account(user, host))
	if err != nil {
		return nil, fmt.Errorf("%w: SHOW GRANTS FOR %s: %w", ErrDatabase, account(user, host), err)
	}
	var out []string
	for _, line := range lines {
		stmt, ok, err := cloneGrant(line, user, host, acct)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, stmt)
		}
	}
	return out, nil
}

// cloneGrant rewrites one line of SHOW GRANTS for base@host into the same
// statement for acct. Lines other than GRANT and SET DEFAULT ROLE are
// skipped (ok false). MariaDB's first line carries the password hash after
// the grantee; it is dropped with everything else but the grant options.
func cloneGrant(line, base, host, acct string) (stmt string, ok bool, err error) {
	grantees := []string{account(base, host), "'" + base + "'@'" + host + "'"}
	var sep string
	switch {
	case strings.HasPrefix(line, "GRANT "):
		sep = " TO "
	case strings.HasPrefix(line, "SET DEFAULT ROLE "):
		sep = " FOR "
	default:
		return "", false, nil
	}
	for _, g := range grantees {
		i := strings.LastIndex(line, sep+g)
		if i < 0 {
			continue
		}
		stmt = line[:i] + sep + acct
		rest := line[i+len(sep)+len(g):]
		for _, opt := range []string{"WITH GRANT OPTION", "WITH ADMIN OPTION"} {
			if strings.Contains(rest, opt) {
				stmt += " " + opt
			}
		}
		return stmt, true, nil
	}
	return "", false, fmt.Errorf("%w: cannot find the grantee in a SHOW GRANTS line for %s", ErrDatabase, account(base, host))
}

// copyTLS gives acct the REQUIRE clause base@host has.
func (m *mysqlSession) copyTLS(ctx context.Context, base, host, acct string) error {
	var sslType, cipher, issuer, subject sql.NullString
	if err := m.conn.QueryRowContext(ctx,
		"SELECT ssl_type, ssl_cipher, x509_issuer, x509_subject FROM mysql.user WHERE User = ? AND Host = ?",
		base, host).Scan(&sslType, &cipher, &issuer, &subject); err != nil {
		return fmt.Errorf("%w: read TLS options of %s: %w", ErrDatabase, account(base, host), err)
	}
	var require string
	var args []any
	switch sslType.String {
	case "ANY":
		require = "SSL"
	case "X509":
		require = "X509"
	case "SPECIFIED":
		var parts []string
		for _, p := range []struct {
			kw string
			v  sql.NullString
		}{{"CIPHER", cipher}, {"ISSUER", issuer}, {"SUBJECT", subject}} {
			if p.v.String != "" {
				parts = append(parts, p.kw+" ?")
				args = append(args, p.v.String)
			}
		}
		require = strings.Join(parts, " AND ")
	}
	if require == "" {
		require = "NONE"
	}
	if _, err := m.conn.ExecContext(ctx, "ALTER USER "+acct+" REQUIRE "+require, args...); err != nil {
		return fmt.Errorf("%w: copy TLS options to %s: %w", ErrDatabase, acct, err)
	}
	return nil
}

func (m *mysqlSession) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := m.conn.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
