package clustertest

import (
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
)

// logLines is how many log lines of the nodes a failed test shows.
const logLines = 400

// logSink keeps the nodes' last log lines, shown when a test fails. The
// level is warn unless COFFER_CLUSTER_LOG names another (debug, info).
type logSink struct {
	level slog.Level
	mu    sync.Mutex
	lines []string
	next  int
}

func newLogSink() *logSink {
	s := &logSink{level: slog.LevelWarn, lines: make([]string, 0, logLines)}
	if v := os.Getenv("COFFER_CLUSTER_LOG"); v != "" {
		_ = s.level.UnmarshalText([]byte(v))
	}
	return s
}

func (s *logSink) logger(nodeID string) *slog.Logger {
	return slog.New(slog.NewTextHandler(s, &slog.HandlerOptions{Level: s.level})).With("node", nodeID)
}

// Write takes one record from slog's text handler.
func (s *logSink) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lines) < cap(s.lines) {
		s.lines = append(s.lines, line)
	} else {
		s.lines[s.next] = line
		s.next = (s.next + 1) % len(s.lines)
	}
	return len(p), nil
}

func (s *logSink) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ordered := append(slices.Clone(s.lines[s.next:]), s.lines[:s.next]...)
	return strings.Join(ordered, "\n")
}
