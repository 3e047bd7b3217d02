package load

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a run measured. Its JSON form is the machine-readable
// output (--json) that Compare reads back.
type Report struct {
	Target      string   `json:"target"`
	Op          string   `json:"op"`
	ReadRatio   float64  `json:"read_ratio,omitempty"`
	Consistency string   `json:"consistency"`
	Endpoints   []string `json:"endpoints"`
	Clients     int      `json:"clients"`
	Conns       int      `json:"conns"`
	ValueSize   int      `json:"value_size"`
	Keys        int      `json:"keys"`
	KeyPrefix   string   `json:"key_prefix"`
	// KeysCreated counts keys created for the run, including generations
	// made while it ran (see PutsPerKey); KeyStalls counts puts that had to
	// wait for a generation.
	KeysCreated int64   `json:"keys_created"`
	KeyStalls   int64   `json:"key_stalls"`
	Warmup      Seconds `json:"warmup_s"`
	// Elapsed is the measured window: from its opening to the end of the
	// last operation that started in it.
	Elapsed     Seconds `json:"elapsed_s"`
	Interrupted bool    `json:"interrupted,omitempty"`
	// Total covers every operation; ByOp splits a mixed run by operation.
	Total OpStats            `json:"total"`
	ByOp  map[string]OpStats `json:"by_op"`
}

// OpStats are the numbers for one kind of operation (or all of them).
// Latencies are of successful operations; failures are counted by type.
type OpStats struct {
	Ops        int64            `json:"ops"`
	Errors     int64            `json:"errors"`
	ErrorTypes map[string]int64 `json:"error_types,omitempty"`
	OpsPerSec  float64          `json:"ops_per_sec"`
	Latency    Latency          `json:"latency_ms"`
}

// Latency summarises a set of latencies.
type Latency struct {
	P50  Millis `json:"p50"`
	P90  Millis `json:"p90"`
	P99  Millis `json:"p99"`
	Max  Millis `json:"max"`
	Mean Millis `json:"mean"`
}

// Millis is a duration that JSON renders as fractional milliseconds.
type Millis time.Duration

// MarshalJSON renders m in milliseconds, to the microsecond.
func (m Millis) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(m)/float64(time.Millisecond), 'f', 3, 64)), nil
}

// UnmarshalJSON reads fractional milliseconds.
func (m *Millis) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*m = Millis(f * float64(time.Millisecond))
	return nil
}

func (m Millis) String() string { return fmtLatency(time.Duration(m)) }

// Seconds is a duration that JSON renders as fractional seconds.
type Seconds time.Duration

// MarshalJSON renders s in seconds, to the millisecond.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(time.Duration(s).Seconds(), 'f', 3, 64)), nil
}

// UnmarshalJSON reads fractional seconds.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*s = Seconds(f * float64(time.Second))
	return nil
}

func (r *Report) summarize(workers []*worker, measureStart time.Time) {
	var end time.Time
	for _, w := range workers {
		if w.last.After(end) {
			end = w.last
		}
	}
	if end.After(measureStart) {
		r.Elapsed = Seconds(end.Sub(measureStart))
	}
	var all []time.Duration
	allErrs := map[string]int64{}
	r.ByOp = map[string]OpStats{}
	for k := range numKinds {
		var lat []time.Duration
		errs := map[string]int64{}
		used := false
		for _, w := range workers {
			used = used || w.lat[k] != nil || len(w.errs[k]) > 0
			lat = append(lat, w.lat[k]...)
			for typ, n := range w.errs[k] {
				errs[typ] += n
				allErrs[kindNames[k]+" "+typ] += n
			}
		}
		if !used {
			continue
		}
		r.ByOp[kindNames[k]] = r.stats(lat, errs)
		all = append(all, lat...)
	}
	r.Total = r.stats(all, allErrs)
}

func (r *Report) stats(lat []time.Duration, errs map[string]int64) OpStats {
	slices.Sort(lat)
	s := OpStats{Ops: int64(len(lat))}
	for _, n := range errs {
		s.Errors += n
	}
	if len(errs) > 0 {
		s.ErrorTypes = errs
	}
	if r.Elapsed > 0 {
		s.OpsPerSec = float64(len(lat)) / time.Duration(r.Elapsed).Seconds()
	}
	if len(lat) == 0 {
		return s
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	s.Latency = Latency{
		P50:  Millis(percentile(lat, 50)),
		P90:  Millis(percentile(lat, 90)),
		P99:  Millis(percentile(lat, 99)),
		Max:  Millis(lat[len(lat)-1]),
		Mean: Millis(sum / time.Duration(len(lat))),
	}
	return s
}

// Label names the run's workload in tables: "put", "get (linearizable)",
// "mixed 90% get (stale)".
func (r *Report) Label() string {
	switch r.Op {
	case OpGet:
		return fmt.Sprintf("get (%s)", r.Consistency)
	case OpMixed:
		return fmt.Sprintf("mixed %.0f%% get (%s)", r.ReadRatio*100, r.Consistency)
	}
	return r.Op
}

// WriteText writes r for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d clients over %d connections to %d endpoints, %d-byte values, %d keys under %s/\n",
		r.Target, r.Label(), r.Clients, r.Conns, len(r.Endpoints), r.ValueSize, r.Keys, r.KeyPrefix)
	fmt.Fprintf(&b, "measured %s after %s warmup", time.Duration(r.Elapsed).Round(time.Millisecond), time.Duration(r.Warmup))
	if r.Interrupted {
		b.WriteString(" (interrupted)")
	}
	fmt.Fprintf(&b, "; keys created %d, puts that waited for new keys %d\n\n", r.KeysCreated, r.KeyStalls)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tops\terrors\tops/s\tp50\tp90\tp99\tmax\t")
	row := func(name string, s OpStats) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t\n", name, s.Ops, s.Errors, s.OpsPerSec,
			s.Latency.P50, s.Latency.P90, s.Latency.P99, s.Latency.Max)
	}
	ops := slices.Sorted(maps.Keys(r.ByOp))
	for _, op := range ops {
		row(op, r.ByOp[op])
	}
	if len(ops) > 1 {
		row("all", r.Total)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Total.ErrorTypes) > 0 {
		b.WriteString("\nerrors:\n")
		for _, typ := range slices.Sorted(maps.Keys(r.Total.ErrorTypes)) {
			fmt.Fprintf(&b, "  %s: %d\n", typ, r.Total.ErrorTypes[typ])
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes r as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func fmtLatency(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
}
