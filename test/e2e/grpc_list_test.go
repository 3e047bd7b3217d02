package e2e

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// testListingTagsAndPolicies: listing, paging and batch reads over four
// secrets, then tags and resource policies on them.
func testListingTagsAndPolicies(t *testing.T, sm cofferv1.SecretsManagerServiceClient) {
	// Four secrets for listing and batch reads, created in this order.
	const lp = "e2e/list/"
	listed := []string{lp + "alpha", lp + "beta", lp + "gamma", lp + "delta"}
	listTags := map[string][]*cofferv1.Tag{
		lp + "alpha": {{Key: "env", Value: "prod"}},
		lp + "beta":  {{Key: "env", Value: "dev"}},
		lp + "gamma": {{Key: "team", Value: "x"}},
	}
	for _, name := range listed {
		must(sm.CreateSecret(t.Context(), &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: newToken(t),
			SecretString: ptr("value of " + name), Tags: listTags[name], Description: "listed " + name}))(t)
	}

	t.Run("ListSecrets filters and sorts", func(t *testing.T) {
		list := func(req *cofferv1.ListSecretsRequest) []string {
			t.Helper()
			resp := must(sm.ListSecrets(t.Context(), req))(t)
			if resp.GetNextToken() != "" {
				t.Errorf("ListSecrets(%v) has a next token with fewer than 100 secrets", req)
			}
			return names(resp.GetSecretList())
		}
		byName := &cofferv1.Filter{Key: "name", Values: []string{lp}}
		tests := []struct {
			name string
			req  *cofferv1.ListSecretsRequest
			want []string
		}{
			{"name prefix", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{byName}}, listed},
			{"name and tag-key", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{byName, {Key: "tag-key", Values: []string{"env"}}}},
				[]string{lp + "alpha", lp + "beta"}},
			{"negated name", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{{Key: "name", Values: []string{lp, "!" + lp + "b"}}}},
				[]string{lp + "alpha", lp + "gamma", lp + "delta"}},
			{"negated tag-key", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{byName, {Key: "tag-key", Values: []string{"!env"}}}},
				[]string{lp + "gamma", lp + "delta"}},
			{"all", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{{Key: "all", Values: []string{"PROD"}}, byName}},
				[]string{lp + "alpha"}},
			{"tag-value", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{{Key: "tag-value", Values: []string{"pro"}}, byName}},
				[]string{lp + "alpha"}},
			{"name descending", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{byName}, SortBy: "name", SortOrder: "desc"},
				[]string{lp + "gamma", lp + "delta", lp + "beta", lp + "alpha"}},
			{"name ascending", &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{byName}, SortBy: "name"},
				[]string{lp + "alpha", lp + "beta", lp + "delta", lp + "gamma"}},
		}
		for _, tt := range tests {
			if got := list(tt.req); !slices.Equal(got, tt.want) {
				t.Errorf("%s: ListSecrets = %v, want %v", tt.name, got, tt.want)
			}
		}
		resp := must(sm.ListSecrets(t.Context(), &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{{Key: "name", Values: []string{lp + "alpha"}}}}))(t)
		if len(resp.GetSecretList()) != 1 {
			t.Fatalf("ListSecrets of alpha = %v", names(resp.GetSecretList()))
		}
		e := resp.GetSecretList()[0]
		if !arnPattern(lp+"alpha").MatchString(e.GetArn()) || e.GetDescription() != "listed "+lp+"alpha" ||
			len(e.GetSecretVersionsToStages()) != 1 || e.GetCreatedDate() == nil || !maps.Equal(tagMap(e.GetTags()), map[string]string{"env": "prod"}) {
			t.Errorf("list entry = %v", e)
		}
	})

	t.Run("ListSecrets pages visit every secret once, in order", func(t *testing.T) {
		for _, order := range []struct{ by, order string }{{"", ""}, {"name", "desc"}, {"created-date", "desc"}, {"last-changed-date", "asc"}} {
			var visited []*cofferv1.SecretListEntry
			token := ""
			for pages := 0; ; pages++ {
				if pages > len(listed) {
					t.Fatalf("sort %v: more pages than secrets; visited %v", order, names(visited))
				}
				resp := must(sm.ListSecrets(t.Context(), &cofferv1.ListSecretsRequest{
					Filters: []*cofferv1.Filter{{Key: "name", Values: []string{lp}}}, MaxResults: ptr(int32(1)),
					NextToken: token, SortBy: order.by, SortOrder: order.order,
				}))(t)
				if len(resp.GetSecretList()) > 1 {
					t.Errorf("sort %v: page of %d secrets with max_results 1", order, len(resp.GetSecretList()))
				}
				visited = append(visited, resp.GetSecretList()...)
				if token = resp.GetNextToken(); token == "" {
					break
				}
			}
			if got := slices.Sorted(slices.Values(names(visited))); !slices.Equal(got, slices.Sorted(slices.Values(listed))) {
				t.Errorf("sort %v: visited %v, want each of %v once", order, names(visited), listed)
			}
			// Each page follows the one before in the sort order; names
			// break ties between equal dates (which have millisecond
			// resolution), in the same direction.
			key := func(e *cofferv1.SecretListEntry) string {
				switch order.by {
				case "name":
					return e.GetName()
				case "last-changed-date":
					return fmt.Sprintf("%020d %s", e.GetLastChangedDate().AsTime().UnixNano(), e.GetName())
				}
				// Fixed-width nanoseconds: RFC 3339 strings trim trailing
				// zeros and do not sort in time order.
				return fmt.Sprintf("%020d %s", e.GetCreatedDate().AsTime().UnixNano(), e.GetName())
			}
			for i := 1; i < len(visited); i++ {
				a, b := key(visited[i-1]), key(visited[i])
				if order.order == "desc" {
					a, b = b, a
				}
				if a > b {
					t.Errorf("sort %v: %s listed before %s", order, visited[i-1].GetName(), visited[i].GetName())
				}
			}
		}
	})

	t.Run("BatchGetSecretValue", func(t *testing.T) {
		ctx := t.Context()
		missing := lp + "missing"
		resp := must(sm.BatchGetSecretValue(ctx, &cofferv1.BatchGetSecretValueRequest{
			SecretIdList: []string{lp + "alpha", missing, lp + "beta"}}))(t)
		got := map[string]string{}
		for _, v := range resp.GetSecretValues() {
			got[v.GetName()] = v.GetSecretString()
			if v.GetVersionId() == "" || !slices.Equal(v.GetVersionStages(), []string{"AWSCURRENT"}) || !arnPattern(v.GetName()).MatchString(v.GetArn()) {
				t.Errorf("batch entry %v", v)
			}
		}
		want := map[string]string{lp + "alpha": "value of " + lp + "alpha", lp + "beta": "value of " + lp + "beta"}
		if !maps.Equal(got, want) {
			t.Errorf("batch values = %v, want %v", got, want)
		}
		if len(resp.GetErrors()) != 1 || resp.GetErrors()[0].GetSecretId() != missing ||
			resp.GetErrors()[0].GetErrorCode() != "ResourceNotFoundException" || resp.GetErrors()[0].GetMessage() == "" {
			t.Errorf("batch errors = %v, want one ResourceNotFoundException for %s", resp.GetErrors(), missing)
		}

		resp = must(sm.BatchGetSecretValue(ctx, &cofferv1.BatchGetSecretValueRequest{Filters: []*cofferv1.Filter{
			{Key: "name", Values: []string{lp}}, {Key: "tag-key", Values: []string{"env"}}}}))(t)
		got = map[string]string{}
		for _, v := range resp.GetSecretValues() {
			got[v.GetName()] = v.GetSecretString()
		}
		if !maps.Equal(got, want) || len(resp.GetErrors()) != 0 {
			t.Errorf("batch by filters = %v, errors %v; want %v", got, resp.GetErrors(), want)
		}
	})

	t.Run("TagResource and UntagResource", func(t *testing.T) {
		ctx := t.Context()
		id := lp + "gamma"
		must(sm.TagResource(ctx, &cofferv1.TagResourceRequest{SecretId: id, Tags: []*cofferv1.Tag{{Key: "team", Value: "y"}, {Key: "owner", Value: "alice"}}}))(t)
		d := must(sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: id}))(t)
		if got := tagMap(d.GetTags()); !maps.Equal(got, map[string]string{"team": "y", "owner": "alice"}) {
			t.Errorf("tags after TagResource = %v", got)
		}
		must(sm.UntagResource(ctx, &cofferv1.UntagResourceRequest{SecretId: id, TagKeys: []string{"team", "nope"}}))(t)
		d = must(sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: id}))(t)
		if got := tagMap(d.GetTags()); !maps.Equal(got, map[string]string{"owner": "alice"}) {
			t.Errorf("tags after UntagResource = %v", got)
		}
		_, err := sm.TagResource(ctx, &cofferv1.TagResourceRequest{SecretId: lp + "missing", Tags: []*cofferv1.Tag{{Key: "a", Value: "b"}}})
		wantType(t, err, "ResourceNotFoundException")
	})

	t.Run("resource policies", func(t *testing.T) {
		ctx := t.Context()
		id := lp + "delta"
		const doc = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/app"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`
		const public = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`

		got := must(sm.GetResourcePolicy(ctx, &cofferv1.GetResourcePolicyRequest{SecretId: id}))(t)
		if got.ResourcePolicy != nil || got.GetName() != id || !arnPattern(id).MatchString(got.GetArn()) {
			t.Errorf("GetResourcePolicy before any = %v, want no policy", got)
		}
		must(sm.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: id, ResourcePolicy: doc}))(t)
		if got := must(sm.GetResourcePolicy(ctx, &cofferv1.GetResourcePolicyRequest{SecretId: id}))(t); got.ResourcePolicy == nil || got.GetResourcePolicy() != doc {
			t.Errorf("GetResourcePolicy = %v, want %s", got.ResourcePolicy, doc)
		}

		_, err := sm.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: id, ResourcePolicy: `{"Version": "2012-10-17", "Statement": [`})
		wantType(t, err, "MalformedPolicyDocumentException")
		_, err = sm.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: id, ResourcePolicy: public, BlockPublicPolicy: ptr(true)})
		wantType(t, err, "PublicPolicyException")
		if got := must(sm.GetResourcePolicy(ctx, &cofferv1.GetResourcePolicyRequest{SecretId: id}))(t); got.GetResourcePolicy() != doc {
			t.Errorf("refused puts changed the policy to %q", got.GetResourcePolicy())
		}

		ok := must(sm.ValidateResourcePolicy(ctx, &cofferv1.ValidateResourcePolicyRequest{SecretId: id, ResourcePolicy: doc}))(t)
		if !ok.GetPolicyValidationPassed() || len(ok.GetValidationErrors()) != 0 {
			t.Errorf("ValidateResourcePolicy(valid) = %v", ok)
		}
		bad := must(sm.ValidateResourcePolicy(ctx, &cofferv1.ValidateResourcePolicyRequest{ResourcePolicy: `{"Version":"2012-10-17"`}))(t)
		if bad.GetPolicyValidationPassed() || len(bad.GetValidationErrors()) == 0 || bad.GetValidationErrors()[0].GetCheckName() != "SYNTAX_CHECK" {
			t.Errorf("ValidateResourcePolicy(malformed) = %v, want a SYNTAX_CHECK failure", bad)
		}
		pub := must(sm.ValidateResourcePolicy(ctx, &cofferv1.ValidateResourcePolicyRequest{ResourcePolicy: public}))(t)
		if pub.GetPolicyValidationPassed() || len(pub.GetValidationErrors()) != 1 || pub.GetValidationErrors()[0].GetCheckName() != "PUBLIC_ACCESS_CHECK" {
			t.Errorf("ValidateResourcePolicy(public) = %v, want one PUBLIC_ACCESS_CHECK failure", pub)
		}

		del := must(sm.DeleteResourcePolicy(ctx, &cofferv1.DeleteResourcePolicyRequest{SecretId: id}))(t)
		if del.GetName() != id {
			t.Errorf("DeleteResourcePolicy = %v", del)
		}
		if got := must(sm.GetResourcePolicy(ctx, &cofferv1.GetResourcePolicyRequest{SecretId: id}))(t); got.ResourcePolicy != nil {
			t.Errorf("policy after delete = %q", got.GetResourcePolicy())
		}
		must(sm.DeleteResourcePolicy(ctx, &cofferv1.DeleteResourcePolicyRequest{SecretId: id}))(t)
	})
}
