package load

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// keyspace hands out the keys a run touches. Keys come in generations of
// size keys each, named prefix/gG/kNNNNNN. Puts go round-robin over the
// current generation, so every key takes the same share; when a generation
// has taken budget puts per key, puts move on to the next one. The next
// generation is created in the background once the current one is half
// used, so puts normally never wait for it; stalls counts the times one
// did. A zero budget means one generation takes any number of puts (etcd
// keeps no per-key version limit).
type keyspace struct {
	prefix string
	size   uint64
	budget uint64
	// create makes sure every named key exists with a value; it is called
	// once per generation, in the background after the first.
	create func(ctx context.Context, names []string) error

	puts    atomic.Uint64
	ready   atomic.Int64 // newest generation ready for reads
	stalls  atomic.Int64
	created atomic.Int64

	bg context.Context // generations outlive the puts that start them
	mu sync.Mutex      // serialises start
	// gens is copied on write under mu, so puts look generations up
	// without taking the lock.
	gens atomic.Pointer[[]*generation]
}

type generation struct {
	done chan struct{}
	err  error
}

func newKeyspace(bg context.Context, prefix string, size int, budget uint64, create func(context.Context, []string) error) *keyspace {
	return &keyspace{prefix: prefix, size: uint64(size), budget: budget, create: create, bg: bg}
}

func (k *keyspace) name(gen, i uint64) string {
	return fmt.Sprintf("%s/g%d/k%06d", k.prefix, gen, i)
}

// setup creates the first generation and waits for it.
func (k *keyspace) setup(ctx context.Context) error {
	return k.wait(ctx, k.generation(0))
}

// generation returns generation g, starting to create it (and any before
// it) if nobody has.
func (k *keyspace) generation(g uint64) *generation {
	if gens := k.gens.Load(); gens != nil && uint64(len(*gens)) > g {
		return (*gens)[g]
	}
	return k.start(g)
}

func (k *keyspace) start(g uint64) *generation {
	k.mu.Lock()
	defer k.mu.Unlock()
	var gens []*generation
	if p := k.gens.Load(); p != nil {
		gens = *p
	}
	for uint64(len(gens)) <= g {
		idx := uint64(len(gens))
		gen := &generation{done: make(chan struct{})}
		var prev *generation
		if idx > 0 {
			prev = gens[idx-1]
		}
		gens = append(gens[:len(gens):len(gens)], gen) // never share a backing array with readers
		snapshot := gens
		k.gens.Store(&snapshot)
		names := make([]string, k.size)
		for i := range names {
			names[i] = k.name(idx, uint64(i))
		}
		go func() {
			defer close(gen.done)
			if prev != nil {
				<-prev.done // generations become ready in order
			}
			if gen.err = k.create(k.bg, names); gen.err == nil {
				k.created.Add(int64(len(names)))
				k.ready.Store(int64(idx))
			}
		}()
	}
	return gens[g]
}

func (k *keyspace) wait(ctx context.Context, gen *generation) error {
	select {
	case <-gen.done:
		if gen.err != nil {
			return fmt.Errorf("create keys: %w", gen.err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// nextPut returns the key the next put writes.
func (k *keyspace) nextPut(ctx context.Context) (string, error) {
	n := k.puts.Add(1) - 1
	if k.budget == 0 {
		return k.name(0, n%k.size), nil
	}
	perGen := k.size * k.budget
	g, off := n/perGen, n%perGen
	if off >= perGen/2 {
		k.generation(g + 1)
	}
	gen := k.generation(g)
	select {
	case <-gen.done:
	default:
		k.stalls.Add(1)
	}
	if err := k.wait(ctx, gen); err != nil {
		return "", err
	}
	return k.name(g, off%k.size), nil
}

// randomGet returns a key to read: a random key of the newest generation
// that is ready, so a mixed run reads what it writes. A stale read is
// served by whichever node it reaches, which may not have applied a
// generation that was just created; it reads the one before instead.
func (k *keyspace) randomGet(rng *rand.Rand, stale bool) string {
	g := k.ready.Load()
	if stale && g > 0 {
		g--
	}
	return k.name(uint64(g), rng.Uint64N(k.size))
}
