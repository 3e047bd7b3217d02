package load

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The systems a run can target.
const (
	TargetCoffer = "coffer"
	TargetEtcd   = "etcd"
)

// The operations a run can drive.
const (
	OpPut   = "put"
	OpGet   = "get"
	OpMixed = "mixed"
)

// The read consistencies a run can ask for.
const (
	Linearizable = "linearizable"
	Stale        = "stale"
)

// Coffer's limits that shape a workload.
const (
	// cofferMaxValue is the largest SecretBinary Coffer accepts.
	cofferMaxValue = 65536
	// PutsPerKey is how many PutSecretValue calls one secret takes before
	// the run moves on to a fresh generation of secrets. Coffer keeps at
	// most 100 versions of a secret created in the last 24 hours; the
	// CreateSecret that makes the key holds one, so 99 would fit, and 90
	// leaves room for retried or timed-out puts that did commit.
	PutsPerKey = 90
	// maxKeys keeps key names at a fixed width (k000000).
	maxKeys = 1_000_000
)

// Config is one run's workload. DefaultConfig holds the defaults; flags and
// tests change fields and call Validate.
type Config struct {
	// Target is TargetCoffer or TargetEtcd.
	Target string
	// Endpoints are host:port addresses; clients are spread over them
	// round-robin.
	Endpoints []string
	// Clients is the number of concurrent closed-loop clients.
	Clients int
	// ClientsPerConn is how many clients share one connection (gRPC
	// multiplexes their calls over one HTTP/2 connection).
	ClientsPerConn int
	// Duration is the measured window; ignored when Ops is set.
	Duration time.Duration
	// Ops, when positive, ends the run after this many measured operations.
	Ops int64
	// Warmup runs the workload unmeasured before the window opens.
	Warmup time.Duration
	// ValueSize is the size in bytes of every value written.
	ValueSize int
	// Keys is the number of distinct keys (secrets) the workload touches.
	Keys int
	// Op is OpPut, OpGet or OpMixed.
	Op string
	// ReadRatio is the share of gets in a mixed run, 0 to 1.
	ReadRatio float64
	// Consistency is Linearizable or Stale, for gets.
	Consistency string
	// Prefix names the keys; empty picks one (see DefaultPrefix).
	Prefix string
	// Timeout bounds each operation.
	Timeout time.Duration
	// Seed makes the key choice and the values reproducible; 0 picks one.
	Seed uint64
	// AccessKeyID and SecretAccessKey, when set, authenticate every Coffer
	// call (gRPC bearer credentials); `cofferd dev` needs none.
	AccessKeyID     string
	SecretAccessKey string

	// Phase, when set, is called as the measured window opens and once it
	// has closed, so a profiler can cover exactly the window. Not a flag.
	Phase func(Phase)
}

// Phase is a point in a run that Config.Phase hears about.
type Phase int

// The phases Config.Phase is told about.
const (
	MeasureStart Phase = iota + 1
	MeasureEnd
)

// DefaultConfig holds the defaults, in one place.
func DefaultConfig() Config {
	return Config{
		Target:         TargetCoffer,
		Endpoints:      []string{"127.0.0.1:7400", "127.0.0.1:7410", "127.0.0.1:7420"},
		Clients:        64,
		ClientsPerConn: 8,
		Duration:       20 * time.Second,
		Warmup:         2 * time.Second,
		ValueSize:      1024,
		Keys:           1000,
		Op:             OpPut,
		ReadRatio:      0.9,
		Consistency:    Linearizable,
		Timeout:        10 * time.Second,
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Target {
	case TargetCoffer, TargetEtcd:
	default:
		add("target %q must be %s or %s", c.Target, TargetCoffer, TargetEtcd)
	}
	if len(c.Endpoints) == 0 {
		add("at least one endpoint is required")
	}
	for _, ep := range c.Endpoints {
		if _, port, ok := strings.Cut(ep, ":"); !ok || port == "" {
			add("endpoint %q is not host:port", ep)
		} else if _, err := strconv.Atoi(port); err != nil {
			add("endpoint %q is not host:port", ep)
		}
	}
	if c.Clients < 1 {
		add("clients %d must be at least 1", c.Clients)
	}
	if c.ClientsPerConn < 1 {
		add("clients per connection %d must be at least 1", c.ClientsPerConn)
	}
	if c.Ops < 0 {
		add("ops %d must not be negative", c.Ops)
	}
	if c.Ops == 0 && c.Duration <= 0 {
		add("duration %s must be positive (or set ops)", c.Duration)
	}
	if c.Warmup < 0 {
		add("warmup %s must not be negative", c.Warmup)
	}
	if c.ValueSize < 1 {
		add("value size %d must be at least 1 byte", c.ValueSize)
	}
	if c.Target == TargetCoffer && c.ValueSize > cofferMaxValue {
		add("value size %d exceeds Coffer's %d-byte limit", c.ValueSize, cofferMaxValue)
	}
	if c.Keys < 1 || c.Keys > maxKeys {
		add("keys %d must be between 1 and %d", c.Keys, maxKeys)
	}
	switch c.Op {
	case OpPut, OpGet, OpMixed:
	default:
		add("op %q must be %s, %s or %s", c.Op, OpPut, OpGet, OpMixed)
	}
	if c.ReadRatio < 0 || c.ReadRatio > 1 {
		add("read ratio %g must be between 0 and 1", c.ReadRatio)
	}
	switch c.Consistency {
	case Linearizable, Stale:
	default:
		add("consistency %q must be %s or %s", c.Consistency, Linearizable, Stale)
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		add("an access key id and a secret access key must be given together")
	}
	if c.Timeout <= 0 {
		add("timeout %s must be positive", c.Timeout)
	}
	return errors.Join(errs...)
}

// writes reports whether the run writes.
func (c Config) writes() bool { return c.Op == OpPut || (c.Op == OpMixed && c.ReadRatio < 1) }

// DefaultPrefix names a run's keys when Config.Prefix is empty. A run that
// writes to Coffer gets a prefix of its own (runID), so reruns never meet
// secrets that already hold versions from an earlier run and never hit the
// 100-versions-per-24-hours limit. A read-only run uses a stable prefix,
// named after the value size, so reruns reuse the secrets made the first
// time (CreateSecret answers ResourceExistsException, which is fine).
func DefaultPrefix(c Config, runID string) string {
	if c.Target == TargetCoffer && c.writes() {
		return "bench/run-" + runID
	}
	return fmt.Sprintf("bench/%s-v%d", c.Target, c.ValueSize)
}
