package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// policyFlags are the two mutually exclusive ways to give a policy document.
type policyFlags struct {
	file   string
	inline string
}

func (p *policyFlags) register(l *leaf) {
	l.fs.StringVar(&p.file, "file", "", "read the policy document from `FILE` (- for stdin)")
	l.fs.StringVar(&p.inline, "policy", "", "the policy document, as `JSON`")
}

// read returns the policy document; exactly one of the flags must be given.
func (p *policyFlags) read(l *leaf) (string, error) {
	switch {
	case l.given["file"] && l.given["policy"]:
		return "", l.usageErrorf("give --file or --policy, not both")
	case l.given["policy"]:
		return p.inline, nil
	case l.given["file"]:
		b, err := readFileArg(l, p.file)
		if err != nil {
			return "", fmt.Errorf("--file: %w", err)
		}
		if !utf8.Valid(b) {
			return "", l.usageErrorf("--file %s is not UTF-8 text", p.file)
		}
		return string(b), nil
	}
	return "", l.usageErrorf("a policy is required: give --file or --policy")
}

func runPolicyGet(l *leaf, args []string) error {
	pos, err := l.parse(args, "ID")
	if err != nil {
		return err
	}
	resp, err := call(l, client.GetResourcePolicy, &cofferv1.GetResourcePolicyRequest{SecretId: pos[0]})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("ARN", resp.GetArn())
		t.field("Name", resp.GetName())
		if resp.ResourcePolicy == nil {
			t.field("ResourcePolicy", "(none)")
		} else {
			t.field("ResourcePolicy", compactJSON(resp.GetResourcePolicy()))
		}
	})
}

// compactJSON puts a JSON document on one line so it fits a table cell; text
// that is not JSON is returned as it is.
func compactJSON(s string) string {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		return s
	}
	return b.String()
}

func runPolicyPut(l *leaf, args []string) error {
	var policy policyFlags
	policy.register(l)
	block := l.fs.Bool("block-public-policy", false, "refuse a policy that grants broad access (off by default, as in AWS)")
	pos, err := l.parse(args, "ID")
	if err != nil {
		return err
	}
	doc, err := policy.read(l)
	if err != nil {
		return err
	}
	req := &cofferv1.PutResourcePolicyRequest{SecretId: pos[0], ResourcePolicy: doc}
	if l.given["block-public-policy"] {
		req.BlockPublicPolicy = block
	}
	resp, err := call(l, client.PutResourcePolicy, req)
	if err != nil {
		return err
	}
	l.warn(resp.GetWarnings())
	return l.print(resp, func(t *table) {
		t.field("ARN", resp.GetArn())
		t.field("Name", resp.GetName())
	})
}

func runPolicyDelete(l *leaf, args []string) error {
	pos, err := l.parse(args, "ID")
	if err != nil {
		return err
	}
	resp, err := call(l, client.DeleteResourcePolicy, &cofferv1.DeleteResourcePolicyRequest{SecretId: pos[0]})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("ARN", resp.GetArn())
		t.field("Name", resp.GetName())
	})
}

// runPolicyValidate prints the result of the checks and, so that
// "coffer secrets policy validate --file p.json && deploy" works, exits
// exitRejected when the policy fails them.
func runPolicyValidate(l *leaf, args []string) error {
	var policy policyFlags
	policy.register(l)
	pos, err := l.parse(args, "[ID]")
	if err != nil {
		return err
	}
	doc, err := policy.read(l)
	if err != nil {
		return err
	}
	req := &cofferv1.ValidateResourcePolicyRequest{ResourcePolicy: doc}
	if len(pos) > 0 {
		req.SecretId = pos[0]
	}
	resp, err := call(l, client.ValidateResourcePolicy, req)
	if err != nil {
		return err
	}
	err = l.print(resp, func(t *table) {
		t.field("PolicyValidationPassed", formatBool(resp.GetPolicyValidationPassed()))
		lines := make([]string, len(resp.GetValidationErrors()))
		for i, e := range resp.GetValidationErrors() {
			lines[i] = e.GetCheckName() + ": " + e.GetErrorMessage()
		}
		t.fieldLines("ValidationErrors", lines)
	})
	if err != nil {
		return err
	}
	if !resp.GetPolicyValidationPassed() {
		return &exitError{code: exitRejected, msg: fmt.Sprintf("policy failed validation (%d problems)", len(resp.GetValidationErrors()))}
	}
	return nil
}

// warn prints the server's warnings about a stored policy on stderr, one
// line each, so that they are seen whatever the output format.
func (l *leaf) warn(warnings []string) {
	for _, w := range warnings {
		fmt.Fprintf(l.inv.stderr, "coffer: warning: %s\n", w)
	}
}
