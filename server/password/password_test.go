package password

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// The classes as the test derives them, independently of the package's
// constants, so a typo in a constant cannot hide in both places.
var (
	testLower = charRange('a', 'z')
	testUpper = charRange('A', 'Z')
	testDigit = charRange('0', '9')
	testPunct = func() string {
		var b strings.Builder
		for c := byte('!'); c <= '~'; c++ {
			if !strings.ContainsRune(testLower+testUpper+testDigit, rune(c)) {
				b.WriteByte(c)
			}
		}
		return b.String()
	}()
)

func charRange(from, to byte) string {
	var b strings.Builder
	for c := from; c <= to; c++ {
		b.WriteByte(c)
	}
	return b.String()
}

func TestClassConstants(t *testing.T) {
	for _, tc := range []struct{ name, got, want string }{
		{"Lowercase", Lowercase, testLower},
		{"Uppercase", Uppercase, testUpper},
		{"Digits", Digits, testDigit},
		{"Punctuation", Punctuation, testPunct},
		{"Space", Space, " "},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if len(Punctuation) != 32 {
		t.Errorf("len(Punctuation) = %d, want 32", len(Punctuation))
	}
}

func TestDefaults(t *testing.T) {
	want := Options{Length: 32, RequireEachIncludedType: true}
	if got := Defaults(); got != want {
		t.Errorf("Defaults() = %+v, want %+v", got, want)
	}
}

func TestGenerateOptions(t *testing.T) {
	const iterations = 300
	tests := []struct {
		name  string
		apply func(*Options)
		// required lists the classes that must each appear (when
		// RequireEachIncludedType is on); their union, minus excluded,
		// is the only characters allowed.
		required []string
		excluded string
	}{
		{"defaults", func(o *Options) {}, []string{testLower, testUpper, testDigit, testPunct}, ""},
		{"ExcludeNumbers", func(o *Options) { o.ExcludeNumbers = true }, []string{testLower, testUpper, testPunct}, ""},
		{"ExcludePunctuation", func(o *Options) { o.ExcludePunctuation = true }, []string{testLower, testUpper, testDigit}, ""},
		{"ExcludeUppercase", func(o *Options) { o.ExcludeUppercase = true }, []string{testLower, testDigit, testPunct}, ""},
		{"ExcludeLowercase", func(o *Options) { o.ExcludeLowercase = true }, []string{testUpper, testDigit, testPunct}, ""},
		{"IncludeSpace", func(o *Options) { o.IncludeSpace = true }, []string{testLower, testUpper, testDigit, testPunct, " "}, ""},
		{"ExcludeCharacters", func(o *Options) { o.ExcludeCharacters = `:/@"'\` },
			[]string{testLower, testUpper, testDigit, testPunct}, `:/@"'\`},
		{"ExcludeCharacters empties a class", func(o *Options) { o.ExcludeCharacters = testDigit; o.Length = 3 },
			[]string{testLower, testUpper, testPunct}, testDigit},
		{"ExcludeCharacters removes the space", func(o *Options) { o.IncludeSpace = true; o.ExcludeCharacters = " abc" },
			[]string{testLower, testUpper, testDigit, testPunct}, " abc"},
		{"ExcludeCharacters with non-ASCII runes", func(o *Options) { o.ExcludeCharacters = "é€x日" },
			[]string{testLower, testUpper, testDigit, testPunct}, "x"},
		{"letters only", func(o *Options) { o.ExcludeNumbers = true; o.ExcludePunctuation = true },
			[]string{testLower, testUpper}, ""},
		{"digits and space", func(o *Options) {
			o.ExcludeLowercase, o.ExcludeUppercase, o.ExcludePunctuation, o.IncludeSpace = true, true, true, true
		}, []string{testDigit, " "}, ""},
		{"everything combined", func(o *Options) {
			o.Length = 64
			o.ExcludeUppercase = true
			o.IncludeSpace = true
			o.ExcludeCharacters = "aeiou0O1l!|"
		}, []string{testLower, testDigit, testPunct, " "}, "aeiou0O1l!|"},
		{"RequireEachIncludedType off", func(o *Options) { o.RequireEachIncludedType = false; o.Length = 2 },
			nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := Defaults()
			tc.apply(&o)
			allowed := strings.Join(tc.required, "")
			if tc.required == nil {
				allowed = testLower + testUpper + testDigit + testPunct
			}
			for range iterations {
				pw, err := Generate(o)
				if err != nil {
					t.Fatalf("Generate(%+v): %v", o, err)
				}
				if int64(len(pw)) != o.Length {
					t.Fatalf("len(%q) = %d, want %d", pw, len(pw), o.Length)
				}
				for _, c := range pw {
					if !strings.ContainsRune(allowed, c) || strings.ContainsRune(tc.excluded, c) {
						t.Fatalf("password %q contains %q, which the options exclude", pw, c)
					}
				}
				for _, class := range tc.required {
					if !strings.ContainsAny(pw, strings.Map(func(r rune) rune {
						if strings.ContainsRune(tc.excluded, r) {
							return -1
						}
						return r
					}, class)) {
						t.Fatalf("password %q has no character from required class %q", pw, class)
					}
				}
			}
		})
	}
}

func TestGenerateLengthBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"1, one class, required", Options{Length: 1, ExcludeUppercase: true, ExcludeNumbers: true, ExcludePunctuation: true, RequireEachIncludedType: true}},
		{"1, all classes, not required", Options{Length: 1}},
		{"4096, defaults", Options{Length: 4096, RequireEachIncludedType: true}},
		{"4096, space", Options{Length: 4096, IncludeSpace: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pw, err := Generate(tc.o)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if int64(len(pw)) != tc.o.Length {
				t.Fatalf("len = %d, want %d", len(pw), tc.o.Length)
			}
		})
	}
}

func TestGenerateErrors(t *testing.T) {
	allExcluded := Options{Length: 8, ExcludeLowercase: true, ExcludeUppercase: true, ExcludeNumbers: true, ExcludePunctuation: true}
	tests := []struct {
		name     string
		o        Options
		want     error
		mentions []string
	}{
		{"zero length", Options{}, ErrInvalidLength, []string{"PasswordLength", "1", "4096", "got 0"}},
		{"negative length", Options{Length: -5}, ErrInvalidLength, []string{"PasswordLength", "got -5"}},
		{"4097", Options{Length: 4097}, ErrInvalidLength, []string{"PasswordLength", "4096", "got 4097"}},
		{"every class excluded", allExcluded, ErrNoCharacters, []string{"ExcludeCharacters", "Exclude"}},
		{"every character excluded", Options{Length: 8, ExcludeCharacters: testLower + testUpper + testDigit + testPunct}, ErrNoCharacters, []string{"ExcludeCharacters"}},
		{"space only, excluded", func() Options { o := allExcluded; o.IncludeSpace = true; o.ExcludeCharacters = " "; return o }(), ErrNoCharacters, nil},
		{"length 3 with four required types", Options{Length: 3, RequireEachIncludedType: true}, ErrTooShort,
			[]string{"PasswordLength", "RequireEachIncludedType", "4 types", "at least 4", "got 3"}},
		{"length 4 with five required types", Options{Length: 4, IncludeSpace: true, RequireEachIncludedType: true}, ErrTooShort,
			[]string{"5 types", "space"}},
		{"invalid length wins over too short", Options{Length: 0, RequireEachIncludedType: true}, ErrInvalidLength, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pw, err := Generate(tc.o)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Generate(%+v) = %q, %v; want error %v", tc.o, pw, err, tc.want)
			}
			if pw != "" {
				t.Errorf("password %q returned with an error", pw)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

// TestGenerateUniform checks that a one-class alphabet comes out roughly
// uniform. With 9 degrees of freedom, a chi-square statistic above 100 has
// probability below 1e-16 for a fair source, so the test does not flake;
// the byte%10 modulo bias it guards against scores about 250 at this size.
func TestGenerateUniform(t *testing.T) {
	o := Options{Length: MaxLength, ExcludeLowercase: true, ExcludeUppercase: true, ExcludePunctuation: true, RequireEachIncludedType: true}
	const passwords = 250 // about a million digits
	var counts [10]int
	for range passwords {
		pw, err := Generate(o)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(pw); i++ {
			counts[pw[i]-'0']++
		}
	}
	expected := float64(passwords*MaxLength) / 10
	chi2 := 0.0
	for _, c := range counts {
		d := float64(c) - expected
		chi2 += d * d / expected
	}
	if chi2 > 100 {
		t.Errorf("chi-square = %.1f over digit counts %v, want ≤ 100 (df 9)", chi2, counts)
	}
}

// TestGenerateShuffles checks that the required characters do not always
// come first: with one lowercase and one digit required, a two-character
// password starts with a digit half the time.
func TestGenerateShuffles(t *testing.T) {
	o := Options{Length: 2, ExcludeUppercase: true, ExcludePunctuation: true, RequireEachIncludedType: true}
	digitFirst := 0
	const draws = 400
	for range draws {
		pw, err := Generate(o)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.ContainsAny(pw, testLower) || !strings.ContainsAny(pw, testDigit) {
			t.Fatalf("password %q lacks a required class", pw)
		}
		if strings.ContainsRune(testDigit, rune(pw[0])) {
			digitFirst++
		}
	}
	// Expected 200; a fair source falls outside 100–300 with probability
	// far below 1e-20.
	if digitFirst < 100 || digitFirst > 300 {
		t.Errorf("digit first in %d of %d passwords, want about half", digitFirst, draws)
	}
}

// TestIndexerRejectsBiasedValues feeds chosen bytes to show that values in
// the incomplete top run are redrawn rather than reduced modulo n.
func TestIndexerRejectsBiasedValues(t *testing.T) {
	const n = 10
	// 2^32 = 4294967296; the largest multiple of 10 below it is 4294967290,
	// so 4294967290–4294967295 must be rejected.
	values := []uint32{4294967295, 4294967290, 4294967289, 7}
	x := indexer{fill: func(b []byte) {
		clear(b)
		for i, v := range values {
			b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		}
	}}
	if got := x.intn(n); got != 9 {
		t.Errorf("first intn(10) = %d, want 9 (from 4294967289, after two rejections)", got)
	}
	if got := x.intn(n); got != 7 {
		t.Errorf("second intn(10) = %d, want 7", got)
	}
}

func TestIndexerRefills(t *testing.T) {
	refills := 0
	x := indexer{fill: func(b []byte) {
		refills++
		for i := range b {
			b[i] = byte(refills)
		}
	}}
	perBuffer := len(x.buf) / 4
	for range perBuffer {
		x.uint32()
	}
	if refills != 1 {
		t.Fatalf("refills after %d draws = %d, want 1", perBuffer, refills)
	}
	if got, want := x.uint32(), uint32(0x02020202); got != want {
		t.Errorf("first draw after refill = %#x, want %#x", got, want)
	}
	if refills != 2 {
		t.Errorf("refills = %d, want 2", refills)
	}
	if x.intn(1) != 0 || x.intn(math.MaxInt32) < 0 {
		t.Error("intn out of range")
	}
}

func BenchmarkGenerate(b *testing.B) {
	o := Defaults()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Generate(o); err != nil {
			b.Fatal(err)
		}
	}
}
