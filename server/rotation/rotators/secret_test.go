package rotators

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/server/rotation"
)

func TestParseSecret(t *testing.T) {
	const pw = "s3cret-Value"
	cases := []struct {
		name, value string
		db          database
		wantErr     string // empty: parses
		check       func(*dbSecret) error
	}{
		{name: "full postgres", db: postgres{},
			value: `{"engine":"postgres","host":"db","port":6543,"username":"app","password":"` + pw + `","dbname":"d","masterarn":"arn:m","sslmode":"verify-full"}`,
			check: func(s *dbSecret) error {
				if s.Host != "db" || s.Port != 6543 || s.Username != "app" || s.Password != pw || s.DBName != "d" || s.MasterARN != "arn:m" || s.SSLMode != "verify-full" {
					return fmt.Errorf("parsed %+v", *s)
				}
				return nil
			}},
		{name: "defaults", db: mysqlDB{}, value: `{"host":"db","username":"app","password":"p"}`,
			check: func(s *dbSecret) error {
				if s.Port != 3306 || s.SSLMode != "prefer" {
					return fmt.Errorf("port %d sslmode %s, want 3306 prefer", s.Port, s.SSLMode)
				}
				return nil
			}},
		{name: "port as string, ssl true", db: postgres{}, value: `{"host":"db","port":"5433","username":"a","password":"p","ssl":true}`,
			check: func(s *dbSecret) error {
				if s.Port != 5433 || s.SSLMode != "verify-full" {
					return fmt.Errorf("port %d sslmode %s", s.Port, s.SSLMode)
				}
				return nil
			}},
		{name: "ssl false", db: postgres{}, value: `{"host":"db","username":"a","password":"p","ssl":"false"}`,
			check: func(s *dbSecret) error {
				if s.SSLMode != "disable" {
					return fmt.Errorf("sslmode %s", s.SSLMode)
				}
				return nil
			}},
		{name: "not JSON", db: postgres{}, value: `password=` + pw, wantErr: "not a JSON object"},
		{name: "truncated JSON", db: postgres{}, value: `{"password":"` + pw, wantErr: "not a JSON object"},
		{name: "no host", db: postgres{}, value: `{"username":"a","password":"` + pw + `"}`, wantErr: `"host" is missing`},
		{name: "empty password", db: postgres{}, value: `{"host":"h","username":"a","password":""}`, wantErr: `"password" must be a non-empty string`},
		{name: "wrong engine", db: postgres{}, value: `{"engine":"mysql","host":"h","username":"a","password":"` + pw + `"}`, wantErr: `engine "mysql"`},
		{name: "bad port", db: postgres{}, value: `{"host":"h","port":70000,"username":"a","password":"` + pw + `"}`, wantErr: `"port" must be 1-65535`},
		{name: "bad sslmode", db: postgres{}, value: `{"host":"h","sslmode":"sometimes","username":"a","password":"` + pw + `"}`, wantErr: `"sslmode" must be one of`},
		{name: "control character in user", db: postgres{}, value: `{"host":"h","username":"a\nb","password":"` + pw + `"}`, wantErr: "control characters"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := parseSecret(c.value, c.db)
			if c.wantErr != "" {
				if !errors.Is(err, ErrMalformedSecret) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want ErrMalformedSecret with %q", err, c.wantErr)
				}
				if strings.Contains(err.Error(), pw) {
					t.Fatalf("error quotes the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := c.check(s); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPendingKeepsOtherFields(t *testing.T) {
	s, err := parseSecret(`{"host":"h","port":5432,"username":"app","password":"old","proxy":{"a":[1,2.50]},"html":"<&>"}`, postgres{})
	if err != nil {
		t.Fatal(err)
	}
	p := s.clone()
	p.setUsername("app_clone")
	p.setPassword("new")
	got, err := p.marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"host":"h","html":"<&>","password":"new","port":5432,"proxy":{"a":[1,2.50]},"username":"app_clone"}`
	if got != want {
		t.Fatalf("pending = %s\nwant      %s", got, want)
	}
	if s.Username != "app" || s.fields["password"] != "old" {
		t.Fatal("changing the pending copy changed the current secret")
	}
}

func TestAltUsername(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{in: "app", want: "app_clone"},
		{in: "app_clone", want: "app"},
		{in: "_clone", want: "_clone_clone"},
		{in: strings.Repeat("u", 26), want: strings.Repeat("u", 26) + "_clone"},
		{in: strings.Repeat("u", 27), err: "would exceed 32"},
	} {
		got, err := altUsername(c.in, 32)
		if c.err != "" {
			if !errors.Is(err, ErrMalformedSecret) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("altUsername(%q) err = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("altUsername(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestCloneGrant(t *testing.T) {
	acct := account("app_clone", "%")
	for _, c := range []struct{ line, want string }{
		{"GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*7B9EBEED26AA52ED10C0F549FA863F13C39E0209'",
			"GRANT USAGE ON *.* TO `app_clone`@`%`"},
		{"GRANT SELECT, INSERT ON `app TO db`.* TO `app`@`%` WITH GRANT OPTION",
			"GRANT SELECT, INSERT ON `app TO db`.* TO `app_clone`@`%` WITH GRANT OPTION"},
		{"GRANT `reader` TO `app`@`%` WITH ADMIN OPTION", "GRANT `reader` TO `app_clone`@`%` WITH ADMIN OPTION"},
		{"SET DEFAULT ROLE `reader` FOR `app`@`%`", "SET DEFAULT ROLE `reader` FOR `app_clone`@`%`"},
		{"GRANT SELECT ON `d`.* TO 'app'@'%'", "GRANT SELECT ON `d`.* TO `app_clone`@`%`"},
		{"REVOKE nothing", ""},
	} {
		got, ok, err := cloneGrant(c.line, "app", "%", acct)
		if err != nil || got != c.want || ok != (c.want != "") {
			t.Errorf("cloneGrant(%q) = %q, %v, %v; want %q", c.line, got, ok, err, c.want)
		}
	}
	if _, _, err := cloneGrant("GRANT USAGE ON *.* TO `other`@`%`", "app", "%", acct); !errors.Is(err, ErrDatabase) {
		t.Errorf("a line for another grantee: err = %v, want ErrDatabase", err)
	}
	if got := account("we`ird", "h"); got != "`we``ird`@`h`" {
		t.Errorf("account quoting = %s", got)
	}
}

func TestSCRAMVerifier(t *testing.T) {
	v, ok := scramVerifier("correct horse")
	if !ok || !regexp.MustCompile(`^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$`).MatchString(v) {
		t.Fatalf("verifier %q, ok %v", v, ok)
	}
	if strings.Contains(v, "correct") {
		t.Fatal("the verifier contains the password")
	}
	if _, ok := scramVerifier("pässword"); ok {
		t.Fatal("a non-ASCII password needs SASLprep; scramVerifier should decline it")
	}
}

func TestScrub(t *testing.T) {
	inv := &invocation{ev: rotation.Event{Step: rotation.StepSetSecret, SecretID: "s", ClientRequestToken: "tok"},
		passwords: []string{"abc", "abcdef", ""}}
	err := inv.scrub(fmt.Errorf("%w: near 'IDENTIFIED BY abcdef' and abc", ErrDatabase))
	if !errors.Is(err, ErrDatabase) {
		t.Fatalf("scrub lost the kind: %v", err)
	}
	if want := "setSecret tok of s: database statement failed: near 'IDENTIFIED BY [REDACTED]' and [REDACTED]"; err.Error() != want {
		t.Fatalf("scrubbed = %q\nwant      %q", err.Error(), want)
	}
}
