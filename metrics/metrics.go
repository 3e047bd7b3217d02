package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every Coffer metric.
const Namespace = "coffer"

// Buckets, in seconds. Request and commit latencies span a loopback call
// (~100 µs) to a slow cross-machine quorum; fsync buckets follow etcd's
// disk histograms (1 ms … 8 s, doubling), which operators already read.
var (
	requestBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	diskBuckets    = prometheus.ExponentialBuckets(0.001, 2, 14)
	slowBuckets    = []float64{.01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900, 3600}
	sizeBuckets    = prometheus.ExponentialBuckets(1024, 4, 12) // 1 KiB … 4 GiB
	batchBuckets   = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}
)

// Metrics is one node's metric families and the registry that serves them.
// Each node has its own (several nodes can run in one process: cofferd dev,
// the cluster tests), so nothing here is global.
type Metrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	inFlight        *prometheus.GaugeVec

	authFailures       *prometheus.CounterVec
	authzDenials       prometheus.Counter
	auditWriteFailures prometheus.Counter
	auditRecords       prometheus.Counter
	auditWriteDuration prometheus.Histogram

	raftApply          prometheus.Histogram
	raftApplyBatch     prometheus.Histogram
	raftCommit         prometheus.Histogram
	raftProposalsFail  prometheus.Counter
	raftLeaderChanges  prometheus.Counter
	raftSnapshotTake   prometheus.Histogram
	raftSnapshotSize   prometheus.Histogram
	raftSnapshotInstal prometheus.Histogram
	diskLogFsync       prometheus.Histogram
	diskStateCommit    prometheus.Histogram
	readIndexRounds    prometheus.Counter
	readIndexBatch     prometheus.Histogram

	shipments        *prometheus.CounterVec
	shipmentFailures *prometheus.CounterVec
	shipLag          *prometheus.HistogramVec

	rotations        *prometheus.CounterVec
	rotationFailures *prometheus.CounterVec
	rotationDuration prometheus.Histogram
}

// New makes a node's metric families on a registry of its own, with the Go
// runtime's and the process's collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := factory{m.reg}
	m.requests = f.counterVec("requests_total", "Requests answered, by API (grpc, aws), operation and result code (OK or the AWS error type).", "api", "operation", "code")
	m.requestDuration = f.histogramVec("request_duration_seconds", "Time from a request's arrival to its answer, by API and operation.", requestBuckets, "api", "operation")
	m.inFlight = f.gaugeVec("requests_in_flight", "Requests being served now, by API.", "api")

	m.authFailures = f.counterVec("auth_failures_total", "Requests refused because they could not be authenticated, by reason (the AWS error type).", "reason")
	m.authzDenials = f.counter("authz_denials_total", "Authenticated requests the policies denied.")
	m.auditWriteFailures = f.counter("audit_write_failures_total", "Audit records that could not be written (the request was refused).")
	m.auditRecords = f.counter("audit_records_total", "Audit records written.")
	m.auditWriteDuration = f.histogram("audit_write_duration_seconds", "Time to append one audit record, fsync included when audit_sync is on.", diskBuckets)

	m.raftApply = f.histogram("raft_apply_duration_seconds", "Time to apply one batch of committed entries to the state machine.", diskBuckets)
	m.raftApplyBatch = f.histogram("raft_apply_batch_entries", "Entries per batch applied to the state machine.", batchBuckets)
	m.raftCommit = f.histogram("raft_commit_duration_seconds", "Time from proposing a command on the leader to its result (committed by a quorum and applied).", requestBuckets)
	m.raftProposalsFail = f.counter("raft_proposals_failed_total", "Proposals that were not committed (no leader, lost leadership, timeout, shutdown).")
	m.raftLeaderChanges = f.counter("raft_leader_changes_total", "Changes of the leader this node has seen.")
	m.raftSnapshotTake = f.histogram("raft_snapshot_duration_seconds", "Time to write one Raft snapshot of the state machine.", slowBuckets)
	m.raftSnapshotSize = f.histogram("raft_snapshot_size_bytes", "Size of the Raft snapshots this node wrote.", sizeBuckets)
	m.raftSnapshotInstal = f.histogram("raft_snapshot_restore_duration_seconds", "Time to install a snapshot received from the leader or restored by an operator.", slowBuckets)
	m.diskLogFsync = f.histogram("disk_log_fsync_duration_seconds", "Time to append entries to the Raft log, one fsync'd bbolt transaction.", diskBuckets)
	m.diskStateCommit = f.histogram("disk_state_commit_duration_seconds", "Time to commit one batch to the state database (state.db), fsync included.", diskBuckets)
	m.readIndexRounds = f.counter("raft_read_index_rounds_total", "Leadership confirmations (read-index rounds) served to linearizable reads.")
	m.readIndexBatch = f.histogram("raft_read_index_batch_size", "Linearizable reads that shared one read-index round.", batchBuckets)

	m.shipments = f.counterVec("replication_shipments_total", "Batches shipped to a paired region and acknowledged, by destination region.", "destination")
	m.shipmentFailures = f.counterVec("replication_shipment_failures_total", "Shipments to a paired region that failed, by destination region.", "destination")
	m.shipLag = f.histogramVec("replication_change_lag_seconds", "Time from a change's commit to its acknowledgement by a paired region, one sample per change.", slowBuckets, "destination")

	m.rotations = f.counterVec("rotations_total", "Rotations that ended, by result (success, failure).", "result")
	m.rotationFailures = f.counterVec("rotation_failures_total", "Failed rotation steps, by step (createSecret, setSecret, testSecret, finishSecret).", "step")
	m.rotationDuration = f.histogram("rotation_duration_seconds", "Time from a rotation's start to its completion.", slowBuckets)

	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the node's registry, for collectors added at start-up
// (NewNodeCollector) and tests that gather it.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the exposition (Prometheus text or OpenMetrics, as the
// scraper asks).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{EnableOpenMetrics: true, ErrorHandling: promhttp.ContinueOnError})
}

type factory struct{ reg prometheus.Registerer }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

// RequestStarted counts a request in flight (server.RequestObserver).
func (m *Metrics) RequestStarted(api string) { m.inFlight.WithLabelValues(api).Inc() }

// RequestDone records a finished request: operation is from a closed set
// (the API's operations, "unknown" otherwise), code "OK" or an AWS error
// type.
func (m *Metrics) RequestDone(api, operation, code string, d time.Duration) {
	m.inFlight.WithLabelValues(api).Dec()
	m.requests.WithLabelValues(api, operation, code).Inc()
	m.requestDuration.WithLabelValues(api, operation).Observe(d.Seconds())
}

// AuthFailure counts a request refused before it authenticated.
func (m *Metrics) AuthFailure(reason string) { m.authFailures.WithLabelValues(reason).Inc() }

// AuthzDenial counts a request the policies denied.
func (m *Metrics) AuthzDenial() { m.authzDenials.Inc() }

// AuditWriteFailure counts an audit record that could not be written.
func (m *Metrics) AuditWriteFailure() { m.auditWriteFailures.Inc() }

// AuditWritten records one audit record written, and how long it took.
func (m *Metrics) AuditWritten(d time.Duration) {
	m.auditRecords.Inc()
	m.auditWriteDuration.Observe(d.Seconds())
}

// ObserveApply records one batch applied to the state machine (its
// state.db commit included) (replication.Observer).
func (m *Metrics) ObserveApply(d time.Duration, entries int) {
	m.raftApply.Observe(d.Seconds())
	m.diskStateCommit.Observe(d.Seconds())
	m.raftApplyBatch.Observe(float64(entries))
}

// ObserveCommit records one proposal made on this node as leader.
func (m *Metrics) ObserveCommit(d time.Duration, failed bool) {
	if failed {
		m.raftProposalsFail.Inc()
		return
	}
	m.raftCommit.Observe(d.Seconds())
}

// ObserveLogAppend records one append to the Raft log.
func (m *Metrics) ObserveLogAppend(d time.Duration) { m.diskLogFsync.Observe(d.Seconds()) }

// ObserveSnapshot records one snapshot this node wrote.
func (m *Metrics) ObserveSnapshot(d time.Duration, size int64) {
	m.raftSnapshotTake.Observe(d.Seconds())
	m.raftSnapshotSize.Observe(float64(size))
}

// ObserveRestore records one snapshot installed.
func (m *Metrics) ObserveRestore(d time.Duration) { m.raftSnapshotInstal.Observe(d.Seconds()) }

// ObserveReadIndex records one read-index round and how many reads shared it.
func (m *Metrics) ObserveReadIndex(reads int) {
	m.readIndexRounds.Inc()
	m.readIndexBatch.Observe(float64(reads))
}

// LeaderChanged counts a change of leader.
func (m *Metrics) LeaderChanged() { m.raftLeaderChanges.Inc() }

// ObserveShipment records one shipment to a paired region; lags are the
// per-change lags it acknowledged.
func (m *Metrics) ObserveShipment(destination string, err error) {
	if err != nil {
		m.shipmentFailures.WithLabelValues(destination).Inc()
		return
	}
	m.shipments.WithLabelValues(destination).Inc()
}

// ObserveChangeLag records one change's shipping lag.
func (m *Metrics) ObserveChangeLag(destination string, lag time.Duration) {
	m.shipLag.WithLabelValues(destination).Observe(lag.Seconds())
}

// RotationStepFailed counts a failed rotation step (rotation.Observer).
func (m *Metrics) RotationStepFailed(step string) { m.rotationFailures.WithLabelValues(step).Inc() }

// RotationEnded counts a rotation's end; took is known (non-zero) for one
// that completed.
func (m *Metrics) RotationEnded(success bool, took time.Duration) {
	if !success {
		m.rotations.WithLabelValues("failure").Inc()
		return
	}
	m.rotations.WithLabelValues("success").Inc()
	if took > 0 {
		m.rotationDuration.Observe(took.Seconds())
	}
}
