package load

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// ReadReport reads a report written by WriteJSON.
func ReadReport(path string) (*Report, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// Goals are the throughput ratios Coffer aims for against etcd, by
// workload label. They are printed next to the measured ratios for the
// reader; nothing fails on them.
var Goals = map[string]float64{
	OpPut:                        1,
	"get (" + Linearizable + ")": 2,
}

// Compare writes reports side by side (system, workload, ops/s, p50, p99,
// errors), in the order given, then the Coffer/etcd throughput ratio of
// every workload both systems ran with the same parameters.
func Compare(w io.Writer, reports []*Report) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "system\top\tclients\tvalue\tops/s\tp50\tp99\terrors")
	for _, r := range reports {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%dB\t%.0f\t%s\t%s\t%d\n", r.Target, r.Label(), r.Clients, r.ValueSize,
			r.Total.OpsPerSec, r.Total.Latency.P50, r.Total.Latency.P99, r.Total.Errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\n")
	for _, c := range reports {
		if c.Target != TargetCoffer {
			continue
		}
		for _, e := range reports {
			if e.Target != TargetEtcd || !sameWorkload(c, e) || e.Total.OpsPerSec == 0 {
				continue
			}
			ratio := c.Total.OpsPerSec / e.Total.OpsPerSec
			fmt.Fprintf(&b, "Coffer/etcd %-20s %.2fx", c.Label()+":", ratio)
			if goal, ok := Goals[c.Label()]; ok {
				verdict := "met"
				if ratio < goal {
					verdict = "missed"
				}
				fmt.Fprintf(&b, "   (goal >= %.0fx: %s)", goal, verdict)
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func sameWorkload(a, b *Report) bool {
	return a.Label() == b.Label() && a.Clients == b.Clients && a.ValueSize == b.ValueSize &&
		a.Keys == b.Keys && len(a.Endpoints) == len(b.Endpoints)
}
