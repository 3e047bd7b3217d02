package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// stringsFlag is a flag that may be repeated; each use appends a value.
type stringsFlag []string

func (s *stringsFlag) String() string { return strings.Join(*s, ",") }

func (s *stringsFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// secretValue is a value read from the command line: text, bytes, or neither.
type secretValue struct {
	str *string
	bin []byte
}

// valueFlags are the three mutually exclusive ways to give a secret value.
type valueFlags struct {
	value      string
	valueFile  string
	binaryFile string
}

func (v *valueFlags) register(l *leaf) {
	l.fs.StringVar(&v.value, "value", "", "secret `TEXT`; visible to other local users and in shell history, prefer --value-file")
	l.fs.StringVar(&v.valueFile, "value-file", "", "read the text value from `FILE` (- for stdin), byte for byte")
	l.fs.StringVar(&v.binaryFile, "binary-file", "", "read a binary value from `FILE` (- for stdin)")
}

// read returns the value the flags give. When required, exactly one of them
// must be given; otherwise at most one.
func (v *valueFlags) read(l *leaf, required bool) (secretValue, error) {
	var given []string
	for _, name := range []string{"value", "value-file", "binary-file"} {
		if l.given[name] {
			given = append(given, "--"+name)
		}
	}
	switch {
	case len(given) > 1:
		return secretValue{}, l.usageErrorf("%s: give only one of --value, --value-file and --binary-file", strings.Join(given, ", "))
	case len(given) == 0 && required:
		return secretValue{}, l.usageErrorf("a value is required: give --value, --value-file or --binary-file")
	case l.given["value"]:
		return secretValue{str: &v.value}, nil
	case l.given["value-file"]:
		b, err := readFileArg(l, v.valueFile)
		if err != nil {
			return secretValue{}, fmt.Errorf("--value-file: %w", err)
		}
		if !utf8.Valid(b) {
			return secretValue{}, l.usageErrorf("--value-file %s is not UTF-8 text; use --binary-file", v.valueFile)
		}
		s := string(b)
		return secretValue{str: &s}, nil
	case l.given["binary-file"]:
		b, err := readFileArg(l, v.binaryFile)
		if err != nil {
			return secretValue{}, fmt.Errorf("--binary-file: %w", err)
		}
		if b == nil {
			b = []byte{} // present but empty; nil would mean "no value"
		}
		return secretValue{bin: b}, nil
	}
	return secretValue{}, nil
}

// readFileArg reads the named file, or stdin when name is "-".
func readFileArg(l *leaf, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(l.inv.stdin)
	}
	return os.ReadFile(name)
}

// registerToken adds --token to l and returns a function giving the token to
// send: the flag's value, or else a new UUID, as the AWS CLI does. So a
// retried command line makes a new version, while a given token is idempotent.
func registerToken(l *leaf) func() string {
	token := l.fs.String("token", "", "client request `TOKEN` that makes retries idempotent; becomes the version id (default a new UUID)")
	return func() string {
		if l.given["token"] {
			return *token
		}
		return newRequestToken()
	}
}

// newRequestToken returns a random (version 4) UUID.
func newRequestToken() string {
	var b [16]byte
	rand.Read(b[:]) // never fails: crypto/rand.Read crashes the program instead
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// splitPair splits "key=value" at the first "="; the key must not be empty.
func splitPair(s, what string) (key, value string, err error) {
	key, value, ok := strings.Cut(s, "=")
	if !ok || key == "" {
		return "", "", fmt.Errorf("%s %q: want KEY=VALUE", what, s)
	}
	return key, value, nil
}

// parseTags turns "key=value" arguments into tags, in the order given.
func parseTags(args []string) ([]*cofferv1.Tag, error) {
	var tags []*cofferv1.Tag
	for _, a := range args {
		k, v, err := splitPair(a, "tag")
		if err != nil {
			return nil, err
		}
		tags = append(tags, &cofferv1.Tag{Key: k, Value: v})
	}
	return tags, nil
}

// parseFilters turns "key=value" arguments into filters, one per key in the
// order keys first appear; a repeated key adds a value to its filter.
func parseFilters(args []string) ([]*cofferv1.Filter, error) {
	var filters []*cofferv1.Filter
	byKey := map[string]*cofferv1.Filter{}
	for _, a := range args {
		k, v, err := splitPair(a, "--filter")
		if err != nil {
			return nil, err
		}
		f := byKey[k]
		if f == nil {
			f = &cofferv1.Filter{Key: k}
			byKey[k] = f
			filters = append(filters, f)
		}
		f.Values = append(f.Values, v)
	}
	return filters, nil
}
