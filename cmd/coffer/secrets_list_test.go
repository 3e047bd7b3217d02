package main

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// listPages serves pages[token] for each request's next_token.
func listPages(f *fakeServer, pages map[string]*cofferv1.ListSecretsResponse) {
	f.on("ListSecrets", func(_ context.Context, req proto.Message) (proto.Message, error) {
		return pages[req.(*cofferv1.ListSecretsRequest).GetNextToken()], nil
	})
}

func TestListFollowsPagesAndSendsFilters(t *testing.T) {
	f, addr := startFake(t)
	listPages(f, map[string]*cofferv1.ListSecretsResponse{
		"": {NextToken: "p2", SecretList: []*cofferv1.SecretListEntry{
			{Name: "prod/api", Arn: "arn:api", LastChangedDate: changed, Tags: []*cofferv1.Tag{{Key: "env", Value: "prod"}}},
		}},
		"p2": {NextToken: "p3", SecretList: []*cofferv1.SecretListEntry{
			{Name: "prod/db", Arn: "arn:db", Description: "has\ttab"},
		}},
		"p3": {SecretList: []*cofferv1.SecretListEntry{
			{Name: "prod/queue", Arn: "arn:queue", LastChangedDate: created, Tags: []*cofferv1.Tag{{Key: "a"}, {Key: "b"}}},
		}},
	})

	r := runCLI(t, "", "--endpoint", addr, "secrets", "list",
		"--filter", "name=prod/", "--filter", "tag-key=env", "--filter", "name=!prod/legacy",
		"--sort-by", "name", "--sort-order", "desc", "--page-size", "1")
	mustSucceed(t, r)
	want := `NAME        ARN        LAST CHANGED          TAGS
prod/api    arn:api    2026-03-02T07:30:00Z  1
prod/db     arn:db     -                     0
prod/queue  arn:queue  2026-03-01T12:00:00Z  2
`
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	calls := f.received()
	if len(calls) != 3 {
		t.Fatalf("server received %v; want 3 ListSecrets calls", methods(calls))
	}
	for i, token := range []string{"", "p2", "p3"} {
		wantProto(t, calls[i].req, &cofferv1.ListSecretsRequest{
			Filters: []*cofferv1.Filter{
				{Key: "name", Values: []string{"prod/", "!prod/legacy"}},
				{Key: "tag-key", Values: []string{"env"}},
			},
			SortBy:     "name",
			SortOrder:  "desc",
			MaxResults: proto.Int32(1),
			NextToken:  token,
		})
	}

	r = runCLI(t, "", "--endpoint", addr, "-o", "json", "secrets", "list")
	mustSucceed(t, r)
	wantJSON := `{
  "secretList": [
    {
      "arn": "arn:api",
      "name": "prod/api",
      "lastChangedDate": "2026-03-02T07:30:00Z",
      "tags": [
        {
          "key": "env",
          "value": "prod"
        }
      ]
    },
    {
      "arn": "arn:db",
      "name": "prod/db",
      "description": "has\ttab"
    },
    {
      "arn": "arn:queue",
      "name": "prod/queue",
      "lastChangedDate": "2026-03-01T12:00:00Z",
      "tags": [
        {
          "key": "a"
        },
        {
          "key": "b"
        }
      ]
    }
  ]
}
`
	if r.stdout != wantJSON {
		t.Errorf("json stdout:\n%s\nwant:\n%s", r.stdout, wantJSON)
	}
	if req := f.received()[3].req.(*cofferv1.ListSecretsRequest); req.MaxResults != nil || req.Filters != nil || req.SortBy != "" || req.IncludePlannedDeletion {
		t.Errorf("list without flags sent %v; want an empty request", req)
	}
}

func TestListIncludeDeletedShowsDeletionDate(t *testing.T) {
	f, addr := startFake(t)
	listPages(f, map[string]*cofferv1.ListSecretsResponse{"": {SecretList: []*cofferv1.SecretListEntry{
		{Name: "old", Arn: "arn:old", DeletedDate: created},
	}}})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "list", "--include-deleted")
	mustSucceed(t, r)
	want := "NAME  ARN      LAST CHANGED  TAGS  DELETED\nold   arn:old  -             0     2026-03-01T12:00:00Z\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	if !onlyRequest[*cofferv1.ListSecretsRequest](t, f, "ListSecrets").GetIncludePlannedDeletion() {
		t.Error("include_planned_deletion not sent")
	}
}

func TestListStopsOnRepeatedToken(t *testing.T) {
	f, addr := startFake(t)
	listPages(f, map[string]*cofferv1.ListSecretsResponse{"": {NextToken: "again"}, "again": {NextToken: "again"}})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "list")
	if r.code != exitFailure || r.stderr != "coffer: server repeated next_token \"again\"; stopping\n" {
		t.Errorf("exit %d, stderr %q; want 1 and the loop reported", r.code, r.stderr)
	}
}

func TestListErrorMidwayFails(t *testing.T) {
	f, addr := startFake(t)
	f.on("ListSecrets", func(_ context.Context, req proto.Message) (proto.Message, error) {
		if req.(*cofferv1.ListSecretsRequest).GetNextToken() == "" {
			return &cofferv1.ListSecretsResponse{NextToken: "t", SecretList: []*cofferv1.SecretListEntry{{Name: "a"}}}, nil
		}
		return nil, statusWithReason(codes.InvalidArgument, "InvalidNextTokenException", "token expired")
	})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "list")
	if r.code != exitRejected || r.stderr != "coffer: InvalidNextTokenException: token expired\n" || r.stdout != "" {
		t.Errorf("exit %d, stderr %q, stdout %q; want 5, the error, and no partial list", r.code, r.stderr, r.stdout)
	}
}
