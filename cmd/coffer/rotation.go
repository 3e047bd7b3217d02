package main

import (
	"fmt"

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
	secret := l.fs.String("secret", "", "shared secret: each request carries X-Coffer-Signature: sha256=HEX(HMAC-SHA256(secret, body))")
	pos, err := l.parse(args, "NAME", "URL")
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewRotationServiceClient, rotationClient.RegisterFunction,
		&cofferv1.RegisterFunctionRequest{Name: pos[0], Url: pos[1], SharedSecret: *secret})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		f := resp.GetFunction()
		t.field("Name", f.GetName())
		t.field("ARN", f.GetArn())
		t.field("URL", f.GetUrl())
		t.field("Signed", formatBool(f.GetSigned()))
	})
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
