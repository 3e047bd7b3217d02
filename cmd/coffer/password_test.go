package main

import (
	"testing"

	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func TestRandomPassword(t *testing.T) {
	tests := []struct {
		name  string
		flags []string
		want  *cofferv1.GetRandomPasswordRequest
	}{
		{"defaults", nil, &cofferv1.GetRandomPasswordRequest{}},
		{"everything", []string{
			"--length", "12", "--exclude-characters", "lI1O0", "--exclude-numbers", "--exclude-punctuation",
			"--exclude-uppercase", "--exclude-lowercase", "--include-space", "--require-each-included-type=false",
		}, &cofferv1.GetRandomPasswordRequest{
			PasswordLength:          proto.Int64(12),
			ExcludeCharacters:       "lI1O0",
			ExcludeNumbers:          true,
			ExcludePunctuation:      true,
			ExcludeUppercase:        true,
			ExcludeLowercase:        true,
			IncludeSpace:            true,
			RequireEachIncludedType: proto.Bool(false),
		}},
		{"require each, explicitly", []string{"--require-each-included-type"},
			&cofferv1.GetRandomPasswordRequest{RequireEachIncludedType: proto.Bool(true)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, addr := startFake(t)
			f.respond("GetRandomPassword", &cofferv1.GetRandomPasswordResponse{RandomPassword: "s3cr3t P@ss"})
			r := runCLI(t, "", append([]string{"--endpoint", addr, "secrets", "random-password"}, tt.flags...)...)
			mustSucceed(t, r)
			if r.stdout != "s3cr3t P@ss\n" {
				t.Errorf("stdout %q; want the password and a newline", r.stdout)
			}
			wantProto(t, onlyRequest[*cofferv1.GetRandomPasswordRequest](t, f, "GetRandomPassword"), tt.want)
		})
	}
}

func TestRandomPasswordJSON(t *testing.T) {
	f, addr := startFake(t)
	f.respond("GetRandomPassword", &cofferv1.GetRandomPasswordResponse{RandomPassword: "pw"})
	r := runCLI(t, "", "--endpoint", addr, "-o", "json", "secrets", "random-password")
	mustSucceed(t, r)
	if want := "{\n  \"randomPassword\": \"pw\"\n}\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}
}
