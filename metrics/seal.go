package metrics

import "github.com/prometheus/client_golang/prometheus"

// SealState is a node's seal as a scrape reports it: which seal releases
// the root key, whether the node still waits for it, and for the Shamir
// seal how many key shares it holds of how many it needs. It never holds
// a share or a key.
type SealState struct {
	// Type is the seal: file, shamir or pkcs11 (a closed set).
	Type string
	// Sealed is true while the node waits for its root key.
	Sealed bool
	// Progress is how many key shares are held; Threshold how many unseal
	// (0 for seals without shares).
	Progress, Threshold int
}

var (
	descSealed         = desc("sealed", "1 while the node is sealed: it waits for its root key and serves only health and unseal; 0 once unsealed.")
	descSealInfo       = desc("seal_info", "Always 1; the label names the seal that releases the root key (file, shamir, pkcs11).", "type")
	descUnsealProgress = desc("unseal_progress_shares", "Key shares entered on a sealed node (coffer operator unseal), 0 once unsealed.")
	descUnsealThresh   = desc("unseal_threshold_shares", "Key shares that unseal the node (the Shamir seal's threshold).")
)

// SealCollector reports a node's seal at scrape time. A sealed node (which
// has no Raft member, no state and no NodeCollector yet) serves it alone;
// a running node serves it beside its NodeCollector, with Sealed false.
type SealCollector struct{ state func() SealState }

// NewSealCollector returns a collector reading state at every scrape.
func NewSealCollector(state func() SealState) *SealCollector {
	return &SealCollector{state: state}
}

// Describe implements prometheus.Collector.
func (c *SealCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSealed, descSealInfo, descUnsealProgress, descUnsealThresh} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *SealCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.state()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descSealed, b2f(s.Sealed))
	if s.Type != "" {
		gauge(descSealInfo, 1, s.Type)
	}
	if s.Threshold > 0 {
		gauge(descUnsealProgress, float64(s.Progress))
		gauge(descUnsealThresh, float64(s.Threshold))
	}
}
