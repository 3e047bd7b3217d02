// Package compat holds the AWS compatibility tests: a real cofferd process
// driven by the tools people already use — the aws CLI (the one on PATH and
// Debian's awscli), aws-sdk-go-v2 — with only the endpoint changed, plus
// SigV4 rejection cases. It owns no product code and must never weaken an
// assertion to match a difference from AWS: a difference is a bug to fix.
package compat
