package server

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/policy"
)

// TestLeakedSessionCannotMintKeys (issue 13, item 8): temporary
// credentials — root's included — may read but not change IAM (no access
// key, principal, policy or attachment, no further session), so a leaked
// session cannot turn itself into a permanent key; only root manages root's
// keys, whatever a policy allows; and the root principal can be neither
// deleted nor given identity policies.
func TestLeakedSessionCannotMintKeys(t *testing.T) {
	s := startAuthzServer(t, false)
	ctx := t.Context()
	rootID, rootSecret, created, err := s.iam.BootstrapRoot(ctx, "", "", nil)
	if err != nil || !created {
		t.Fatalf("BootstrapRoot: %v (created %v)", err, created)
	}
	s.keys[RootPrincipal] = [3]string{rootID, rootSecret}
	s.secret(t, "app/db", "v1")

	sess, err := cofferv1.NewIAMServiceClient(s.conn(t, RootPrincipal)).GetSessionToken(ctx, &cofferv1.GetSessionTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	s.keys["root-session"] = [3]string{sess.GetAccessKeyId(), sess.GetSecretAccessKey(), sess.GetSessionToken()}
	iamSession := cofferv1.NewIAMServiceClient(s.conn(t, "root-session"))

	refused := map[string]func() error{
		"CreateAccessKey": func() error {
			_, err := iamSession.CreateAccessKey(ctx, &cofferv1.CreateAccessKeyRequest{Principal: RootPrincipal})
			return err
		},
		"DeleteAccessKey": func() error {
			_, err := iamSession.DeleteAccessKey(ctx, &cofferv1.DeleteAccessKeyRequest{AccessKeyId: rootID})
			return err
		},
		"CreatePrincipal": func() error {
			_, err := iamSession.CreatePrincipal(ctx, &cofferv1.CreatePrincipalRequest{Name: "backdoor"})
			return err
		},
		"PutPolicy": func() error {
			_, err := iamSession.PutPolicy(ctx, &cofferv1.PutPolicyRequest{Name: "all",
				Document: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`})
			return err
		},
		"AttachPolicy": func() error {
			_, err := iamSession.AttachPolicy(ctx, &cofferv1.AttachPolicyRequest{Principal: "someone", Policy: "all"})
			return err
		},
		"GetSessionToken": func() error {
			_, err := iamSession.GetSessionToken(ctx, &cofferv1.GetSessionTokenRequest{})
			return err
		},
	}
	for op, call := range refused {
		err := call()
		if status.Code(err) != codes.PermissionDenied || TypeOf(err) != TypeAccessDeniedException {
			t.Errorf("%s with root's session credentials: %v, want AccessDeniedException", op, err)
			continue
		}
		if want := "Cannot call " + op + " with session credentials"; status.Convert(err).Message() != want {
			t.Errorf("%s: message %q, want %q", op, status.Convert(err).Message(), want)
		}
	}
	if entries, _ := s.iam.state.Principals(); len(entries) != 1 || len(entries[0].AccessKeyIDs) != 1 {
		t.Fatalf("IAM changed through a session: %+v", entries)
	}
	// Reads, and the session's ordinary use, still work.
	if _, err := iamSession.ListPrincipals(ctx, &cofferv1.ListPrincipalsRequest{}); err != nil {
		t.Errorf("ListPrincipals with session credentials: %v", err)
	}
	if got, err := s.sm(t, "root-session").GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"}); err != nil || got.GetSecretString() != "v1" {
		t.Errorf("GetSecretValue with session credentials: %v", err)
	}

	// A principal allowed every IAM action still cannot touch root's keys.
	s.principal(t, "ops", nil, `{"Effect":"Allow","Action":["coffer:*","secretsmanager:*"],"Resource":"*"}`)
	iamOps := cofferv1.NewIAMServiceClient(s.conn(t, "ops"))
	_, err = iamOps.CreateAccessKey(ctx, &cofferv1.CreateAccessKeyRequest{Principal: RootPrincipal})
	wantRootOnly := "User: " + userARN("ops") + " is not authorized to perform: coffer:CreateAccessKey on resource: " + userARN(RootPrincipal) +
		" because only the root principal manages its access keys"
	if TypeOf(err) != TypeAccessDeniedException || status.Convert(err).Message() != wantRootOnly {
		t.Errorf("CreateAccessKey for root by ops: %v\nwant: %s", err, wantRootOnly)
	}
	if _, err := iamOps.DeleteAccessKey(ctx, &cofferv1.DeleteAccessKeyRequest{AccessKeyId: rootID}); TypeOf(err) != TypeAccessDeniedException {
		t.Errorf("DeleteAccessKey of root's key by ops: %v, want AccessDeniedException", err)
	}
	if _, err := iamOps.CreateAccessKey(ctx, &cofferv1.CreateAccessKeyRequest{Principal: "ops"}); err != nil {
		t.Errorf("CreateAccessKey for itself by ops: %v", err)
	}

	// Root cannot be deleted (not even by root) nor given policies.
	iamRoot := cofferv1.NewIAMServiceClient(s.conn(t, RootPrincipal))
	for _, caller := range []cofferv1.IAMServiceClient{iamRoot, iamOps} {
		if _, err := caller.DeletePrincipal(ctx, &cofferv1.DeletePrincipalRequest{Name: RootPrincipal}); TypeOf(err) != TypeInvalidParameter {
			t.Errorf("DeletePrincipal root: %v, want InvalidParameterException", err)
		}
	}
	if _, err := iamRoot.AttachPolicy(ctx, &cofferv1.AttachPolicyRequest{Principal: RootPrincipal, Policy: "ops-policy"}); TypeOf(err) != TypeInvalidParameter {
		t.Errorf("AttachPolicy to root: %v, want InvalidParameterException", err)
	}
	if _, err := iamRoot.ListPrincipals(ctx, &cofferv1.ListPrincipalsRequest{}); err != nil {
		t.Errorf("root after the refused deletions: %v", err)
	}

	// Decision: root is not subject to policies, a resource policy's
	// explicit Deny included (see docs/ARCHITECTURE.md, Access control).
	if _, err := s.svc.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: "app/db",
		ResourcePolicy: `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"secretsmanager:*","Resource":"*"}]}`}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.sm(t, RootPrincipal).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"}); err != nil {
		t.Errorf("root under a resource policy's Deny: %v", err)
	}
	if _, err := s.sm(t, "ops").GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"}); TypeOf(err) != TypeAccessDeniedException {
		t.Errorf("ops under a resource policy's Deny: %v, want AccessDeniedException", err)
	}
}

// TestSessionsCannotTouchRootEquivalentActions: the actions that change
// who holds the keys to the region — its seal, its pairings — are refused
// to session credentials like IAM changes, whatever the policies allow.
func TestSessionsCannotTouchRootEquivalentActions(t *testing.T) {
	svc, store := newTestService(t)
	a := NewIAM(svc, store).Authorizer()
	for _, action := range []string{"coffer:Rekey", "coffer:PairRegion", "coffer:SetPairingOptions", "coffer:CreateAccessKey"} {
		v, refused := a.identityRule(Caller{Principal: RootPrincipal, Session: true}, action, Target{})
		if !refused || v.Result.Decision != policy.ExplicitDeny {
			t.Errorf("%s with session credentials: refused %v (%+v), want an explicit deny", action, refused, v)
		}
		if _, refused := a.identityRule(Caller{Principal: RootPrincipal}, action, Target{}); refused {
			t.Errorf("%s with root's long-term key: refused by the identity rules", action)
		}
	}
}
