package ops

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cofferhq/coffer/node"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
)

// withOps gives every node a metrics listener and an AWS listener on free
// loopback ports.
func withOps() clustertest.Option {
	return clustertest.WithNode(func(o *node.Options) {
		o.MetricsAddr = "127.0.0.1:0"
		o.AWSAddr = "127.0.0.1:0"
	})
}

// get fetches url with method, returning the status and body.
func get(t *testing.T, method, url string) (int, string) {
	t.Helper()
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape reads a node's exposition.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.RPCTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the exposition of %s: %v", addr, err)
	}
	return fams
}

// value sums a family's samples whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	sum, found := 0.0, false
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			match := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					match = true
				}
			}
			if !match {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, found
}

// leakingLabels lists every label, of every family, whose value holds one
// of the forbidden strings.
func leakingLabels(fams map[string]*dto.MetricFamily, forbidden []string) []string {
	var out []string
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				for _, s := range forbidden {
					if s != "" && strings.Contains(l.GetValue(), s) {
						out = append(out, fmt.Sprintf("%s{%s=%q} holds %q", name, l.GetName(), l.GetValue(), s))
					}
				}
			}
		}
	}
	return out
}
