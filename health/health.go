package health

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Check is one readiness check. Run returns "" when it passes, else a fixed
// reason safe to show anyone (it is served without authentication).
type Check struct {
	Name string
	Run  func() (reason string)
}

// Paths the handlers serve.
const (
	LivezPath     = "/livez"
	ReadyzPath    = "/readyz"
	SysHealthPath = "/v1/sys/health"
)

// Role is what a node can do for a load balancer, for /v1/sys/health.
type Role int

// Roles, in the order /v1/sys/health tests them.
const (
	// Unavailable: the node cannot serve (starting, fenced, audit log
	// broken, stopping). 503.
	Unavailable Role = iota
	// LeaderlessFollower: a follower that knows no leader. 474.
	LeaderlessFollower
	// ReplicaRegion: a node of a region whose secrets are all replicas of
	// another region's (it serves reads; writes go to the primary). 472.
	ReplicaRegion
	// Follower: a healthy follower. 429.
	Follower
	// Leader: the region's leader. 200.
	Leader
)

// Status is a node's /v1/sys/health answer.
type Status struct {
	Role Role
	// Region and NodeID name the node (not sensitive: the region is in
	// every ARN, the node id in every response header).
	Region, NodeID string
}

// Server serves the endpoints for one node.
type Server struct {
	// Checks are /readyz's, in order.
	Checks []Check
	// Status answers /v1/sys/health.
	Status func() Status
	// Now is the clock of server_time_utc; nil is time.Now.
	Now func() time.Time
}

// Handles reports whether r is for one of the health endpoints (GET or
// HEAD on one of their paths), so a listener that serves an API too can
// route it here.
func Handles(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	switch r.URL.Path {
	case LivezPath, ReadyzPath, SysHealthPath:
		return true
	}
	return false
}

// ServeHTTP serves the three endpoints (and 404 otherwise).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	switch r.URL.Path {
	case LivezPath:
		// The process answers HTTP: that is all liveness means. A node
		// that is stuck elsewhere is not ready, and restarting it would not
		// help a partition.
		writeText(w, http.StatusOK, "ok\n")
	case ReadyzPath:
		s.readyz(w, r)
	case SysHealthPath:
		s.sysHealth(w, r)
	default:
		http.NotFound(w, r)
	}
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// readyz runs every check not excluded. The answer is 200 "ok" or 503;
// ?verbose lists each check as Kubernetes does ("[+]name ok",
// "[-]name failed: reason"), and ?exclude=name (repeatable, or
// comma-separated) skips checks.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	_, verbose := q["verbose"]
	excluded := map[string]bool{}
	for _, v := range q["exclude"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				excluded[name] = true
			}
		}
	}
	var b strings.Builder
	failed := false
	for _, c := range s.Checks {
		if excluded[c.Name] {
			delete(excluded, c.Name)
			b.WriteString("[+]" + c.Name + " excluded: ok\n")
			continue
		}
		if reason := c.Run(); reason != "" {
			failed = true
			b.WriteString("[-]" + c.Name + " failed: " + reason + "\n")
			continue
		}
		b.WriteString("[+]" + c.Name + " ok\n")
	}
	if len(excluded) > 0 {
		names := make([]string, 0, len(excluded))
		for n := range excluded {
			names = append(names, strconv.Quote(n))
		}
		b.WriteString("warn: some health checks cannot be excluded: no matches for " + strings.Join(names, ",") + "\n")
	}
	code, verdict := http.StatusOK, "readyz check passed\n"
	if failed {
		code, verdict = http.StatusServiceUnavailable, "readyz check failed\n"
	}
	if !verbose {
		if failed {
			// Like Kubernetes, the short answer names the failed checks.
			var short strings.Builder
			for line := range strings.SplitSeq(b.String(), "\n") {
				if strings.HasPrefix(line, "[-]") {
					short.WriteString(line + "\n")
				}
			}
			writeText(w, code, short.String()+verdict)
			return
		}
		writeText(w, code, "ok\n")
		return
	}
	writeText(w, code, b.String()+verdict)
}

// Vault's default codes, and the query parameters that override them.
var roleCodes = []struct {
	role  Role
	code  int
	param string
}{
	{Leader, http.StatusOK, "activecode"},
	{Follower, http.StatusTooManyRequests, "standbycode"},
	{ReplicaRegion, 472, "drsecondarycode"},
	{LeaderlessFollower, 474, "haunhealthycode"},
	{Unavailable, http.StatusServiceUnavailable, "sealedcode"},
}

// sysHealth answers Vault's /v1/sys/health: 200 leader, 429 healthy
// follower, 472 replica region, 474 follower without a leader, 503 cannot
// serve. Each code can be overridden by its query parameter (activecode,
// standbycode, drsecondarycode, haunhealthycode, sealedcode), and
// standbyok=true answers a follower with the leader's code, as Vault does.
func (s *Server) sysHealth(w http.ResponseWriter, r *http.Request) {
	st := s.Status()
	q := r.URL.Query()
	code := http.StatusServiceUnavailable
	for _, rc := range roleCodes {
		if rc.role != st.Role {
			continue
		}
		code = rc.code
		role := rc.role
		if role == Follower && isTrue(q.Get("standbyok")) {
			role, code = Leader, http.StatusOK
			if v, ok := codeParam(q.Get("activecode")); ok {
				code = v
			}
			break
		}
		if v, ok := codeParam(q.Get(rc.param)); ok {
			code = v
		}
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	body, _ := json.Marshal(map[string]any{
		"initialized":         true,
		"sealed":              st.Role == Unavailable,
		"standby":             st.Role != Leader,
		"leader_known":        st.Role != LeaderlessFollower && st.Role != Unavailable,
		"replication_dr_mode": map[bool]string{true: "secondary", false: "primary"}[st.Role == ReplicaRegion],
		"region":              st.Region,
		"node_id":             st.NodeID,
		"server_time_utc":     now().Unix(),
	})
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func isTrue(v string) bool {
	b, err := strconv.ParseBool(v)
	return err == nil && b
}

// codeParam parses an override code: an HTTP status 200–599.
func codeParam(v string) (int, bool) {
	if v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 200 || n > 599 {
		return 0, false
	}
	return n, true
}
