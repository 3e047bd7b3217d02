package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Ref is one reference to a secret's value: the secret, and optionally a
// key of its JSON object, a stage or a version.
type Ref struct {
	SecretID  string
	JSONKey   string
	Stage     string
	VersionID string
}

// EnvRef is an environment variable and the reference it is set from.
type EnvRef struct {
	Name string
	Ref  Ref
}

// ErrMissingKey: the secret's JSON has no such key (or is no JSON object).
var ErrMissingKey = errors.New("missing JSON key")

var (
	envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// A version id is a ClientRequestToken: 32 to 64 characters; coffer and
	// the SDKs make UUIDs. A stage is anything else (AWSCURRENT, blue…).
	versionLike = regexp.MustCompile(`^[0-9a-fA-F-]{32,64}$`)
)

// ParseEnv parses NAME=REF (see ParseRef).
func ParseEnv(spec string) (EnvRef, error) {
	name, ref, ok := strings.Cut(spec, "=")
	if !ok || !envName.MatchString(name) {
		return EnvRef{}, fmt.Errorf("--env %q: want NAME=SECRET[:JSON_KEY[:STAGE|VERSION]] with NAME a variable name", spec)
	}
	r, err := ParseRef(ref)
	if err != nil {
		return EnvRef{}, fmt.Errorf("--env %s: %w", name, err)
	}
	return EnvRef{Name: name, Ref: r}, nil
}

// ParseRef parses SECRET[:JSON_KEY[:STAGE|VERSION]], where the last part
// is a version id when it looks like one (32–64 hex digits and dashes) and
// a stage otherwise; or ECS's valueFrom form,
// arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME[:JSON_KEY[:STAGE[:VERSION]]],
// where empty parts are left out.
func ParseRef(s string) (Ref, error) {
	if strings.HasPrefix(s, "arn:") {
		parts := strings.Split(s, ":")
		if len(parts) < 7 || len(parts) > 10 || parts[2] != "secretsmanager" || parts[5] != "secret" || parts[6] == "" {
			return Ref{}, fmt.Errorf("reference %q: want arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME[:JSON_KEY[:VERSION_STAGE[:VERSION_ID]]]", s)
		}
		r := Ref{SecretID: strings.Join(parts[:7], ":")}
		rest := append(parts[7:], "", "", "")
		r.JSONKey, r.Stage, r.VersionID = rest[0], rest[1], rest[2]
		return r, nil
	}
	parts := strings.Split(s, ":")
	if parts[0] == "" || len(parts) > 3 {
		return Ref{}, fmt.Errorf("reference %q: want SECRET[:JSON_KEY[:STAGE|VERSION]]", s)
	}
	r := Ref{SecretID: parts[0]}
	if len(parts) > 1 {
		r.JSONKey = parts[1]
	}
	if len(parts) > 2 && parts[2] != "" {
		if versionLike.MatchString(parts[2]) {
			r.VersionID = parts[2]
		} else {
			r.Stage = parts[2]
		}
	}
	return r, nil
}

// String renders r as ParseRef reads it (without the value).
func (r Ref) String() string {
	s := r.SecretID
	if r.JSONKey != "" || r.Stage != "" || r.VersionID != "" {
		s += ":" + r.JSONKey
	}
	if r.Stage != "" {
		s += ":" + r.Stage
	} else if r.VersionID != "" {
		s += ":" + r.VersionID
	}
	return s
}

// pick returns the value of key in a secret's JSON object text: a string
// as it is, anything else as its JSON.
func pick(text, key string) (string, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &obj); err != nil {
		return "", fmt.Errorf("%w %q: the value is not a JSON object", ErrMissingKey, key)
	}
	raw, ok := obj[key]
	if !ok {
		return "", fmt.Errorf("%w %q", ErrMissingKey, key)
	}
	var str string
	if err := json.Unmarshal(raw, &str); err == nil {
		return str, nil
	}
	return string(raw), nil
}

// Template is one file rendered from a Go template.
type Template struct {
	In, Out string
	Mode    os.FileMode
}

// ParseTemplate parses IN:OUT[:MODE] (MODE octal, default 0600).
func ParseTemplate(spec string) (Template, error) {
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Template{}, fmt.Errorf("--template %q: want IN:OUT[:MODE]", spec)
	}
	t := Template{In: parts[0], Out: parts[1], Mode: 0o600}
	if len(parts) == 3 {
		m, err := strconv.ParseUint(parts[2], 8, 32)
		if err != nil || m > 0o777 {
			return Template{}, fmt.Errorf("--template %q: mode %q is not an octal file mode like 0640", spec, parts[2])
		}
		t.Mode = os.FileMode(m)
	}
	return t, nil
}
