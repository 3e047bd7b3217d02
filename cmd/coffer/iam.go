package main

import (
	"strings"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

type iamClient = cofferv1.IAMServiceClient

func runIAMCreatePrincipal(l *leaf, args []string) error {
	desc := l.fs.String("description", "", "free-text description")
	pos, err := l.parse(args, "NAME")
	if err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewIAMServiceClient, iamClient.CreatePrincipal, &cofferv1.CreatePrincipalRequest{Name: pos[0], Description: *desc})
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
		t.row("PRINCIPAL", "ARN", "CREATED", "ACCESS KEYS")
		for _, p := range resp.GetPrincipals() {
			t.row(p.GetName(), p.GetArn(), formatTime(p.GetCreatedDate()), strings.Join(p.GetAccessKeyIds(), ","))
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
