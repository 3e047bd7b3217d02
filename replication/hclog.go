package replication

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter is hashicorp/raft's logger as slog: each Raft event becomes
// one slog record at its level, with hclog's key/value pairs as attributes,
// instead of a formatted line (with its own timestamp) inside a message.
type hclogAdapter struct {
	l    *slog.Logger
	name string
	args []any
	// stopping, once set, logs Raft's complaints at Info: while a node
	// (or its whole region) stops, peers that are gone and elections that
	// cannot win are expected, not errors.
	stopping *atomic.Bool
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHclog(l *slog.Logger, name string) *hclogAdapter {
	return &hclogAdapter{l: l.With("component", name), name: name, stopping: new(atomic.Bool)}
}

// routine are Raft messages logged above Info that describe normal
// operation — a node starting, an election it was expected to run, a
// peer that is stopping — and are demoted to Info so that WARN and ERROR
// mean an operator should look.
var routine = []string{
	"heartbeat timeout reached, starting election",
	"entering candidate state",
	"entering follower state",
	"entering leader state",
	"election won",
	"no known peers, aborting election",
	"not part of stable configuration, aborting election",
	"failed to get previous log", // a follower behind the leader: it catches up
	"appendEntries rejected, sending older logs",
	"installed remote snapshot",
}

func slogLevel(level hclog.Level, msg string) slog.Level {
	var l slog.Level
	switch level {
	case hclog.Trace, hclog.Debug:
		l = slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		l = slog.LevelInfo
	case hclog.Warn:
		l = slog.LevelWarn
	default:
		l = slog.LevelError
	}
	if l > slog.LevelInfo {
		for _, r := range routine {
			if strings.HasPrefix(msg, r) {
				return slog.LevelInfo
			}
		}
	}
	return l
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	lvl := slogLevel(level, msg)
	if lvl > slog.LevelInfo && h.stopping.Load() {
		lvl = slog.LevelInfo
	}
	ctx := context.Background()
	if !h.l.Enabled(ctx, lvl) {
		return
	}
	attrs := make([]any, 0, len(h.args)+len(args))
	attrs = append(attrs, h.args...)
	attrs = append(attrs, pairs(args)...)
	h.l.Log(ctx, lvl, msg, attrs...)
}

// pairs makes hclog's args slog-ready: an odd trailing value gets hclog's
// EXTRA_VALUE_AT_END key, and hclog.Format values their text.
func pairs(args []any) []any {
	if len(args)%2 == 1 {
		args = append(args[:len(args):len(args)], args[len(args)-1])
		args[len(args)-2] = hclog.MissingKey
	}
	return args
}

func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogAdapter) enabled(l slog.Level) bool { return h.l.Enabled(context.Background(), l) }
func (h *hclogAdapter) IsTrace() bool             { return h.enabled(slog.LevelDebug) }
func (h *hclogAdapter) IsDebug() bool             { return h.enabled(slog.LevelDebug) }
func (h *hclogAdapter) IsInfo() bool              { return h.enabled(slog.LevelInfo) }
func (h *hclogAdapter) IsWarn() bool              { return h.enabled(slog.LevelWarn) }
func (h *hclogAdapter) IsError() bool             { return h.enabled(slog.LevelError) }

func (h *hclogAdapter) ImpliedArgs() []any { return h.args }

func (h *hclogAdapter) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(append([]any(nil), h.args...), pairs(args)...)
	return &c
}

func (h *hclogAdapter) Name() string { return h.name }

func (h *hclogAdapter) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	c.l = h.l.With("subsystem", name)
	return &c
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	c.l = h.l.With("subsystem", name)
	return &c
}

// SetLevel is a no-op: the slog handler's level decides.
func (h *hclogAdapter) SetLevel(hclog.Level) {}

func (h *hclogAdapter) GetLevel() hclog.Level {
	switch {
	case h.IsDebug():
		return hclog.Debug
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	}
	return hclog.Error
}

func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return stdWriter{h}
}

// stdWriter takes lines from a standard logger, as Info.
type stdWriter struct{ h *hclogAdapter }

func (w stdWriter) Write(p []byte) (int, error) {
	w.h.Info(strings.TrimRight(string(p), "\r\n"))
	return len(p), nil
}
