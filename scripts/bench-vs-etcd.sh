#!/usr/bin/env bash
# Benchmarks a 3-node Coffer region against a 3-node etcd cluster on this
# machine, loopback only, with the same load generator (test/bench) and the
# same parameters for both: writes (put), then linearizable reads (get), for
# each system in turn. Prints a side-by-side table and the Coffer/etcd
# throughput ratios. Not part of `make test`: it measures, it asserts nothing.
#
#   bash scripts/bench-vs-etcd.sh
#   DURATION=15s CLIENTS=32 bash scripts/bench-vs-etcd.sh
#
# Environment:
#   DURATION     measured window per run (20s)     WARMUP      unmeasured warmup (2s)
#   CLIENTS      concurrent clients (64)           VALUE_SIZE  bytes per value (1024)
#   KEYS         distinct keys (1000)              RESULTS_DIR keep the JSON reports and logs here
#   COFFER_PORT  first Coffer gRPC port (7400; nodes use +0/+10/+20, cluster +1, gossip +2)
#   ETCD_PORT    first etcd port (23790; clients 23790/2/4, peers 23791/3/5)
#   QUIET_WAIT   seconds to wait before each run for other CPU use to stop (300)
#
# etcd keeps fsync on (no unsafe flags), as Coffer fsyncs every batch it
# appends. Everything lives under one temporary directory, removed on exit
# together with the processes this script started.
set -euo pipefail

DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-2s}
CLIENTS=${CLIENTS:-64}
VALUE_SIZE=${VALUE_SIZE:-1024}
KEYS=${KEYS:-1000}
COFFER_PORT=${COFFER_PORT:-7400}
ETCD_PORT=${ETCD_PORT:-23790}
RESULTS_DIR=${RESULTS_DIR:-}
QUIET_WAIT=${QUIET_WAIT:-300}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/coffer-bench.XXXXXX")
pids=()

cleanup() {
	local code=$?
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [ -n "$RESULTS_DIR" ]; then
		mkdir -p "$RESULTS_DIR"
		cp "$tmp"/*.json "$tmp"/*.log "$RESULTS_DIR"/ 2>/dev/null || true
	fi
	rm -rf "$tmp"
	exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "bench-vs-etcd: $*" >&2; }

fail() {
	log "$*"
	for f in "$tmp"/*.log; do
		[ -f "$f" ] || continue
		echo "--- last lines of $(basename "$f")" >&2
		tail -n 20 "$f" >&2
	done
	exit 1
}

# --- tools -----------------------------------------------------------------

if ! command -v etcd >/dev/null 2>&1; then
	log "installing etcd-server with apt-get"
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO="sudo"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-server >/dev/null
fi
command -v etcd >/dev/null 2>&1 || fail "etcd is not on PATH after installing etcd-server"

log "building cofferd and the load generator"
(cd "$root" && go build -o "$tmp/cofferd" ./cmd/cofferd)
(cd "$root/test/bench" && go build -o "$tmp/bench" .)

# --- ports -----------------------------------------------------------------

coffer_ports=() coffer_endpoints=()
for i in 0 1 2; do
	p=$((COFFER_PORT + 10 * i))
	coffer_ports+=("$p" $((p + 1)) $((p + 2)))
	coffer_endpoints+=("127.0.0.1:$p")
done
etcd_ports=() etcd_endpoints=() etcd_cluster=()
for i in 0 1 2; do
	c=$((ETCD_PORT + 2 * i)) p=$((ETCD_PORT + 2 * i + 1))
	etcd_ports+=("$c" "$p")
	etcd_endpoints+=("127.0.0.1:$c")
	etcd_cluster+=("e$i=http://127.0.0.1:$p")
done
# A port already in use would mean measuring someone else's server.
for p in "${coffer_ports[@]}" "${etcd_ports[@]}"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		fail "127.0.0.1:$p is already in use; stop what listens there or set COFFER_PORT / ETCD_PORT"
	fi
done
coffer_eps=$(IFS=,; echo "${coffer_endpoints[*]}")
etcd_eps=$(IFS=,; echo "${etcd_endpoints[*]}")

# --- clusters --------------------------------------------------------------

log "starting a 3-node Coffer region on ${coffer_eps}"
mkdir -p "$tmp/coffer" # cofferd dev writes its root key there before creating it
"$tmp/cofferd" dev --nodes 3 --grpc-addr "127.0.0.1:$COFFER_PORT" --data-dir "$tmp/coffer" \
	>"$tmp/cofferd.log" 2>&1 &
coffer_pid=$!
pids+=("$coffer_pid")

log "starting a 3-node etcd cluster ($(etcd --version | head -n 1)) on ${etcd_eps}"
initial_cluster=$(IFS=,; echo "${etcd_cluster[*]}")
etcd_pids=()
for i in 0 1 2; do
	c=$((ETCD_PORT + 2 * i)) p=$((ETCD_PORT + 2 * i + 1))
	etcd --name "e$i" --data-dir "$tmp/etcd/e$i" \
		--listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
		--listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
		--initial-cluster "$initial_cluster" --initial-cluster-state new --initial-cluster-token coffer-bench \
		--logger zap --log-outputs stderr --log-level warn \
		>"$tmp/etcd-e$i.log" 2>&1 &
	etcd_pids+=($!)
	pids+=($!)
done

# wait_ready SYSTEM ENDPOINTS PID...: until the load generator finds every
# endpoint serving, giving up when a process exits or after a minute.
wait_ready() {
	local system=$1 endpoints=$2
	shift 2
	for _ in $(seq 30); do
		for pid in "$@"; do
			kill -0 "$pid" 2>/dev/null || fail "$system exited before it was ready"
		done
		if "$tmp/bench" --target "$system" --endpoints "$endpoints" --wait-ready 2s --ready-only 2>/dev/null; then
			return 0
		fi
	done
	"$tmp/bench" --target "$system" --endpoints "$endpoints" --wait-ready 2s --ready-only ||
		fail "$system did not become ready"
}
wait_ready coffer "$coffer_eps" "$coffer_pid"
wait_ready etcd "$etcd_eps" "${etcd_pids[@]}"
log "both clusters are ready"

# --- runs ------------------------------------------------------------------

# CPU accounting, so a reader can tell whether the machine was shared: the
# machine's busy time, the system under test's, the load generator's
# (children's time, from `times`), and what is left — the idle other
# cluster, the kernel's own threads and anything else running here.
hz=$(getconf CLK_TCK)
# machine_busy prints "busy irq" jiffies: all busy time, and the interrupt
# time within it (loopback networking's softirqs), which no process is
# charged for.
machine_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $7+$8}' /proc/stat; }
process_cpu() {
	local pid total=0
	for pid in "$@"; do
		total=$((total + $(awk '{print $14+$15}' "/proc/$pid/stat")))
	done
	echo "$total"
}
# children_cpu sets kids to the CPU seconds of the waited-for children; it
# must run in this shell (not in $(...)), where those children are counted.
children_cpu() {
	times >"$tmp/times"
	kids=$(awk 'NR==2{gsub(/[ms]/," "); print ($1*60+$2+$3*60+$4)}' "$tmp/times")
}

# wait_quiet waits (up to QUIET_WAIT seconds) until the machine's CPU use,
# apart from the two clusters, stays under 5% of the machine for two
# seconds, so a run does not share the CPUs with someone else's build or
# tests.
wait_quiet() {
	local waited=0 b0 b1 p0 p1 other
	while [ "$waited" -lt "$QUIET_WAIT" ]; do
		b0=$(machine_busy) p0=$(process_cpu "$coffer_pid" "${etcd_pids[@]}")
		sleep 2
		b1=$(machine_busy) p1=$(process_cpu "$coffer_pid" "${etcd_pids[@]}")
		other=$(awk -v b0="$b0" -v b1="$b1" -v p0="$p0" -v p1="$p1" -v hz="$hz" \
			'BEGIN { split(b0, x); split(b1, y); print ((y[1] - x[1]) - (p1 - p0)) / hz / 2 }')
		if awk -v o="$other" -v n="$(nproc)" 'BEGIN { exit !(o < 0.05 * n) }'; then
			return 0
		fi
		[ "$waited" -eq 0 ] && log "waiting for the machine to be quiet (other CPU use: $other cores)"
		waited=$((waited + 2))
	done
	log "the machine is still busy after ${QUIET_WAIT}s (other CPU use: $other cores); running anyway"
}

reports=()
cpu_lines=()
bench() {
	local system=$1 op=$2 endpoints=$3
	shift 3
	local out="$tmp/$system-$op.json"
	wait_quiet
	log "$system $op: $CLIENTS clients, ${VALUE_SIZE}-byte values, $KEYS keys, $WARMUP warmup + $DURATION"
	local busy0 sut0 kids0 wall0 kids
	children_cpu
	busy0=$(machine_busy) sut0=$(process_cpu "$@") kids0=$kids wall0=$(date +%s.%N)
	"$tmp/bench" --target "$system" --endpoints "$endpoints" --op "$op" --consistency linearizable \
		--clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" \
		--value-size "$VALUE_SIZE" --keys "$KEYS" --json >"$out" ||
		fail "$system $op run failed"
	reports+=("$out")
	local busy1 sut1 kids1 wall1
	children_cpu
	busy1=$(machine_busy) sut1=$(process_cpu "$@") kids1=$kids wall1=$(date +%s.%N)
	cpu_lines+=("$(awk -v hz="$hz" -v n="$(nproc)" -v b0="$busy0" -v b1="$busy1" -v s0="$sut0" -v s1="$sut1" \
		-v k0="$kids0" -v k1="$kids1" -v w0="$wall0" -v w1="$wall1" -v name="$system $op" 'BEGIN {
		split(b0, x); split(b1, y)
		busy = (y[1] - x[1]) / hz; irq = (y[2] - x[2]) / hz; sut = (s1 - s0) / hz; gen = k1 - k0
		other = busy - irq - sut - gen
		if (other < 0) other = 0
		avail = (w1 - w0) * n
		printf "%-10s %5.1f of %5.1f core-s busy: servers %5.1f, load generator %5.1f, irq/softirq %4.1f, other %4.1f%s",
			name, busy, avail, sut, gen, irq, other, (other > 0.05 * avail ? "  <- shared machine: not comparable" : "") }')")
}

bench coffer put "$coffer_eps" "$coffer_pid"
bench coffer get "$coffer_eps" "$coffer_pid"
bench etcd put "$etcd_eps" "${etcd_pids[@]}"
bench etcd get "$etcd_eps" "${etcd_pids[@]}"

echo
echo "Coffer (3 nodes, cofferd dev) vs etcd (3 members, $(etcd --version | head -n 1 | awk '{print $3}')) on $(nproc) cores, loopback"
echo
"$tmp/bench" compare "${reports[@]}"
echo
echo "CPU during each run, in core-seconds (setup, warmup and window; irq/softirq partly overlaps the"
echo "processes' own time; other = the idle other cluster, kernel threads, anything else on the machine):"
printf '  %s\n' "${cpu_lines[@]}"
