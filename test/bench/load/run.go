package load

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Operation kinds, as indexes into a worker's records.
const (
	kindPut = iota
	kindGet
	numKinds
)

var kindNames = [numKinds]string{kindPut: OpPut, kindGet: OpGet}

// errWrongValueSize: a get answered with no value or a value of the wrong
// size, which a load generator must not count as a success.
var errWrongValueSize = errors.New("value missing or of the wrong size")

// valuesPerClient is how many distinct random values each client cycles
// through, made before the run so the load generator spends no CPU on
// randomness while it measures.
const valuesPerClient = 8

// setupParallelism is how many keys are created at once.
const setupParallelism = 32

// Run creates the keys, runs the workload on cfg.Clients closed-loop
// clients — warmup first, then the measured window — and reports. Progress
// lines go to progress. When ctx ends early the report covers what was
// measured and says it was interrupted.
func Run(ctx context.Context, cfg Config, t Target, progress io.Writer) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = mrand.Uint64()
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultPrefix(cfg, strconv.FormatInt(time.Now().UnixNano(), 36))
	}
	var budget uint64
	if cfg.Target == TargetCoffer && cfg.writes() {
		budget = PutsPerKey
	}
	bg, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	ks := newKeyspace(bg, prefix, cfg.Keys, budget, creator(cfg, t))

	began := time.Now()
	if err := ks.setup(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "setup: %d keys under %s/ in %s\n", ks.created.Load(), prefix, time.Since(began).Round(time.Millisecond))

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := time.Now()
	measureStart := start.Add(cfg.Warmup)
	measureEnd := measureStart.Add(cfg.Duration)
	if cfg.Phase != nil {
		phase := time.AfterFunc(cfg.Warmup, func() { cfg.Phase(MeasureStart) })
		defer phase.Stop()
	}
	fmt.Fprintf(progress, "running: %s warmup, then %s\n", cfg.Warmup, window(cfg))

	var tickets atomic.Int64
	workers := make([]*worker, cfg.Clients)
	var wg sync.WaitGroup
	for i := range workers {
		w := newWorker(cfg, i, seed)
		workers[i] = w
		wg.Go(func() {
			w.run(runCtx, cancel, cfg, t.Client(i), t, ks, measureStart, measureEnd, &tickets)
		})
	}
	wg.Wait()
	if cfg.Phase != nil && !time.Now().Before(measureStart) {
		cfg.Phase(MeasureEnd)
	}
	if err := context.Cause(runCtx); err != nil && ctx.Err() == nil {
		return nil, err
	}

	r := &Report{
		Target: cfg.Target, Op: cfg.Op, Consistency: cfg.Consistency, Endpoints: cfg.Endpoints,
		Clients: cfg.Clients, Conns: t.Conns(), ValueSize: cfg.ValueSize, Keys: cfg.Keys,
		KeyPrefix: prefix, KeysCreated: ks.created.Load(), KeyStalls: ks.stalls.Load(),
		Warmup: Seconds(cfg.Warmup), Interrupted: ctx.Err() != nil,
	}
	if cfg.Op == OpMixed {
		r.ReadRatio = cfg.ReadRatio
	}
	r.summarize(workers, measureStart)
	return r, nil
}

func window(cfg Config) string {
	if cfg.Ops > 0 {
		return fmt.Sprintf("%d measured ops", cfg.Ops)
	}
	return cfg.Duration.String() + " measured"
}

// creator returns the function that creates a generation of keys, with
// setupParallelism clients at a time and a few retries for a region that
// is still settling.
func creator(cfg Config, t Target) func(context.Context, []string) error {
	return func(ctx context.Context, names []string) error {
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		var next atomic.Int64
		var wg sync.WaitGroup
		for p := range min(setupParallelism, cfg.Clients, len(names)) {
			c := t.Client(p)
			value := make([]byte, cfg.ValueSize)
			_, _ = rand.Read(value)
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= int64(len(names)) || ctx.Err() != nil {
						return
					}
					if err := createWithRetry(ctx, c, t, cfg.Timeout, names[i], value); err != nil {
						cancel(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return context.Cause(ctx)
	}
}

func createWithRetry(ctx context.Context, c Client, t Target, timeout time.Duration, name string, value []byte) error {
	const attempts = 5
	var err error
	for attempt := range attempts {
		opCtx, cancel := context.WithTimeout(ctx, timeout)
		err = c.Create(opCtx, name, value)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(100*(attempt+1)) * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: %s: %w", name, t.ErrorType(err), err)
}

// worker is one closed-loop client: it issues an operation, waits for the
// answer, and issues the next. Its records are its own, so recording takes
// no lock; Run merges them at the end.
type worker struct {
	id     int
	rng    *mrand.Rand
	values [][]byte
	lat    [numKinds][]time.Duration
	errs   [numKinds]map[string]int64
	last   time.Time // when its last measured operation ended
}

func newWorker(cfg Config, id int, seed uint64) *worker {
	w := &worker{id: id, rng: mrand.New(mrand.NewPCG(seed, uint64(id)))}
	for range valuesPerClient {
		v := make([]byte, cfg.ValueSize)
		_, _ = rand.Read(v)
		w.values = append(w.values, v)
	}
	// Preallocate for the expected count so appending while measuring
	// rarely grows a slice: an exact share in an --ops run, a generous
	// guess (growing if need be) in a timed one.
	capacity := 1 << 14
	if cfg.Ops > 0 {
		capacity = int(cfg.Ops/int64(cfg.Clients)) + 1
	}
	for k := range numKinds {
		w.errs[k] = map[string]int64{}
		if used(cfg, k) {
			w.lat[k] = make([]time.Duration, 0, capacity)
		}
	}
	return w
}

func used(cfg Config, kind int) bool {
	switch cfg.Op {
	case OpPut:
		return kind == kindPut
	case OpGet:
		return kind == kindGet
	}
	return (kind == kindGet && cfg.ReadRatio > 0) || (kind == kindPut && cfg.ReadRatio < 1)
}

func (w *worker) run(ctx context.Context, fail context.CancelCauseFunc, cfg Config, c Client, t Target, ks *keyspace,
	measureStart, measureEnd time.Time, tickets *atomic.Int64) {
	for n := 0; ctx.Err() == nil; n++ {
		now := time.Now()
		measured := !now.Before(measureStart)
		if cfg.Ops == 0 && !now.Before(measureEnd) {
			return
		}
		if cfg.Ops > 0 && measured && tickets.Add(1) > cfg.Ops {
			return
		}
		kind := kindPut
		switch cfg.Op {
		case OpGet:
			kind = kindGet
		case OpMixed:
			if w.rng.Float64() < cfg.ReadRatio {
				kind = kindGet
			}
		}
		var key string
		if kind == kindPut {
			var err error
			if key, err = ks.nextPut(ctx); err != nil {
				if ctx.Err() == nil {
					fail(err)
				}
				return
			}
		} else {
			key = ks.randomGet(w.rng, cfg.Consistency == Stale)
		}

		opCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		began := time.Now()
		var err error
		if kind == kindPut {
			err = c.Put(opCtx, key, w.values[n%len(w.values)])
		} else {
			var size int
			if size, err = c.Get(opCtx, key); err == nil && size != cfg.ValueSize {
				err = errWrongValueSize
			}
		}
		took := time.Since(began)
		cancel()

		if !measured || (err != nil && ctx.Err() != nil) {
			continue // warmup, or cut short by the run ending
		}
		w.last = began.Add(took)
		if err != nil {
			w.errs[kind][errorType(t, err)]++
			continue
		}
		w.lat[kind] = append(w.lat[kind], took)
	}
}

func errorType(t Target, err error) string {
	if errors.Is(err, errWrongValueSize) {
		return "WrongValueSize"
	}
	return t.ErrorType(err)
}

// percentile is the nearest-rank percentile p (0–100) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}
