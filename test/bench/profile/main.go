package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	metrics "github.com/armon/go-metrics"

	"github.com/cofferhq/coffer/node"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/storage/kms"
	"github.com/cofferhq/coffer/test/bench/load"
	"github.com/cofferhq/coffer/test/testkit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	load      load.Config
	basePort  int
	out       string
	nodecount int
	traceFor  time.Duration
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts := options{load: load.DefaultConfig()}
	cfg := &opts.load
	cfg.Duration = 15 * time.Second
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Op, "op", cfg.Op, "put, get or mixed")
	fs.Float64Var(&cfg.ReadRatio, "read-ratio", cfg.ReadRatio, "share of gets in a mixed run")
	fs.StringVar(&cfg.Consistency, "consistency", cfg.Consistency, "linearizable or stale")
	fs.IntVar(&cfg.Clients, "clients", cfg.Clients, "concurrent clients")
	fs.IntVar(&cfg.ClientsPerConn, "clients-per-conn", cfg.ClientsPerConn, "clients sharing one connection")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured (and profiled) window")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unprofiled warmup")
	fs.IntVar(&cfg.ValueSize, "value-size", cfg.ValueSize, "bytes per value")
	fs.IntVar(&cfg.Keys, "keys", cfg.Keys, "distinct secrets")
	fs.IntVar(&opts.basePort, "base-port", 0, "node i's gRPC port is base+10*i on 127.0.0.1, cluster +1, gossip +2 (0: free ports picked at random)")
	fs.StringVar(&opts.out, "out", "", "directory for data and profiles (default: a new temporary directory, kept)")
	fs.IntVar(&opts.nodecount, "nodecount", 30, "rows of each pprof -top")
	fs.DurationVar(&opts.traceFor, "trace", 3*time.Second, "runtime trace at the start of the window, for syscall and sync blocking (0: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Target = load.TargetCoffer
	if opts.out == "" {
		dir, err := os.MkdirTemp("", "coffer-profile-")
		if err != nil {
			return err
		}
		opts.out = dir
	} else if err := os.MkdirAll(opts.out, 0o700); err != nil {
		return err
	}

	inm := metrics.NewInmemSink(time.Second, 10*time.Minute)
	mc := metrics.DefaultConfig("coffer")
	mc.EnableHostname, mc.EnableRuntimeMetrics = false, false
	if _, err := metrics.NewGlobal(mc, inm); err != nil {
		return err
	}

	region, err := startRegion(ctx, opts.out, opts.basePort, stderr)
	if err != nil {
		return err
	}
	defer region.Stop()
	cfg.Endpoints = nil
	for i := range region.N() {
		cfg.Endpoints = append(cfg.Endpoints, region.Node(i).Addr())
	}

	prof := &profiler{dir: opts.out, traceFor: opts.traceFor}
	cfg.Phase = prof.phase
	var report *load.Report
	// The label marks the load generator's goroutines (and those they
	// start, such as its gRPC transports), so the CPU profile can be split
	// into server and client time.
	pprof.Do(ctx, pprof.Labels("bench", "client"), func(ctx context.Context) {
		var target load.Target
		if target, err = load.Open(*cfg); err != nil {
			return
		}
		defer target.Close()
		report, err = load.Run(ctx, *cfg, target, stderr)
	})
	prof.phase(load.MeasureEnd) // in case the run ended early
	if err != nil {
		return err
	}
	if perr := prof.error(); perr != nil {
		return perr
	}
	if err := report.WriteText(stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nGOMAXPROCS %d; profiles in %s\n", runtime.GOMAXPROCS(0), opts.out)
	prof.printCPU(stdout)
	printRaftMetrics(stdout, inm, prof.started, prof.stopped)
	return prof.print(stdout, opts.nodecount)
}

// startRegion starts three nodes on loopback the way `cofferd dev --nodes 3`
// does (node.StartRegion) and waits until all serve and the region has
// three voters.
func startRegion(ctx context.Context, dir string, basePort int, stderr io.Writer) (*node.Region, error) {
	rootFile := filepath.Join(dir, "root.key")
	if err := kms.GenerateKeyFile(rootFile); err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// Fixed ports risk meeting another program on a shared machine; free
	// ones picked at random only risk a rare race, which StartRegion
	// survives by picking again.
	ports := node.BasePorts(testkit.Host, basePort, false)
	if basePort == 0 {
		ports = func(int) (node.Ports, error) {
			var p node.Ports
			var err error
			for _, a := range []*string{&p.GRPC, &p.Cluster, &p.Gossip} {
				if *a, err = testkit.ProbeAddr(true); err != nil {
					return p, err
				}
			}
			return p, nil
		}
	}
	ready, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	region, err := node.StartRegion(ready, node.RegionSpec{
		Nodes:  3,
		Dir:    dir,
		NodeID: func(i int) string { return fmt.Sprintf("dev-%d", i+1) },
		Ports:  ports,
		Options: func(m node.Member) (node.Options, error) {
			root, err := kms.FileSeal{Path: rootFile}.RootKey()
			if err != nil {
				return node.Options{}, err
			}
			rc := replication.DefaultConfig()
			// As in cofferd dev: fast membership changes on one machine.
			rc.Autopilot.Interval = 500 * time.Millisecond
			rc.Autopilot.StableFor = time.Second
			nl := log.With("node", m.ID)
			rc.Logger = nl
			return node.Options{
				Service: server.DefaultConfig(),
				Raft:    rc,
				RootKey: root,
				Logger:  nl,
				// As in cofferd dev: gRPC calls need no credentials.
				AllowAnonymous: true,
			}, nil
		},
	})
	if err != nil {
		return nil, err
	}
	if err := region.WaitVoters(ready); err != nil {
		_ = region.Stop()
		return nil, err
	}
	fmt.Fprintf(stderr, "region ready: leader %s, 3 voters\n", region.Node(region.Running()[0]).Raft().Leader())
	return region, nil
}

// profiler profiles the measured window: CPU, mutex and block profiles
// for all of it, a runtime trace for its first traceFor.
type profiler struct {
	dir      string
	traceFor time.Duration

	mu               sync.Mutex
	cpu, tracing     *os.File
	started, stopped time.Time
	// usage0 and usage1 are this process's and the machine's CPU time at
	// the window's edges, to tell whether something else shared the CPUs.
	usage0, usage1 cpuUsage
	errs           []error
}

// cpuUsage is CPU time used so far, by this process and by the machine.
type cpuUsage struct {
	self, machine time.Duration
}

func readCPUUsage() cpuUsage {
	var u cpuUsage
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		u.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	// /proc/stat's first line: cpu user nice system idle iowait irq softirq
	// steal ..., in USER_HZ ticks (100 per second on Linux). Only user,
	// nice and system compare with a process's own time: interrupt time is
	// charged to no process.
	if raw, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(raw), "\n")
		f := strings.Fields(line)
		for _, i := range []int{1, 2, 3} {
			if i < len(f) {
				var ticks int64
				_, _ = fmt.Sscan(f[i], &ticks)
				u.machine += time.Duration(ticks) * 10 * time.Millisecond
			}
		}
	}
	return u
}

func (p *profiler) phase(ph load.Phase) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case ph == load.MeasureStart && p.started.IsZero():
		p.started, p.usage0 = time.Now(), readCPUUsage()
		runtime.SetMutexProfileFraction(10)
		runtime.SetBlockProfileRate(int(100 * time.Microsecond))
		if p.cpu = p.create("cpu.pprof"); p.cpu != nil {
			p.fail(pprof.StartCPUProfile(p.cpu))
		}
		if p.traceFor > 0 {
			if p.tracing = p.create("trace.out"); p.tracing != nil {
				p.fail(trace.Start(p.tracing))
				time.AfterFunc(p.traceFor, p.stopTrace)
			}
		}
	case ph == load.MeasureEnd && !p.started.IsZero() && p.stopped.IsZero():
		p.stopped, p.usage1 = time.Now(), readCPUUsage()
		pprof.StopCPUProfile()
		p.fail(p.cpu.Close())
		p.mu.Unlock()
		p.stopTrace()
		p.mu.Lock()
		for _, name := range []string{"mutex", "block"} {
			if f := p.create(name + ".pprof"); f != nil {
				p.fail(pprof.Lookup(name).WriteTo(f, 0))
				p.fail(f.Close())
			}
		}
		runtime.SetMutexProfileFraction(0)
		runtime.SetBlockProfileRate(0)
	}
}

func (p *profiler) stopTrace() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tracing != nil {
		trace.Stop()
		p.fail(p.tracing.Close())
		p.tracing = nil
	}
}

func (p *profiler) create(name string) *os.File {
	f, err := os.Create(filepath.Join(p.dir, name))
	p.fail(err)
	return f
}

func (p *profiler) fail(err error) {
	if err != nil {
		p.errs = append(p.errs, err)
	}
}

func (p *profiler) error() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.errs...)
}

// printCPU says how busy the machine was over the window and how much of
// that was this process (the three nodes and the load generator).
func (p *profiler) printCPU(w io.Writer) {
	window := p.stopped.Sub(p.started)
	self, machine := p.usage1.self-p.usage0.self, p.usage1.machine-p.usage0.machine
	avail := time.Duration(runtime.NumCPU()) * window
	fmt.Fprintf(w, "CPU over the %.1fs window (user+system): this process %.1f core-s, whole machine %.1f of %.1f core-s (%.0f%%)",
		window.Seconds(), self.Seconds(), machine.Seconds(), avail.Seconds(), 100*machine.Seconds()/avail.Seconds())
	if other := machine - self; other > avail/20 {
		fmt.Fprintf(w, "; %.1f core-s were someone else's: the profile is not clean", other.Seconds())
	}
	fmt.Fprintln(w)
}

// print runs go tool pprof -top on every profile taken.
func (p *profiler) print(w io.Writer, nodecount int) error {
	n := fmt.Sprint(nodecount)
	cpu := filepath.Join(p.dir, "cpu.pprof")
	sections := []struct {
		title string
		args  []string
	}{
		{"CPU, whole process (server + load generator)", []string{"-top", "-nodecount", n, cpu}},
		{"CPU, server only (without bench=client)", []string{"-top", "-nodecount", n, "-tagignore", "bench=client", cpu}},
		{"CPU, server only, cumulative", []string{"-top", "-cum", "-nodecount", n, "-tagignore", "bench=client", cpu}},
		{"CPU, load generator only", []string{"-top", "-nodecount", "10", "-tagfocus", "bench=client", cpu}},
		// The in-memory metrics sink's own lock is this command's overhead,
		// not Coffer's (cofferd installs no sink), so it is left out.
		{"Lock contention (mutex profile, delay; go-metrics sink excluded)", []string{"-top", "-nodecount", n, "-ignore", "go-metrics", filepath.Join(p.dir, "mutex.pprof")}},
		{"Blocking (block profile, delay)", []string{"-top", "-nodecount", n, filepath.Join(p.dir, "block.pprof")}},
	}
	if p.traceFor > 0 {
		traceFile := filepath.Join(p.dir, "trace.out")
		for _, kind := range []string{"syscall", "sync"} {
			prof := filepath.Join(p.dir, "trace-"+kind+".pprof")
			out, err := exec.Command("go", "tool", "trace", "-pprof="+kind, traceFile).Output()
			if err != nil {
				fmt.Fprintf(w, "\ngo tool trace -pprof=%s: %v\n", kind, err)
				continue
			}
			if err := os.WriteFile(prof, out, 0o644); err != nil {
				return err
			}
			sections = append(sections, struct {
				title string
				args  []string
			}{fmt.Sprintf("%s blocking, from %s of runtime trace", kind, p.traceFor), []string{"-top", "-nodecount", n, prof}})
		}
	}
	for _, s := range sections {
		fmt.Fprintf(w, "\n=== %s\n", s.title)
		cmd := exec.Command("go", append([]string{"tool", "pprof"}, s.args...)...)
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(w, "go tool pprof: %v\n", err)
		}
	}
	return nil
}

// printRaftMetrics sums Raft's samples over the measured window.
func printRaftMetrics(w io.Writer, inm *metrics.InmemSink, from, to time.Time) {
	samples := map[string]*metrics.AggregateSample{}
	gauges := map[string][]float32{}
	for _, iv := range inm.Data() {
		iv.RLock()
		if iv.Interval.Before(from.Truncate(time.Second)) || iv.Interval.After(to) {
			iv.RUnlock()
			continue
		}
		for name, s := range iv.Samples {
			if !strings.HasPrefix(name, "coffer.raft.") {
				continue
			}
			agg := samples[name]
			if agg == nil {
				agg = &metrics.AggregateSample{}
				samples[name] = agg
			}
			agg.Count += s.Count
			agg.Sum += s.Sum
			agg.Max = max(agg.Max, s.Max)
		}
		for name, g := range iv.Gauges {
			if strings.HasPrefix(name, "coffer.raft.") {
				gauges[name] = append(gauges[name], g.Value)
			}
		}
		iv.RUnlock()
	}
	secs := to.Sub(from).Seconds()
	fmt.Fprintf(w, "\n=== Raft metrics over the measured window (%.1fs), all three nodes together\n", secs)
	fmt.Fprintf(w, "%-58s %10s %10s %10s %10s\n", "metric", "count", "count/s", "mean", "max")
	for _, name := range slices.Sorted(maps.Keys(samples)) {
		s := samples[name]
		if s.Count == 0 {
			continue
		}
		fmt.Fprintf(w, "%-58s %10d %10.0f %10.3f %10.3f\n", strings.TrimPrefix(name, "coffer."), s.Count,
			float64(s.Count)/secs, s.Sum/float64(s.Count), s.Max)
	}
	fmt.Fprintln(w, "(timers in ms; logsPerBatch, logBatchSize and applyBatchNum are sizes)")
	for _, name := range slices.Sorted(maps.Keys(gauges)) {
		vs := gauges[name]
		var sum float64
		for _, v := range vs {
			sum += float64(v)
		}
		fmt.Fprintf(w, "gauge %-52s last-per-second mean %.1f\n", strings.TrimPrefix(name, "coffer."), sum/float64(len(vs)))
	}
}
