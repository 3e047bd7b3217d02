package main

import (
	"fmt"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// runRandomPassword prints the password alone in table output: generating one
// to capture in a variable is the whole point, and nothing is stored.
func runRandomPassword(l *leaf, args []string) error {
	var (
		length      = l.fs.Int64("length", 0, "password length, `N` from 1 to 4096 (default 32)")
		exclude     = l.fs.String("exclude-characters", "", "`CHARS` never to use")
		noNumbers   = l.fs.Bool("exclude-numbers", false, "leave out 0-9")
		noPunct     = l.fs.Bool("exclude-punctuation", false, "leave out punctuation")
		noUpper     = l.fs.Bool("exclude-uppercase", false, "leave out A-Z")
		noLower     = l.fs.Bool("exclude-lowercase", false, "leave out a-z")
		space       = l.fs.Bool("include-space", false, "allow the space character")
		requireEach = l.fs.Bool("require-each-included-type", true, "use at least one character of every included type (default true)")
	)
	if _, err := l.parse(args); err != nil {
		return err
	}
	req := &cofferv1.GetRandomPasswordRequest{
		ExcludeCharacters:  *exclude,
		ExcludeNumbers:     *noNumbers,
		ExcludePunctuation: *noPunct,
		ExcludeUppercase:   *noUpper,
		ExcludeLowercase:   *noLower,
		IncludeSpace:       *space,
	}
	if l.given["length"] {
		req.PasswordLength = length
	}
	if l.given["require-each-included-type"] {
		req.RequireEachIncludedType = requireEach
	}
	resp, err := call(l, client.GetRandomPassword, req)
	if err != nil {
		return err
	}
	if l.inv.opts.output == outputJSON {
		return l.print(resp, nil)
	}
	_, err = fmt.Fprintln(l.inv.stdout, resp.GetRandomPassword())
	return err
}
