package health

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func serve(s *Server, method, target string) (int, string) {
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Code, rec.Body.String()
}

// TestReadyz: the short answer, ?verbose, ?exclude (repeated and
// comma-separated), and an unknown exclusion warned about.
func TestReadyz(t *testing.T) {
	failing := "no leader known"
	s := &Server{Checks: []Check{
		{Name: "started", Run: func() string { return "" }},
		{Name: "leader", Run: func() string { return failing }},
		{Name: "audit", Run: func() string { return "" }},
	}}
	for _, c := range []struct {
		target string
		code   int
		body   string
	}{
		{"/readyz", 503, "[-]leader failed: no leader known\nreadyz check failed\n"},
		{"/readyz?verbose", 503, "[+]started ok\n[-]leader failed: no leader known\n[+]audit ok\nreadyz check failed\n"},
		{"/readyz?exclude=leader", 200, "ok\n"},
		{"/readyz?verbose&exclude=leader,audit&exclude=x", 200, "[+]started ok\n[+]leader excluded: ok\n[+]audit excluded: ok\nwarn: some health checks cannot be excluded: no matches for \"x\"\nreadyz check passed\n"},
		{"/livez", 200, "ok\n"},
	} {
		code, body := serve(s, http.MethodGet, c.target)
		if code != c.code || body != c.body {
			t.Errorf("%s: %d %q, want %d %q", c.target, code, body, c.code, c.body)
		}
	}
	failing = ""
	if code, body := serve(s, http.MethodGet, "/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("all passing: %d %q", code, body)
	}
	if code, _ := serve(s, http.MethodPost, "/readyz"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", code)
	}
}

// TestSysHealth: Vault's codes per role, their overrides, standbyok, HEAD.
func TestSysHealth(t *testing.T) {
	role := Leader
	s := &Server{Status: func() Status { return Status{Role: role, Region: "us-east-1", NodeID: "n1"} }}
	for _, c := range []struct {
		role  Role
		query string
		code  int
	}{
		{Leader, "", 200}, {Leader, "?activecode=204", 204},
		{Follower, "", 429}, {Follower, "?standbyok=true", 200}, {Follower, "?standbycode=200", 200},
		{ReplicaRegion, "", 472}, {ReplicaRegion, "?drsecondarycode=200", 200},
		{LeaderlessFollower, "", 474}, {LeaderlessFollower, "?haunhealthycode=503", 503},
		{Unavailable, "", 503}, {Unavailable, "?sealedcode=500", 500}, {Unavailable, "?sealedcode=abc", 503},
	} {
		role = c.role
		code, body := serve(s, http.MethodGet, SysHealthPath+c.query)
		if code != c.code || !strings.Contains(body, `"region":"us-east-1"`) {
			t.Errorf("role %d %s: %d %s, want %d", c.role, c.query, code, body, c.code)
		}
	}
	role = Follower
	if code, body := serve(s, http.MethodHead, SysHealthPath); code != 429 || body != "" {
		t.Errorf("HEAD: %d %q", code, body)
	}
}
