package rotators

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// dbSecret is a secret value in the AWS RDS JSON shape:
//
//	{"engine": "postgres", "host": "db.example", "port": 5432,
//	 "username": "app", "password": "…", "dbname": "app",
//	 "masterarn": "arn:…"}
//
// engine, port and dbname are optional; masterarn is needed by the
// alternating-users strategy. TLS is chosen by "sslmode" (Coffer's
// extension, libpq's values) or else the templates' "ssl" (true means
// verify-full, false means disable); with neither it is prefer: TLS when
// the server offers it, plaintext otherwise, as libpq and the templates do.
type dbSecret struct {
	// fields is the whole object, so fields this package does not know
	// (dbInstanceIdentifier, proxy settings…) survive a rotation.
	fields map[string]any

	Engine    string
	Host      string
	Port      int
	Username  string
	Password  string
	DBName    string
	MasterARN string
	SSLMode   string
}

// The sslmode values, as libpq names them.
var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

func parseSecret(value string, db database) (*dbSecret, error) {
	dec := json.NewDecoder(strings.NewReader(value))
	dec.UseNumber()
	var fields map[string]any
	if err := dec.Decode(&fields); err != nil || fields == nil {
		// The decoder's message can quote the value; never pass it on.
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformedSecret)
	}
	s := &dbSecret{fields: fields}
	var err error
	str := func(key string, required bool) string {
		v, ok := fields[key]
		if !ok || v == nil {
			if required && err == nil {
				err = fmt.Errorf("%w: %q is missing", ErrMalformedSecret, key)
			}
			return ""
		}
		t, ok := v.(string)
		if !ok || (required && t == "") {
			if err == nil {
				err = fmt.Errorf("%w: %q must be a non-empty string", ErrMalformedSecret, key)
			}
			return ""
		}
		return t
	}
	s.Engine = str("engine", false)
	s.Host = str("host", true)
	s.Username = str("username", true)
	s.Password = str("password", true)
	s.DBName = str("dbname", false)
	s.MasterARN = str("masterarn", false)
	if err != nil {
		return s, err
	}
	if s.Engine != "" && !slices.Contains(db.engines(), strings.ToLower(s.Engine)) {
		return s, fmt.Errorf("%w: engine %q is not one of %s", ErrMalformedSecret, s.Engine, strings.Join(db.engines(), ", "))
	}
	if strings.ContainsFunc(s.Username, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return s, fmt.Errorf("%w: username contains control characters", ErrMalformedSecret)
	}
	if s.Port, err = parsePort(fields["port"], db.defaultPort()); err != nil {
		return s, err
	}
	if s.SSLMode, err = parseSSLMode(fields); err != nil {
		return s, err
	}
	return s, nil
}

func parsePort(v any, def int) (int, error) {
	var text string
	switch p := v.(type) {
	case nil:
		return def, nil
	case json.Number:
		text = p.String()
	case string:
		text = p
	default:
		return 0, fmt.Errorf("%w: \"port\" must be a number", ErrMalformedSecret)
	}
	n, err := strconv.Atoi(strings.TrimSpace(text))
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%w: \"port\" must be 1-65535", ErrMalformedSecret)
	}
	return n, nil
}

func parseSSLMode(fields map[string]any) (string, error) {
	if v, ok := fields["sslmode"]; ok {
		m, _ := v.(string)
		if !slices.Contains(sslModes, m) {
			return "", fmt.Errorf("%w: \"sslmode\" must be one of %s", ErrMalformedSecret, strings.Join(sslModes, ", "))
		}
		return m, nil
	}
	switch v := fields["ssl"].(type) {
	case nil:
		return "prefer", nil
	case bool:
		if v {
			return "verify-full", nil
		}
		return "disable", nil
	case string:
		switch strings.ToLower(v) {
		case "true":
			return "verify-full", nil
		case "false":
			return "disable", nil
		}
	}
	return "", fmt.Errorf("%w: \"ssl\" must be true or false", ErrMalformedSecret)
}

// clone copies s, for making the pending version out of the current one.
func (s *dbSecret) clone() *dbSecret {
	c := *s
	c.fields = maps.Clone(s.fields)
	return &c
}

func (s *dbSecret) setUsername(u string) {
	s.Username = u
	s.fields["username"] = u
}

func (s *dbSecret) setPassword(p string) {
	s.Password = p
	s.fields["password"] = p
}

// sameServer reports whether s and o name the same database server.
func (s *dbSecret) sameServer(o *dbSecret) bool {
	return strings.EqualFold(s.Host, o.Host) && s.Port == o.Port
}

func (s *dbSecret) marshal() (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s.fields); err != nil {
		return "", fmt.Errorf("%w: cannot encode the pending version", ErrMalformedSecret)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}
