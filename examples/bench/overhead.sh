#!/usr/bin/env bash
# make bench: what the agent costs a saturated server. wrk drives the Go
# example as hard as it can, in interleaved rounds without and with the
# agent, and the medians are compared side by side in one run (machines are
# noisy: never compare numbers from different runs). With the agent, the
# kernel's per-program BPF run time is collected (kernel.bpf_stats_enabled)
# and the agent's own CPU time and memory are reported.
#
# Needs root, wrk (apt-get install wrk) and bpftool. Env: ROUNDS (3),
# SECONDS_PER_RUN (8), CONNS (32).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
DUR=${SECONDS_PER_RUN:-8}
CONNS=${CONNS:-32}
PORT=18900
APORT=19900
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench: needs root"; exit 1; }

go build -o bin/pausewatch ./agent/cmd/pausewatch
go build -o bin/example-go ./examples/go
work=$(mktemp -d)
cleanup() { kill "${SRV:-}" "${AG:-}" 2>/dev/null || true; sysctl -qw kernel.bpf_stats_enabled=0 || true; rm -rf "$work"; }
trap cleanup EXIT

# The server on CPU 0, wrk on CPU 1: the agent and the kernel's BPF work
# compete with whichever they land on, as they would on a node.
OTEL_SERVICE_NAME=bench GOMAXPROCS=1 taskset -c 0 bin/example-go -listen 127.0.0.1:$PORT -churn-mb 0 >/dev/null 2>&1 &
SRV=$!
sleep 1

run_wrk() { # prints "rps p99_ms"
	taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$PORT/" >"$work/wrk.txt"
	local rps p99
	rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
	p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' "$work/wrk.txt")
	echo "$rps $p99"
}

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

taskset -c 1 wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$PORT/" >/dev/null # warm up
: >"$work/without"; : >"$work/with"
sysctl -qw kernel.bpf_stats_enabled=1
for r in $(seq "$ROUNDS"); do
	read -r rps p99 < <(run_wrk)
	echo "$rps $p99" >>"$work/without"
	printf 'round %d without agent: %10.0f req/s  p99 %7.3f ms\n' "$r" "$rps" "$p99"

	bin/pausewatch --listen 127.0.0.1:$APORT --log-level warn >"$work/agent.log" 2>&1 &
	AG=$!
	until curl -sf "http://127.0.0.1:$APORT/readyz" >/dev/null; do sleep 0.1; done
	t0=$(cpu_ticks $AG)
	read -r rps p99 < <(run_wrk)
	t1=$(cpu_ticks $AG)
	reqs=$(curl -s "http://127.0.0.1:$APORT/metrics" | awk '/^pausewatch_request_duration_seconds_count.*service="bench"/ {s+=$2} END {print s+0}')
	rss=$(awk '/VmRSS/ {print $2}' /proc/$AG/status)
	bpftool -j prog show >"$work/progs.json"
	kill -TERM $AG; wait $AG || true; AG=
	echo "$rps $p99" >>"$work/with"
	printf 'round %d with agent:    %10.0f req/s  p99 %7.3f ms  (agent: %.2f s CPU, %d MiB RSS, %d requests seen)\n' \
		"$r" "$rps" "$p99" "$(echo "($t1-$t0)/100" | bc -l)" "$((rss / 1024))" "$reqs"
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
rps0=$(cut -d' ' -f1 "$work/without" | median); rps1=$(cut -d' ' -f1 "$work/with" | median)
p990=$(cut -d' ' -f2 "$work/without" | median); p991=$(cut -d' ' -f2 "$work/with" | median)
echo
printf 'median throughput: %.0f -> %.0f req/s   ratio with/without = %.3f  (aim >= 0.97)\n' "$rps0" "$rps1" "$(echo "$rps1/$rps0" | bc -l)"
printf 'median p99:        %.3f -> %.3f ms    added = %+.1f %%  (aim <= 5 %%)\n' "$p990" "$p991" "$(echo "($p991/$p990-1)*100" | bc -l)"
spread() { sort -n | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%.0f..%.0f", lo, hi}'; }
printf 'spread of the rounds (noise floor): without %s req/s, with %s req/s\n' \
	"$(cut -d' ' -f1 "$work/without" | spread)" "$(cut -d' ' -f1 "$work/with" | spread)"
echo
echo "BPF run time per program during the last round (kernel.bpf_stats_enabled):"
python3 - "$work/progs.json" <<'PY'
import json, sys
progs = [p for p in json.load(open(sys.argv[1])) if p.get("run_cnt")]
total = sum(p["run_time_ns"] for p in progs)
for p in sorted(progs, key=lambda p: -p["run_time_ns"])[:12]:
    print("  %-22s %12d runs %8.0f ns/run %7.3f s" % (p.get("name", "?"), p["run_cnt"], p["run_time_ns"] / p["run_cnt"], p["run_time_ns"] / 1e9))
print("  total %.3f s of BPF time" % (total / 1e9))
PY
