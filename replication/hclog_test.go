package replication

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestHclogAdapter: a Raft log call is one slog record at its level with
// its key/value pairs as attributes and no timestamp of its own in the
// message; routine election messages are Info, not WARN.
func TestHclogAdapter(t *testing.T) {
	var buf bytes.Buffer
	h := newHclog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "raft")
	h.Named("snapshot").With("node", "n1").Warn("failed to contact", "server-id", "n2", "error", errors.New("refused"))
	h.Warn("heartbeat timeout reached, starting election", "last-leader-addr", "")
	h.Info("odd", "dangling")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d records, want 3:\n%s", len(lines), buf.String())
	}
	var recs []map[string]any
	for _, l := range lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	want := map[string]any{"level": "WARN", "msg": "failed to contact", "component": "raft", "subsystem": "snapshot", "node": "n1", "server-id": "n2", "error": "refused"}
	for k, v := range want {
		if recs[0][k] != v {
			t.Errorf("record 0 %s = %v, want %v (%v)", k, recs[0][k], v, recs[0])
		}
	}
	if recs[1]["level"] != "INFO" {
		t.Errorf("a routine election is logged at %v", recs[1]["level"])
	}
	if recs[2]["EXTRA_VALUE_AT_END"] != "dangling" {
		t.Errorf("odd args: %v", recs[2])
	}
	for _, r := range recs {
		if strings.Contains(r["msg"].(string), "[") || strings.ContainsAny(r["msg"].(string)[:1], "0123456789") {
			t.Errorf("message carries a nested prefix: %q", r["msg"])
		}
	}
}

// TestHclogAdapterStopping: once the node stops, Raft's errors about gone
// peers are Info.
func TestHclogAdapterStopping(t *testing.T) {
	var buf bytes.Buffer
	h := newHclog(slog.New(slog.NewTextHandler(&buf, nil)), "raft")
	h.Error("failed to appendEntries to", "peer", "n2")
	h.stopping.Store(true)
	h.Named("x").Error("failed to heartbeat to", "peer", "n2")
	out := buf.String()
	if !strings.Contains(out, "level=ERROR msg=\"failed to appendEntries to\"") || !strings.Contains(out, "level=INFO msg=\"failed to heartbeat to\"") {
		t.Fatalf("levels before and after stopping:\n%s", out)
	}
}
