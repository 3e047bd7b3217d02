package password

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
)

// MinLength and MaxLength bound PasswordLength, as in AWS.
const (
	MinLength = 1
	MaxLength = 4096
)

// DefaultLength is the PasswordLength AWS uses when the request has none.
const DefaultLength = 32

// Lowercase, Uppercase, Digits, Punctuation and Space are the character
// classes of AWS GetRandomPassword. Punctuation is every printable ASCII
// character that is neither a letter, a digit nor a space.
const (
	Lowercase   = "abcdefghijklmnopqrstuvwxyz"
	Uppercase   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	Digits      = "0123456789"
	Punctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
	Space       = " "
)

// Errors returned by Generate. Their text names the AWS request parameter at
// fault, so server/ can return it as the InvalidParameterException message.
var (
	// ErrInvalidLength means PasswordLength is outside MinLength–MaxLength.
	ErrInvalidLength = fmt.Errorf("PasswordLength must be between %d and %d", MinLength, MaxLength)
	// ErrNoCharacters means the exclusions leave no character to draw from.
	ErrNoCharacters = errors.New("the Exclude* parameters and ExcludeCharacters exclude every character, so no password can be generated")
	// ErrTooShort means RequireEachIncludedType asks for more character types
	// than PasswordLength has room for.
	ErrTooShort = errors.New("PasswordLength is too short to include every character type required by RequireEachIncludedType")
)

// Options mirror the AWS GetRandomPassword request. Start from Defaults: the
// zero value has Length 0, which is invalid, and RequireEachIncludedType
// false, which is not the AWS default.
type Options struct {
	Length                  int64 // PasswordLength, MinLength–MaxLength
	ExcludeCharacters       string
	ExcludeNumbers          bool
	ExcludePunctuation      bool
	ExcludeUppercase        bool
	ExcludeLowercase        bool
	IncludeSpace            bool
	RequireEachIncludedType bool
}

// Defaults returns the options AWS applies to an empty request: 32
// characters from all four classes, at least one of each, no space.
func Defaults() Options {
	return Options{Length: DefaultLength, RequireEachIncludedType: true}
}

// Generate returns a password drawn from crypto/rand as AWS GetRandomPassword
// would make it for o. Every character is chosen uniformly from the included
// characters; with RequireEachIncludedType, one character is first chosen
// from each included class and the whole password is then shuffled, so the
// required characters sit at uniformly random positions.
//
// A class is included when its Exclude* flag (or IncludeSpace for the space)
// allows it and ExcludeCharacters leaves at least one of its characters.
func Generate(o Options) (string, error) {
	if o.Length < MinLength || o.Length > MaxLength {
		return "", fmt.Errorf("%w, got %d", ErrInvalidLength, o.Length)
	}
	classes, alphabet := includedClasses(o)
	if len(classes) == 0 {
		return "", ErrNoCharacters
	}
	if o.RequireEachIncludedType && o.Length < int64(len(classes)) {
		return "", fmt.Errorf("%w: %d types (%s) need PasswordLength of at least %d, got %d",
			ErrTooShort, len(classes), classNames(classes), len(classes), o.Length)
	}

	var rnd indexer
	out := make([]byte, o.Length)
	i := 0
	if o.RequireEachIncludedType {
		for _, c := range classes {
			out[i] = c.chars[rnd.intn(len(c.chars))]
			i++
		}
	}
	for ; i < len(out); i++ {
		out[i] = alphabet[rnd.intn(len(alphabet))]
	}
	if o.RequireEachIncludedType {
		// Fisher–Yates: without it the first characters would always be
		// one lowercase letter, one uppercase letter, one digit, ...
		for j := len(out) - 1; j > 0; j-- {
			k := rnd.intn(j + 1)
			out[j], out[k] = out[k], out[j]
		}
	}
	return string(out), nil
}

// class is one character class that survived the options.
type class struct {
	name  string
	chars []byte // a run of the alphabet returned with it
}

// includedClasses returns the classes o includes, each stripped of
// ExcludeCharacters, and alphabet, the union of their characters.
func includedClasses(o Options) (classes []class, alphabet []byte) {
	// Every candidate character is ASCII, so other runes in
	// ExcludeCharacters cannot remove anything and are ignored.
	var excluded [128]bool
	for _, r := range o.ExcludeCharacters {
		if r < 128 {
			excluded[r] = true
		}
	}
	candidates := []struct {
		name     string
		chars    string
		included bool
	}{
		{"lowercase", Lowercase, !o.ExcludeLowercase},
		{"uppercase", Uppercase, !o.ExcludeUppercase},
		{"numbers", Digits, !o.ExcludeNumbers},
		{"punctuation", Punctuation, !o.ExcludePunctuation},
		{"space", Space, o.IncludeSpace},
	}
	// alphabet has room for every candidate, so appending never moves it
	// and each class can be a slice of it.
	alphabet = make([]byte, 0, len(Lowercase)+len(Uppercase)+len(Digits)+len(Punctuation)+len(Space))
	classes = make([]class, 0, len(candidates))
	for _, c := range candidates {
		if !c.included {
			continue
		}
		start := len(alphabet)
		for i := 0; i < len(c.chars); i++ {
			if !excluded[c.chars[i]] {
				alphabet = append(alphabet, c.chars[i])
			}
		}
		if len(alphabet) > start {
			classes = append(classes, class{name: c.name, chars: alphabet[start:len(alphabet):len(alphabet)]})
		}
	}
	return classes, alphabet
}

func classNames(classes []class) string {
	names := make([]string, len(classes))
	for i, c := range classes {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

// indexer draws uniform indexes from crypto/rand. It reads random bytes in
// blocks, because a 4096-character password needs thousands of indexes and
// one read per index would dominate the cost.
type indexer struct {
	buf  [512]byte
	left int // unread bytes at the end of buf
	// fill replaces crypto/rand in tests that need chosen bytes.
	fill func([]byte)
}

func (x *indexer) uint32() uint32 {
	if x.left < 4 {
		if x.fill != nil {
			x.fill(x.buf[:])
		} else {
			// crypto/rand.Read never returns an error: if the system
			// source fails, the runtime aborts the process instead.
			rand.Read(x.buf[:])
		}
		x.left = len(x.buf)
	}
	b := x.buf[len(x.buf)-x.left:]
	x.left -= 4
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// intn returns a uniform integer in [0, n) for 0 < n ≤ 1<<31. Values in the
// top, incomplete run of n are rejected and redrawn, because reducing them
// modulo n would favour the smallest results.
func (x *indexer) intn(n int) int {
	const span uint64 = 1 << 32
	limit := span - span%uint64(n) // the largest multiple of n that fits
	for {
		v := uint64(x.uint32())
		if v < limit {
			return int(v % uint64(n))
		}
	}
}
