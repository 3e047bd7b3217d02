package main

import (
	"fmt"
	"strings"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

type rotationClient = cofferv1.RotationServiceClient

func runRotate(l *leaf, args []string) error {
	var (
		function  = l.fs.String("function", "", "the rotation function: a registered function's name or ARN, or coffer:rotator/...")
		days      = l.fs.Int64("days", 0, "rotate every N days (AutomaticallyAfterDays, 1-1000)")
		schedule  = l.fs.String("schedule", "", "ScheduleExpression: rate(N hours|days) or cron(...), UTC")
		duration  = l.fs.String("duration", "", "length of the rotation window, such as 3h")
		immediate = l.fs.Bool("rotate-immediately", true, "rotate now; false only tests the function (testSecret)")
		token     = l.fs.String("token", "", "ClientRequestToken: the new version's id (default: a new UUID)")
	)
	pos, err := l.parse(args, "ID")
	if err != nil {
		return err
	}
	req := &cofferv1.RotateSecretRequest{SecretId: pos[0], RotationLambdaArn: *function, ClientRequestToken: *token}
	if l.given["days"] || l.given["schedule"] || l.given["duration"] {
		req.RotationRules = &cofferv1.RotationRules{ScheduleExpression: *schedule, Duration: *duration}
		if l.given["days"] {
			req.RotationRules.AutomaticallyAfterDays = days
		}
	}
	if l.given["rotate-immediately"] {
		req.RotateImmediately = immediate
	}
	resp, err := call(l, client.RotateSecret, req)
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("ARN", resp.GetArn())
		t.field("Name", resp.GetName())
		t.field("VersionId", resp.GetVersionId())
	})
}

func runCancelRotation(l *leaf, args []string) error {
	pos, err := l.parse(args, "ID")
	if err != nil {
		return err
	}
	resp, err := call(l, client.CancelRotateSecret, &cofferv1.CancelRotateSecretRequest{SecretId: pos[0]})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("ARN", resp.GetArn())
		t.field("Name", resp.GetName())
		t.field("VersionId", resp.GetVersionId())
	})
}

// rotationStatusLines renders the rotation in progress for describe.
func rotationStatusLines(s *cofferv1.RotationStatus) []string {
	if s == nil {
		return nil
	}
	kind := "rotation"
	if s.GetTestOnly() {
		kind = "test of the function (RotateImmediately=false)"
	}
	lines := []string{
		fmt.Sprintf("%s with token %s, started %s", kind, s.GetClientRequestToken(), formatTime(s.GetStartedDate())),
		fmt.Sprintf("next step %s at %s", s.GetStep(), formatTime(s.GetNextAttemptDate())),
	}
	if s.GetAttempts() > 0 {
		lines = append(lines,
			fmt.Sprintf("%d failed attempt(s); last in %s at %s:", s.GetAttempts(), s.GetLastErrorStep(), formatTime(s.GetLastErrorDate())),
			"  "+s.GetLastError())
	}
	return lines
}

func runRegisterFunction(l *leaf, args []string) error {
	secret := l.fs.String("secret", "", "shared `SECRET` (at least 16 bytes) signing each request with X-Coffer-Signature: t=UNIX,v1=HEX(HMAC-SHA256(secret, t.NAME.body)); "+
		"visible to other local users in ps and in shell history, prefer --secret-file")
	secretFile := l.fs.String("secret-file", "", "read the shared secret from `FILE` (- for stdin); one trailing newline is dropped")
	insecure := l.fs.Bool("insecure-http", false, "allow a plain http URL, for a function on this host only (localhost or a loopback address)")
	pos, err := l.parse(args, "NAME", "URL")
	if err != nil {
		return err
	}
	shared, err := sharedSecret(l, *secret, *secretFile)
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewRotationServiceClient, rotationClient.RegisterFunction,
		&cofferv1.RegisterFunctionRequest{Name: pos[0], Url: pos[1], SharedSecret: shared, InsecureHttp: *insecure})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		f := resp.GetFunction()
		t.field("Name", f.GetName())
		t.field("ARN", f.GetArn())
		t.field("URL", f.GetUrl())
		t.field("Signed", formatBool(f.GetSigned()))
		if f.GetInsecureHttp() {
			t.field("InsecureHTTP", formatBool(true))
		}
	})
}

// sharedSecret is the signing secret --secret or --secret-file gives; one
// of them is required, as every request to a function is signed. A file's one trailing newline (as echo and
// editors leave) is not part of the secret.
func sharedSecret(l *leaf, flagValue, file string) (string, error) {
	switch {
	case l.given["secret"] && l.given["secret-file"]:
		return "", l.usageErrorf("give only one of --secret and --secret-file")
	case l.given["secret"]:
		if flagValue == "" {
			return "", l.usageErrorf("--secret must not be empty")
		}
		return flagValue, nil
	case l.given["secret-file"]:
		b, err := readFileArg(l, file)
		if err != nil {
			return "", fmt.Errorf("--secret-file: %w", err)
		}
		s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if s == "" {
			return "", l.usageErrorf("--secret-file %s is empty", file)
		}
		return s, nil
	}
	return "", l.usageErrorf("a shared secret is required (--secret-file F or --secret S): every request to the function is signed with it")
}

func runListFunctions(l *leaf, args []string) error {
	if _, err := l.parse(args); err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewRotationServiceClient, rotationClient.ListFunctions, &cofferv1.ListFunctionsRequest{})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.row("ARN", "URL", "SIGNED", "CREATED")
		for _, f := range resp.GetFunctions() {
			url, signed := f.GetUrl(), formatBool(f.GetSigned())
			if f.GetBuiltin() {
				url, signed = "(built in)", "-"
			}
			t.row(f.GetArn(), url, signed, formatTime(f.GetCreatedDate()))
		}
	})
}

func runDeregisterFunction(l *leaf, args []string) error {
	pos, err := l.parse(args, "NAME")
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewRotationServiceClient, rotationClient.DeregisterFunction, &cofferv1.DeregisterFunctionRequest{Name: pos[0]})
	if err != nil {
		return err
	}
	return l.print(resp, func(*table) {})
}
