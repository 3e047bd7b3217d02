package policy

import "testing"

func TestTrusts(t *testing.T) {
	const acct = "123456789012"
	user := "arn:aws:iam::" + acct + ":user/app"
	oidc := "arn:aws:iam::" + acct + ":oidc-provider/issuer.example/k8s"
	mustParse := func(doc string) *Document {
		d, err := ParseResource(doc)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	keys := func(kv ...string) Keys {
		k := Keys{}
		for i := 0; i+1 < len(kv); i += 2 {
			k.Set(kv[i], kv[i+1])
		}
		return k
	}
	for _, c := range []struct {
		name string
		doc  string
		req  Request
		want Decision
	}{
		{"names the user", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"` + user + `"},"Action":"sts:AssumeRole"}]}`,
			Request{Principal: user, Account: acct, Action: "sts:AssumeRole"}, Allowed},
		{"names the account: trusts it (the identity half is decided apart)", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + acct + `:root"},"Action":"sts:AssumeRole"}]}`,
			Request{Principal: user, Account: acct, Action: "sts:AssumeRole"}, Allowed},
		{"another user", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + acct + `:user/other"},"Action":"sts:AssumeRole"}]}`,
			Request{Principal: user, Account: acct, Action: "sts:AssumeRole"}, ImplicitDeny},
		{"another action", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"` + user + `"},"Action":"sts:TagSession"}]}`,
			Request{Principal: user, Account: acct, Action: "sts:AssumeRole"}, ImplicitDeny},
		{"deny wins", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"},{"Effect":"Deny","Principal":{"AWS":"` + user + `"},"Action":"*"}]}`,
			Request{Principal: user, Account: acct, Action: "sts:AssumeRole"}, ExplicitDeny},
		{"an AWS principal never matches a web identity", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + acct + `:root"},"Action":"sts:AssumeRoleWithWebIdentity"}]}`,
			Request{Federated: oidc, Account: acct, Action: "sts:AssumeRoleWithWebIdentity"}, ImplicitDeny},
		{"federated with its conditions", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"` + oidc + `"},"Action":"sts:AssumeRoleWithWebIdentity",
			"Condition":{"StringEquals":{"issuer.example/k8s:sub":"system:serviceaccount:a:b","issuer.example/k8s:aud":"coffer"}}}]}`,
			Request{Federated: oidc, Account: acct, Action: "sts:AssumeRoleWithWebIdentity",
				Keys: keys("issuer.example/k8s:sub", "system:serviceaccount:a:b", "issuer.example/k8s:aud", "coffer")}, Allowed},
		{"federated, another subject", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"` + oidc + `"},"Action":"sts:AssumeRoleWithWebIdentity",
			"Condition":{"StringEquals":{"issuer.example/k8s:sub":"system:serviceaccount:a:b"}}}]}`,
			Request{Federated: oidc, Account: acct, Action: "sts:AssumeRoleWithWebIdentity",
				Keys: keys("issuer.example/k8s:sub", "system:serviceaccount:x:y")}, ImplicitDeny},
		{"federated, another provider", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"` + oidc + `"},"Action":"sts:AssumeRoleWithWebIdentity"}]}`,
			Request{Federated: oidc + "2", Account: acct, Action: "sts:AssumeRoleWithWebIdentity"}, ImplicitDeny},
		{"NotPrincipal spares only whom it lists", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"},{"Effect":"Deny","NotPrincipal":{"Federated":"` + oidc + `"},"Action":"*"}]}`,
			Request{Principal: user, Account: acct, Action: "sts:AssumeRole"}, ExplicitDeny},
	} {
		if got := Trusts(c.req, Named{Name: "trust", Doc: mustParse(c.doc)}).Decision; got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
