package load

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestLayoutSpreadsClientsRoundRobin(t *testing.T) {
	l := layout(3, 64, 8)
	if got := len(l.endpoint); got != 9 {
		t.Fatalf("64 clients, 3 endpoints, 8 per conn: %d connections, want 9", got)
	}
	perConn := make([]int, len(l.endpoint))
	for i, c := range l.conn {
		perConn[c]++
		if e := l.endpoint[c]; e != i%3 {
			t.Errorf("client %d on endpoint %d, want %d", i, e, i%3)
		}
	}
	for c, n := range perConn {
		if n == 0 || n > 8 {
			t.Errorf("connection %d carries %d clients, want 1 to 8", c, n)
		}
	}
	if l := layout(3, 2, 8); len(l.endpoint) != 3 {
		t.Errorf("fewer clients than endpoints: %d connections, want one per endpoint", len(l.endpoint))
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {90, 90 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := percentile(lat, tc.p); got != tc.want {
			t.Errorf("p%g = %s, want %s", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %s, want 0", got)
	}
}

func TestKeyspaceKeepsEveryKeyWithinItsBudget(t *testing.T) {
	var mu sync.Mutex
	var created []string
	ks := newKeyspace(t.Context(), "p", 3, 2, func(_ context.Context, names []string) error {
		mu.Lock()
		defer mu.Unlock()
		created = append(created, names...)
		return nil
	})
	if err := ks.setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	puts := map[string]int{}
	for range 13 {
		k, err := ks.nextPut(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		puts[k]++
	}
	for k, n := range puts {
		if n > 2 {
			t.Errorf("%s took %d puts, budget 2", k, n)
		}
	}
	want := []string{"p/g0/k000000", "p/g0/k000001", "p/g0/k000002", "p/g1/k000000", "p/g2/k000000"}
	for _, k := range want {
		if puts[k] == 0 {
			t.Errorf("%s took no puts; puts %v", k, puts)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for k := range puts {
		if !slices.Contains(created, k) {
			t.Errorf("%s was written before it was created", k)
		}
	}
}

// memTarget is an in-memory system under test; every failEvery-th put fails.
type memTarget struct {
	mu        sync.Mutex
	values    map[string][]byte
	puts      int
	failEvery int
}

func (m *memTarget) Client(int) Client                                    { return m }
func (m *memTarget) Conns() int                                           { return 1 }
func (m *memTarget) Ready(context.Context) error                          { return nil }
func (m *memTarget) ErrorType(err error) string                           { return err.Error() }
func (m *memTarget) Close() error                                         { return nil }
func (m *memTarget) Create(ctx context.Context, k string, v []byte) error { return m.Put(ctx, k, v) }

var errInjected = errors.New("Injected")

func (m *memTarget) Put(_ context.Context, k string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.puts++
	if m.failEvery > 0 && m.puts%m.failEvery == 0 {
		return errInjected
	}
	m.values[k] = v
	return nil
}

func (m *memTarget) Get(_ context.Context, k string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.values[k]), nil
}

func TestRunCountsEveryMeasuredOperation(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Target, cfg.Endpoints = TargetEtcd, []string{"mem:1"}
	cfg.Clients, cfg.Ops, cfg.Warmup, cfg.Keys, cfg.ValueSize = 4, 1000, 0, 10, 16
	cfg.Op, cfg.ReadRatio = OpMixed, 0.5

	r, err := Run(t.Context(), cfg, &memTarget{values: map[string][]byte{}, failEvery: 10}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	put, get := r.ByOp[OpPut], r.ByOp[OpGet]
	if got := put.Ops + put.Errors + get.Ops + get.Errors; got != 1000 {
		t.Errorf("measured %d operations, want 1000 (report %+v)", got, r.Total)
	}
	if put.Errors == 0 || put.ErrorTypes["Injected"] != put.Errors {
		t.Errorf("put errors %d by type %v, want all Injected and some", put.Errors, put.ErrorTypes)
	}
	if get.Errors != 0 {
		t.Errorf("get errors %v, want none: every key was created with a value", get.ErrorTypes)
	}
	if r.Total.Latency.P50 == 0 || r.Total.Latency.Max < r.Total.Latency.P99 || r.Total.OpsPerSec <= 0 {
		t.Errorf("summary %+v is not a plausible summary", r.Total)
	}
}
