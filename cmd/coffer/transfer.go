package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errStalled is the cause of a streaming RPC cancelled by its stallWatch.
var errStalled = errors.New("no progress")

// stallWatch bounds a streaming RPC by progress rather than by total time: a
// snapshot of any size may take as long as it needs, but waiting longer than
// --timeout for the next message, or for room to send one, ends the RPC.
type stallWatch struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	limit  time.Duration
	timer  *time.Timer
}

// watchStalls returns a context for a streaming RPC that is cancelled when
// progress is not reported for limit, and the watch that reports it.
func watchStalls(parent context.Context, limit time.Duration) (context.Context, *stallWatch) {
	ctx, cancel := context.WithCancelCause(parent)
	w := &stallWatch{ctx: ctx, cancel: cancel, limit: limit}
	w.timer = time.AfterFunc(limit, func() { cancel(errStalled) })
	return ctx, w
}

// progress restarts the clock.
func (w *stallWatch) progress() { w.timer.Reset(w.limit) }

// stop ends the watch and cancels the RPC if it is still going.
func (w *stallWatch) stop() {
	w.timer.Stop()
	w.cancel(context.Canceled)
}

// explain returns err, or for an RPC the watch cancelled a DeadlineExceeded
// status, which exits 6 like any other deadline.
func (w *stallWatch) explain(err error) error {
	if errors.Is(context.Cause(w.ctx), errStalled) {
		return status.Errorf(codes.DeadlineExceeded, "no progress for %v (see --timeout)", w.limit)
	}
	return err
}

// progressInterval is how often the progress line may be redrawn when the
// percentage has not changed.
const progressInterval = 200 * time.Millisecond

// progress shows a transfer as one line on stderr, redrawn in place with \r:
// "saving snapshot: 12.3 MiB / 40.0 MiB (30%)". A nil *progress shows
// nothing, so callers need not check whether progress was asked for.
type progress struct {
	w     io.Writer
	verb  string
	total int64
	pct   int // percentage on the line now; -1 before the first draw
	width int // length of the line now, to blank out a longer one
	drawn time.Time
}

func newProgress(w io.Writer, verb string) *progress {
	return &progress{w: w, verb: verb, pct: -1}
}

// start draws 0 of total.
func (p *progress) start(total int64) {
	if p == nil {
		return
	}
	p.total = total
	p.set(0)
}

// set redraws the line for done bytes: always when the percentage changes,
// otherwise at most every progressInterval.
func (p *progress) set(done int64) {
	if p == nil {
		return
	}
	pct := 100
	if p.total > 0 {
		pct = int(float64(done) / float64(p.total) * 100) // done*100 could overflow
	}
	if pct == p.pct && time.Since(p.drawn) < progressInterval {
		return
	}
	line := fmt.Sprintf("%s: %s / %s (%d%%)", p.verb, formatSize(done), formatSize(p.total), pct)
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", max(0, p.width-len(line))))
	p.pct, p.width, p.drawn = pct, len(line), time.Now()
}

// end finishes the line, so that what is printed next starts on its own.
func (p *progress) end() {
	if p == nil || p.pct < 0 {
		return
	}
	fmt.Fprintln(p.w)
	p.pct = -1
}

// formatSize renders n bytes in binary units: "512 B", "12.3 MiB".
func formatSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// isTerminal reports whether w is a character device, as a terminal is. The
// standard library has no isatty; /dev/null passes too, where progress
// disappears harmlessly.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
