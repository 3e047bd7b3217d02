package main

import (
	"fmt"
	"strings"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

type iamClient = cofferv1.IAMServiceClient

func runIAMCreatePrincipal(l *leaf, args []string) error {
	desc := l.fs.String("description", "", "free-text description")
	var tags stringsFlag
	l.fs.Var(&tags, "tag", "principal tag (aws:PrincipalTag/KEY in conditions), as `KEY=VALUE`; repeatable")
	pos, err := l.parse(args, "NAME")
	if err != nil {
		return err
	}
	tagList, err := parseTags(tags)
	if err != nil {
		return l.usageErrorf("%v", err)
	}
	var tagMap map[string]string
	for _, t := range tagList {
		if tagMap == nil {
			tagMap = map[string]string{}
		}
		tagMap[t.GetKey()] = t.GetValue()
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.CreatePrincipal, &cofferv1.CreatePrincipalRequest{Name: pos[0], Description: *desc, Tags: tagMap})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.row("Name", resp.GetPrincipal().GetName())
		t.row("ARN", resp.GetPrincipal().GetArn())
	})
}

func runIAMCreateAccessKey(l *leaf, args []string) error {
	pos, err := l.parse(args, "PRINCIPAL")
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.CreateAccessKey, &cofferv1.CreateAccessKeyRequest{Principal: pos[0]})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.row("Principal", resp.GetPrincipal())
		t.row("AccessKeyId", resp.GetAccessKeyId())
		t.row("SecretAccessKey", resp.GetSecretAccessKey())
		t.row("", "(shown only now: Coffer cannot show this secret again)")
	})
}

func runIAMList(l *leaf, args []string) error {
	if _, err := l.parse(args); err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.ListPrincipals, &cofferv1.ListPrincipalsRequest{})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.row("PRINCIPAL", "ARN", "CREATED", "ACCESS KEYS", "POLICIES")
		for _, p := range resp.GetPrincipals() {
			t.row(p.GetName(), p.GetArn(), formatTime(p.GetCreatedDate()), strings.Join(p.GetAccessKeyIds(), ","),
				strings.Join(p.GetAttachedPolicies(), ","))
		}
	})
}

// runIAMDelete deletes a principal (with its keys), or an access key when
// the argument is an access key id.
func runIAMDelete(l *leaf, args []string) error {
	key := l.fs.Bool("access-key", false, "the argument is an access key id, not a principal")
	pos, err := l.parse(args, "NAME_OR_KEY_ID")
	if err != nil {
		return err
	}
	if *key {
		resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.DeleteAccessKey, &cofferv1.DeleteAccessKeyRequest{AccessKeyId: pos[0]})
		if err != nil {
			return err
		}
		return l.printLine(resp, "deleted access key "+cell(pos[0]))
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.DeletePrincipal, &cofferv1.DeletePrincipalRequest{Name: pos[0]})
	if err != nil {
		return err
	}
	return l.printLine(resp, "deleted principal "+cell(pos[0])+" and its access keys")
}

func runIAMPutPolicy(l *leaf, args []string) error {
	var doc policyFlags
	doc.register(l)
	desc := l.fs.String("description", "", "free-text description")
	pos, err := l.parse(args, "NAME")
	if err != nil {
		return err
	}
	text, err := doc.read(l)
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.PutPolicy, &cofferv1.PutPolicyRequest{Name: pos[0], Document: text, Description: *desc})
	if err != nil {
		return err
	}
	l.warn(resp.GetWarnings())
	return l.print(resp, func(t *table) {
		t.field("Name", resp.GetPolicy().GetName())
		t.field("ARN", resp.GetPolicy().GetArn())
		t.field("Updated", formatTime(resp.GetPolicy().GetUpdatedDate()))
	})
}

func runIAMGetPolicy(l *leaf, args []string) error {
	pos, err := l.parse(args, "NAME")
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.GetPolicy, &cofferv1.GetPolicyRequest{Name: pos[0]})
	if err != nil {
		return err
	}
	p := resp.GetPolicy()
	return l.print(resp, func(t *table) {
		t.field("Name", p.GetName())
		t.field("ARN", p.GetArn())
		t.field("Description", p.GetDescription())
		t.field("AttachedTo", strings.Join(p.GetAttachedTo(), ","))
		t.field("Document", compactJSON(p.GetDocument()))
	})
}

func runIAMListPolicies(l *leaf, args []string) error {
	if _, err := l.parse(args); err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.ListPolicies, &cofferv1.ListPoliciesRequest{})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.row("POLICY", "ARN", "UPDATED", "ATTACHED TO")
		for _, p := range resp.GetPolicies() {
			t.row(p.GetName(), p.GetArn(), formatTime(p.GetUpdatedDate()), strings.Join(p.GetAttachedTo(), ","))
		}
	})
}

func runIAMDeletePolicy(l *leaf, args []string) error {
	pos, err := l.parse(args, "NAME")
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.DeletePolicy, &cofferv1.DeletePolicyRequest{Name: pos[0]})
	if err != nil {
		return err
	}
	return l.printLine(resp, "deleted policy "+cell(pos[0]))
}

func runIAMAttach(l *leaf, args []string) error {
	pos, err := l.parse(args, "PRINCIPAL", "POLICY")
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.AttachPolicy, &cofferv1.AttachPolicyRequest{Principal: pos[0], Policy: pos[1]})
	if err != nil {
		return err
	}
	return l.printLine(resp, "attached policy "+cell(pos[1])+" to "+cell(pos[0]))
}

func runIAMDetach(l *leaf, args []string) error {
	pos, err := l.parse(args, "PRINCIPAL", "POLICY")
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.DetachPolicy, &cofferv1.DetachPolicyRequest{Principal: pos[0], Policy: pos[1]})
	if err != nil {
		return err
	}
	return l.printLine(resp, "detached policy "+cell(pos[1])+" from "+cell(pos[0]))
}

func runIAMSimulate(l *leaf, args []string) error {
	var keys stringsFlag
	l.fs.Var(&keys, "context", "condition key, as `KEY=VALUE` (such as aws:SourceIp=10.0.0.1); repeatable")
	pos, err := l.parse(args, "PRINCIPAL", "ACTION", "RESOURCE")
	if err != nil {
		return err
	}
	req := &cofferv1.SimulatePolicyRequest{Principal: pos[0], Action: pos[1], Resource: pos[2]}
	for _, kv := range keys {
		k, v, err := splitPair(kv, "--context")
		if err != nil {
			return l.usageErrorf("%v", err)
		}
		if req.Context == nil {
			req.Context = map[string]string{}
		}
		req.Context[k] = v
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.SimulatePolicy, req)
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("Decision", resp.GetDecision())
		t.field("Resource", resp.GetResource())
		if resp.GetMatchedPolicy() != "" {
			t.field("Policy", resp.GetMatchedPolicy())
			t.field("Statement", resp.GetMatchedStatement())
		} else {
			t.field("Statement", "(none matched: implicit deny)")
		}
	})
}

func runIAMSessionToken(l *leaf, args []string) error {
	duration := l.fs.Duration("duration", 0, "how long the credentials last, such as 1h (default: the server's, one hour)")
	env := l.fs.Bool("env", false, "print shell export lines for the aws CLI, AWS SDKs and coffer")
	if _, err := l.parse(args); err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.GetSessionToken,
		&cofferv1.GetSessionTokenRequest{DurationSeconds: int32(duration.Seconds())})
	if err != nil {
		return err
	}
	if *env && l.inv.opts.output != outputJSON {
		for _, kv := range [][2]string{
			{"AWS_ACCESS_KEY_ID", resp.GetAccessKeyId()}, {"AWS_SECRET_ACCESS_KEY", resp.GetSecretAccessKey()},
			{"AWS_SESSION_TOKEN", resp.GetSessionToken()}, {"COFFER_ACCESS_KEY_ID", resp.GetAccessKeyId()},
			{"COFFER_SECRET_ACCESS_KEY", resp.GetSecretAccessKey()}, {"COFFER_SESSION_TOKEN", resp.GetSessionToken()},
		} {
			fmt.Fprintf(l.inv.stdout, "export %s='%s'\n", kv[0], kv[1])
		}
		fmt.Fprintf(l.inv.stdout, "# expires %s\n", formatTime(resp.GetExpiration()))
		return nil
	}
	return l.print(resp, func(t *table) {
		t.field("AccessKeyId", resp.GetAccessKeyId())
		t.field("SecretAccessKey", resp.GetSecretAccessKey())
		t.field("SessionToken", resp.GetSessionToken())
		t.field("Expiration", formatTime(resp.GetExpiration()))
	})
}

func runIAMWhoami(l *leaf, args []string) error {
	if _, err := l.parse(args); err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.GetCallerIdentity, &cofferv1.GetCallerIdentityRequest{})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("Principal", resp.GetPrincipal())
		t.field("ARN", resp.GetArn())
		t.field("Account", resp.GetAccount())
		t.field("AccessKeyId", resp.GetAccessKeyId())
	})
}
