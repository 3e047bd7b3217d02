package main

import (
	"fmt"
	"strings"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// The role commands of `coffer iam`: roles, their trust policies and
// attached policies, and assume-role.

func runIAMCreateRole(l *leaf, args []string) error {
	var doc policyFlags
	doc.register(l)
	desc := l.fs.String("description", "", "free-text description")
	maxSession := l.fs.Duration("max-session-duration", 0, "longest session the role grants, 1h–12h (default 1h)")
	pos, err := l.parse(args, "NAME")
	if err != nil {
		return err
	}
	text, err := doc.read(l)
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.CreateRole, &cofferv1.CreateRoleRequest{Name: pos[0],
		AssumeRolePolicyDocument: text, Description: *desc, MaxSessionDurationSeconds: int32(maxSession.Seconds())})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("Name", resp.GetRole().GetName())
		t.field("ARN", resp.GetRole().GetArn())
		t.field("RoleId", resp.GetRole().GetRoleId())
	})
}

func runIAMPutTrustPolicy(l *leaf, args []string) error {
	var doc policyFlags
	doc.register(l)
	pos, err := l.parse(args, "ROLE")
	if err != nil {
		return err
	}
	text, err := doc.read(l)
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.UpdateAssumeRolePolicy,
		&cofferv1.UpdateAssumeRolePolicyRequest{RoleName: pos[0], PolicyDocument: text})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) { t.field("Role", pos[0]); t.field("TrustPolicy", "updated") })
}

func runIAMGetRole(l *leaf, args []string) error {
	pos, err := l.parse(args, "NAME")
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.GetRole, &cofferv1.GetRoleRequest{Name: pos[0]})
	if err != nil {
		return err
	}
	r := resp.GetRole()
	return l.print(resp, func(t *table) {
		t.field("Name", r.GetName())
		t.field("ARN", r.GetArn())
		t.field("RoleId", r.GetRoleId())
		t.field("Description", r.GetDescription())
		t.field("MaxSessionDuration", fmt.Sprintf("%ds", r.GetMaxSessionDurationSeconds()))
		t.field("Policies", strings.Join(r.GetAttachedPolicies(), ","))
		t.field("TrustPolicy", compactJSON(r.GetAssumeRolePolicyDocument()))
	})
}

func runIAMListRoles(l *leaf, args []string) error {
	if _, err := l.parse(args); err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.ListRoles, &cofferv1.ListRolesRequest{})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.row("ROLE", "ARN", "CREATED", "POLICIES")
		for _, r := range resp.GetRoles() {
			t.row(r.GetName(), r.GetArn(), formatTime(r.GetCreatedDate()), strings.Join(r.GetAttachedPolicies(), ","))
		}
	})
}

func runIAMDeleteRole(l *leaf, args []string) error {
	pos, err := l.parse(args, "NAME")
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.DeleteRole, &cofferv1.DeleteRoleRequest{Name: pos[0]})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) { t.field("Deleted", pos[0]) })
}

func runIAMAttachRole(l *leaf, args []string) error {
	pos, err := l.parse(args, "ROLE", "POLICY")
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.AttachRolePolicy, &cofferv1.AttachRolePolicyRequest{RoleName: pos[0], Policy: pos[1]})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) { t.field("Attached", pos[1]+" to role "+pos[0]) })
}

func runIAMDetachRole(l *leaf, args []string) error {
	pos, err := l.parse(args, "ROLE", "POLICY")
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.DetachRolePolicy, &cofferv1.DetachRolePolicyRequest{RoleName: pos[0], Policy: pos[1]})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) { t.field("Detached", pos[1]+" from role "+pos[0]) })
}

func runIAMAssumeRole(l *leaf, args []string) error {
	duration := l.fs.Duration("duration", 0, "how long the credentials last, 15m up to the role's maximum (default 1h)")
	env := l.fs.Bool("env", false, "print shell export lines for the aws CLI, AWS SDKs and coffer")
	pos, err := l.parse(args, "ROLE_ARN", "SESSION_NAME")
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.AssumeRole,
		&cofferv1.AssumeRoleRequest{RoleArn: pos[0], RoleSessionName: pos[1], DurationSeconds: int32(duration.Seconds())})
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
		fmt.Fprintf(l.inv.stdout, "# %s, expires %s\n", resp.GetAssumedRoleArn(), formatTime(resp.GetExpiration()))
		return nil
	}
	return l.print(resp, func(t *table) {
		t.field("AssumedRoleArn", resp.GetAssumedRoleArn())
		t.field("AccessKeyId", resp.GetAccessKeyId())
		t.field("SecretAccessKey", resp.GetSecretAccessKey())
		t.field("SessionToken", resp.GetSessionToken())
		t.field("Expiration", formatTime(resp.GetExpiration()))
	})
}
