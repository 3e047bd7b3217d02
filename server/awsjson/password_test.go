package awsjson

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cofferhq/coffer/server"
)

// TestGetRandomPasswordSpace checks IncludeSpace as AWS documents it, on the
// raw HTTP answer and through aws-sdk-go-v2: the space is a candidate only
// when IncludeSpace is true ("If you include this switch, the password can
// contain space characters"; by default it cannot), and it is then one of
// the included types RequireEachIncludedType asks one of (AWS's own example
// sets both "to require spaces and at least one character of each included
// type"). Each case leaves few enough classes that the answer is certain,
// not likely.
func TestGetRandomPasswordSpace(t *testing.T) {
	client, ts := startAWS(t)
	password := func(body string) string {
		t.Helper()
		r := post(t, ts.URL, "secretsmanager.GetRandomPassword", body)
		pw, ok := r.body["RandomPassword"].(string)
		if r.status != 200 || !ok {
			t.Fatalf("GetRandomPassword %s: %d %s", body, r.status, r.raw)
		}
		return pw
	}
	const onlyPunctuation = `"ExcludeLowercase":true,"ExcludeUppercase":true,"ExcludeNumbers":true`

	// Without IncludeSpace no password has one, even when the other
	// classes leave only punctuation (which has no space).
	for _, body := range []string{
		`{"PasswordLength":4096,` + onlyPunctuation + `}`,
		`{"PasswordLength":4096,"IncludeSpace":false,"RequireEachIncludedType":false,` + onlyPunctuation + `}`,
	} {
		if pw := password(body); len(pw) != 4096 || strings.Contains(pw, " ") {
			t.Fatalf("%s: %d characters, space %v; want 4096 without a space", body, len(pw), strings.Contains(pw, " "))
		}
	}
	// With IncludeSpace and nothing else, the password is spaces.
	if pw := password(`{"PasswordLength":8,"IncludeSpace":true,` + onlyPunctuation + `,"ExcludePunctuation":true}`); pw != strings.Repeat(" ", 8) {
		t.Fatalf("IncludeSpace alone: %q, want 8 spaces", pw)
	}
	// Digits and the space at length 2: RequireEachIncludedType (default
	// true) makes it one of each, every time.
	for range 50 {
		pw := password(`{"PasswordLength":2,"IncludeSpace":true,"ExcludeLowercase":true,"ExcludeUppercase":true,"ExcludePunctuation":true}`)
		if strings.Count(pw, " ") != 1 || strings.Trim(pw, " 0123456789") != "" {
			t.Fatalf("digits and space, each required: %q, want one digit and one space", pw)
		}
	}
	// Without RequireEachIncludedType the space is allowed, not required:
	// one character from two types is no error.
	if pw := password(`{"PasswordLength":1,"IncludeSpace":true,"RequireEachIncludedType":false,"ExcludeLowercase":true,"ExcludeUppercase":true,"ExcludePunctuation":true}`); strings.Trim(pw, " 0123456789") != "" {
		t.Fatalf("digits or space: %q", pw)
	}
	// Five required types do not fit in four characters.
	post(t, ts.URL, "secretsmanager.GetRandomPassword", `{"PasswordLength":4,"IncludeSpace":true}`).
		wantError(t, 400, server.TypeInvalidParameter, "space")
	if r := password(`{"PasswordLength":5,"IncludeSpace":true}`); strings.Count(r, " ") < 1 {
		t.Fatalf("five required types in five characters: %q has no space", r)
	}

	// The SDK sends the same members.
	out, err := client.GetRandomPassword(t.Context(), &secretsmanager.GetRandomPasswordInput{
		PasswordLength: aws.Int64(6), IncludeSpace: aws.Bool(true), ExcludeLowercase: aws.Bool(true),
		ExcludeUppercase: aws.Bool(true), ExcludeNumbers: aws.Bool(true), ExcludePunctuation: aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("SDK GetRandomPassword with only IncludeSpace: %v", err)
	}
	if pw := aws.ToString(out.RandomPassword); pw != strings.Repeat(" ", 6) {
		t.Fatalf("SDK GetRandomPassword with only IncludeSpace: %q, want 6 spaces", pw)
	}
}
