package rotators

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// postgres is PostgreSQL 10 or newer, through pgx.
type postgres struct{}

func (postgres) engines() []string {
	return []string{"postgres", "postgresql", "aurora-postgresql"}
}

func (postgres) defaultPort() int { return 5432 }

// maxUsername is NAMEDATALEN-1.
func (postgres) maxUsername() int { return 63 }

func (postgres) connect(ctx context.Context, s *dbSecret) (session, error) {
	dbname := s.DBName
	if dbname == "" {
		dbname = "postgres"
	}
	u := url.URL{
		Scheme: "postgres", User: url.UserPassword(s.Username, s.Password),
		Host: net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), Path: "/" + dbname,
		RawQuery: url.Values{
			"sslmode":          {s.SSLMode},
			"connect_timeout":  {strconv.Itoa(int(connectTimeout.Seconds()))},
			"application_name": {"coffer-rotator"},
		}.Encode(),
	}
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		// The parser's message may quote the URL; say only what failed.
		return nil, fmt.Errorf("%w: cannot build PostgreSQL connection settings for %s", ErrMalformedSecret, s.Host)
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		var pgErr *pgconn.PgError
		// 28P01 invalid_password, 28000 invalid_authorization_specification
		// (no such role, pg_hba rejects): the credentials do not work.
		if errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000") {
			return nil, fmt.Errorf("%w as %s: %s (SQLSTATE %s)", ErrLogin, s.Username, pgErr.Message, pgErr.Code)
		}
		return nil, fmt.Errorf("connect to PostgreSQL at %s as %s: %w", u.Host, s.Username, err)
	}
	return &pgSession{conn: conn}, nil
}

type pgSession struct {
	conn *pgx.Conn
}

func (p *pgSession) close() {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	_ = p.conn.Close(ctx)
}

func (p *pgSession) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, statementTimeout)
	defer cancel()
	var now time.Time
	if err := p.conn.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
		return fmt.Errorf("%w: test query: %w", ErrDatabase, err)
	}
	return nil
}

// quotePG returns user as an identifier and the password's SQL literal, both
// quoted by the server: ALTER and CREATE ROLE take no bind parameters.
func quotePG(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, user, password string) (ident, literal string, err error) {
	secret := password
	if v, ok := scramVerifier(password); ok {
		secret = v
	}
	if err := q.QueryRow(ctx, "SELECT quote_ident($1), quote_literal($2)", user, secret).Scan(&ident, &literal); err != nil {
		return "", "", fmt.Errorf("%w: quote names: %w", ErrDatabase, err)
	}
	return ident, literal, nil
}

func (p *pgSession) setOwnPassword(ctx context.Context, user, password string) error {
	ctx, cancel := context.WithTimeout(ctx, statementTimeout)
	defer cancel()
	ident, lit, err := quotePG(ctx, p.conn, user, password)
	if err != nil {
		return err
	}
	if _, err := p.conn.Exec(ctx, "ALTER USER "+ident+" WITH PASSWORD "+lit); err != nil {
		return fmt.Errorf("%w: ALTER USER %s: %w", ErrDatabase, ident, err)
	}
	return nil
}

// setClone creates clone as a login role that is a member of base (so it
// has base's privileges), as the AWS template does, or only resets its
// password when it exists. One transaction, so a clone never exists
// without its membership.
func (p *pgSession) setClone(ctx context.Context, base, clone, password string) error {
	ctx, cancel := context.WithTimeout(ctx, statementTimeout)
	defer cancel()
	return pgx.BeginFunc(ctx, p.conn, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", clone).Scan(&exists); err != nil {
			return fmt.Errorf("%w: look up role %s: %w", ErrDatabase, clone, err)
		}
		cloneIdent, lit, err := quotePG(ctx, tx, clone, password)
		if err != nil {
			return err
		}
		if exists {
			if _, err := tx.Exec(ctx, "ALTER USER "+cloneIdent+" WITH PASSWORD "+lit); err != nil {
				return fmt.Errorf("%w: ALTER USER %s: %w", ErrDatabase, cloneIdent, err)
			}
			return nil
		}
		var baseIdent string
		if err := tx.QueryRow(ctx, "SELECT quote_ident($1)", base).Scan(&baseIdent); err != nil {
			return fmt.Errorf("%w: quote names: %w", ErrDatabase, err)
		}
		if _, err := tx.Exec(ctx, "CREATE ROLE "+cloneIdent+" WITH LOGIN PASSWORD "+lit); err != nil {
			return fmt.Errorf("%w: CREATE ROLE %s: %w", ErrDatabase, cloneIdent, err)
		}
		if _, err := tx.Exec(ctx, "GRANT "+baseIdent+" TO "+cloneIdent); err != nil {
			return fmt.Errorf("%w: GRANT %s TO %s: %w", ErrDatabase, baseIdent, cloneIdent, err)
		}
		return nil
	})
}

// SCRAM-SHA-256 parameters, as PostgreSQL's own client-side hashing uses.
const (
	scramIterations = 4096
	scramSaltLen    = 16
)

// scramVerifier computes the SCRAM-SHA-256 verifier PostgreSQL stores for a
// password (RFC 5802, 7677), so ALTER USER sends the verifier and the
// password itself never reaches the server's statement logs. It declines
// (ok false) for passwords SASLprep could change, anything but printable
// ASCII, which are then sent as they are.
func scramVerifier(password string) (string, bool) {
	for i := 0; i < len(password); i++ {
		if password[i] < 0x20 || password[i] > 0x7e {
			return "", false
		}
	}
	salt := make([]byte, scramSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", false
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", false
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, b64(salt), b64(storedKey[:]), b64(serverKey)), true
}
