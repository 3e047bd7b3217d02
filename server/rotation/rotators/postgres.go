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
	"strings"
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

// pgRole is what the pair checks read of a role.
type pgRole struct {
	oid                                                 uint32
	super, createRole, createDB, replication, bypassRLS bool
}

// attributesBeyond lists the role attributes r has and o lacks.
func (r *pgRole) attributesBeyond(o *pgRole) []string {
	var out []string
	for _, a := range []struct {
		name       string
		mine, them bool
	}{
		{"SUPERUSER", r.super, o.super}, {"CREATEROLE", r.createRole, o.createRole}, {"CREATEDB", r.createDB, o.createDB},
		{"REPLICATION", r.replication, o.replication}, {"BYPASSRLS", r.bypassRLS, o.bypassRLS},
	} {
		if a.mine && !a.them {
			out = append(out, a.name)
		}
	}
	return out
}

// lookupRole reads role name, or returns nil when there is none.
func lookupRole(ctx context.Context, tx pgx.Tx, name string) (*pgRole, error) {
	r := &pgRole{}
	err := tx.QueryRow(ctx, "SELECT oid, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = $1", name).
		Scan(&r.oid, &r.super, &r.createRole, &r.createDB, &r.replication, &r.bypassRLS)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: look up role %s: %w", ErrDatabase, name, err)
	}
	return r, nil
}

// setAlternate gives alt the password, as the master user, in one
// transaction so the checks and the change see the same roles.
//
// The pair is base and base_clone, the clone a login role that is a
// member of base (so it has base's privileges), as the AWS template makes
// it. The rotator only sets the password of
//
//   - base_clone when it does not exist yet: it is created with LOGIN and
//     GRANT base TO base_clone, and nothing else;
//   - base_clone when it exists, is a direct member of base, and has no
//     role attribute (SUPERUSER, CREATEROLE, CREATEDB, REPLICATION,
//     BYPASSRLS) that base lacks: it then has nothing the current user's
//     holder could not already do as base;
//   - base, when flipping back from base_clone, only if base_clone is a
//     direct member of base: whoever holds base_clone's password can
//     already act as base.
//
// A secret naming "postgres_clone" (a role its author made) therefore
// cannot have the master reset the password of "postgres":
// postgres_clone is not a member of postgres. pg_auth_members is read
// rather than pg_has_role, which counts a superuser as a member of every
// role.
func (p *pgSession) setAlternate(ctx context.Context, current, alt, password string) error {
	ctx, cancel := context.WithTimeout(ctx, statementTimeout)
	defer cancel()
	base, clone, altIsClone := pairOf(current, alt)
	return pgx.BeginFunc(ctx, p.conn, func(tx pgx.Tx) error {
		cur, err := lookupRole(ctx, tx, current)
		if err != nil {
			return err
		}
		if cur == nil {
			return fmt.Errorf("%w: the current user %s does not exist", ErrDatabase, current)
		}
		other, err := lookupRole(ctx, tx, alt)
		if err != nil {
			return err
		}
		altIdent, lit, err := quotePG(ctx, tx, alt, password)
		if err != nil {
			return err
		}
		if other == nil {
			if !altIsClone {
				return fmt.Errorf("%w: user %s does not exist, and the rotator only creates %s users", ErrNotClone, alt, cloneSuffix)
			}
			var curIdent string
			if err := tx.QueryRow(ctx, "SELECT quote_ident($1)", current).Scan(&curIdent); err != nil {
				return fmt.Errorf("%w: quote names: %w", ErrDatabase, err)
			}
			if _, err := tx.Exec(ctx, "CREATE ROLE "+altIdent+" WITH LOGIN PASSWORD "+lit); err != nil {
				return fmt.Errorf("%w: CREATE ROLE %s: %w", ErrDatabase, altIdent, err)
			}
			if _, err := tx.Exec(ctx, "GRANT "+curIdent+" TO "+altIdent); err != nil {
				return fmt.Errorf("%w: GRANT %s TO %s: %w", ErrDatabase, curIdent, altIdent, err)
			}
			return nil
		}
		baseRole, cloneRole := cur, other
		if !altIsClone {
			baseRole, cloneRole = other, cur
		}
		var member bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_auth_members WHERE roleid = $1 AND member = $2)",
			baseRole.oid, cloneRole.oid).Scan(&member); err != nil {
			return fmt.Errorf("%w: read the membership of %s in %s: %w", ErrDatabase, clone, base, err)
		}
		if !member {
			return fmt.Errorf("%w: role %s is not a member of role %s, so they are not a pair this rotator made; not changing the password of %s",
				ErrNotClone, clone, base, alt)
		}
		if altIsClone {
			if extra := other.attributesBeyond(cur); len(extra) > 0 {
				return fmt.Errorf("%w: %s has role attributes %s lacks (%s); not changing its password",
					ErrNotClone, alt, current, strings.Join(extra, ", "))
			}
		}
		if _, err := tx.Exec(ctx, "ALTER USER "+altIdent+" WITH PASSWORD "+lit); err != nil {
			return fmt.Errorf("%w: ALTER USER %s: %w", ErrDatabase, altIdent, err)
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
