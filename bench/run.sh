#!/usr/bin/env bash
# bench/run.sh: Parley's benchmark suite. See --help and docs/performance.md.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: bench/run.sh [--quick] [--only LIST] [--update-docs] [--haproxy] [--help]

Starts a local cluster of its own (redis-server on a free loopback port with
persistence off: no RDB snapshots, no AOF, so the numbers measure Parley and
not the disk; K=2 `parley serve --dev-auth` gateways on free loopback ports),
runs the standard scenarios with `parley bench --json`, prints one summary
table, and stops exactly the processes it started (by PID, from a trap).

Scenarios, by their --only names (sizes of the full run, 12 to 15 minutes on
2 cores; --quick uses smaller ones, about 3 minutes):
  idle       10,000 idle connections on gateway 1: resident memory per connection
  fanout     one room of 2,000 members, publish rate stepped 2, 5, 10, 20, 40, ...
             until p99 > 100 ms or delivery falls behind: max deliveries/s
  raw        the same steps against `parley bench --raw-serve` (a raw WebSocket
             fan-out server in its own process: no Redis, no gateway logic):
             the machine's fan-out ceiling
  many       1,000 rooms x 5 members, 1,000 messages/s: latency, gateway CPU,
             Redis commands per published message
  scaling    the many-rooms shape at 3x the rate (3,000 msgs/s) on 1 gateway
             and on 2: delivered/s of each and the ratio
  capped     scaling where the gateways are the bottleneck: each gateway
             capped at 0.25 core (cgroup; BENCH_CAP_CORES), the many-rooms
             shape stepped 250, 500, 750, ... msgs/s until p99 >= 50 ms, on 1
             gateway and on 2: max sustainable delivered/s of each (needs root
             and a cgroup cpu controller; reported as skipped otherwise)
  storm      2,000 clients resume at once, 20 missed messages each
  redis      redis-benchmark ceilings: PUBLISH, and EVALSHA of the publish
             script (extracted from pkg/broker/redis/scripts.go), with the
             Redis CPU it took
  cluster    1 Redis against a 3-master Redis Cluster (no replicas,
             persistence off) on this machine, side by side: redis-benchmark
             --cluster EVALSHA of the publish script (keys in a {tag} that
             redis-benchmark spreads over every master's slots) against the
             single Redis's; then 1,000 rooms x 5 on 2 gateways with --redis
             and on 2 with --redis-cluster, stepped 1000, 2000, 3000, ...
             msgs/s until p99 >= 50 ms or delivery falls behind: max
             sustainable publishes/s of each and the CPU of each Redis process
             at that rate; and what history costs in Redis (MEMORY USAGE of
             full room logs, used_memory per idempotency key). The load
             generator, the gateways and Redis share this machine's cores, so
             the end-to-end figure is the machine's, and the per-shard Redis
             CPU is what shows the spread

Results: bench/results/<timestamp>.json and .md (gitignored) and a chart
bench/results/<timestamp>-fanout.svg (and .png when chromium is installed).

Options:
  --quick        smaller sizes and shorter steps (a smoke run)
  --only LIST    run only these scenarios (comma-separated: idle, fanout, raw,
                 many, scaling, capped, storm, redis, cluster); the table and
                 the results hold only them (also BENCH_ONLY=LIST)
  --update-docs  also copy the chart to docs/perf-fanout.svg (and .png)
  --haproxy      put haproxy (leastconn) in front of the gateways for the
                 scaling scenario; default off
  --help         this text

Environment:
  PARLEY_BIN        the gateway binary (default: go build ./cmd/parley into a
                    temp dir)
  PARLEY_BENCH_BIN  the load generator binary; it needs --hold and
                    --raw-ceiling, so it defaults to a build of this tree
  BENCH_SOURCES     local source addresses (default 127.0.0.1-127.0.0.16)
  BENCH_CAP_CORES   CPU of each gateway in the capped scaling scenario (default 0.25)
  BENCH_ONLY        as --only
EOF
}

SCENARIOS="idle fanout raw many scaling capped storm redis cluster"
QUICK=0 UPDATE_DOCS=0 HAPROXY=0 ONLY=${BENCH_ONLY:-}
while (($#)); do
	case "$1" in
	--quick) QUICK=1 ;;
	--update-docs) UPDATE_DOCS=1 ;;
	--haproxy) HAPROXY=1 ;;
	--only=*) ONLY=${1#--only=} ;;
	--only)
		(($# > 1)) || { echo "bench/run.sh: --only needs a list of scenarios (--help)" >&2; exit 2; }
		ONLY=$2
		shift
		;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench/run.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
	esac
	shift
done
ONLY=${ONLY//,/ }
for s in $ONLY; do
	[[ " $SCENARIOS " == *" $s "* ]] || { echo "bench/run.sh: unknown scenario $s (one of: $SCENARIOS)" >&2; exit 2; }
done
# run NAME: whether scenario NAME is part of this run.
run() { [[ -z $ONLY || " $ONLY " == *" $1 "* ]]; }
RAN=()
for s in $SCENARIOS; do
	! run "$s" || RAN+=("$s")
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/parley-bench.XXXXXX)
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	! declare -F uncap_all >/dev/null || uncap_all
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Sizes.
SOURCES=${BENCH_SOURCES:-127.0.0.1-127.0.0.16}
if ((QUICK)); then
	IDLE_CONNS=2000 FAN_CONNS=500 FAN_RATES="10 40 160" RAW_RATES="10 40 160 640"
	STEP_WARMUP=1s STEP_SECS=3 MANY_CONNS=1000 MANY_RATE=200 SCALE_RATE=600 MANY_WARMUP=2 MANY_SECS=5
	STORM_CONNS=500 STORM_ROOMS=25 REDIS_N=20000 CAP_RATES="100 200 400" CAP_SECS=3
	CL_CONNS=1000 CL_RATES="1000 3000" CL_WARMUP=2 CL_SECS=4
else
	IDLE_CONNS=10000 FAN_CONNS=2000
	FAN_RATES="2 5 10 15 20 30 40 60 80 120 160 240 320" RAW_RATES=$FAN_RATES
	STEP_WARMUP=3s STEP_SECS=10 MANY_CONNS=5000 MANY_RATE=1000 SCALE_RATE=3000 MANY_WARMUP=3 MANY_SECS=15
	STORM_CONNS=2000 STORM_ROOMS=100 REDIS_N=100000
	CAP_RATES="250 500 750 1000 1250 1500 2000 2500 3000" CAP_SECS=8
	CL_CONNS=5000 CL_RATES="1000 2000 3000 4000 5000 6000 8000" CL_WARMUP=5 CL_SECS=5
fi
# CL_WARMUP of the cluster steps outlasts the joins: each of the CL_CONNS
# joins writes presence off the request path, and those writes are still
# draining a few seconds into publishing (longer through a Cluster client).
CAP_CORES=${BENCH_CAP_CORES:-0.25} # CPU of each gateway in the capped scaling scenario
CAP_P99=50                         # ms: a capped step is sustainable below this p99
STORM_MSGS=20
SCENARIO_TIMEOUT=180 # seconds, per bench invocation

# busy_cores: how many cores something else keeps busy, over one second
# (from /proc/stat), so a run on a shared machine says so in its summary.
busy_cores() {
	local a b
	a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat)
	sleep 1
	b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat)
	awk -v a="$a" -v b="$b" -v n="$(nproc)" 'BEGIN {
		split(a, x, " "); split(b, y, " "); busy = y[1] - x[1]; idle = y[2] - x[2]
		printf "%.2f\n", (busy + idle > 0) ? n * busy / (busy + idle) : 0 }'
}
BUSY_BEFORE=$(busy_cores)
STAT0=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat) WALL0=$(date +%s.%N)
if awk -v b="$BUSY_BEFORE" 'BEGIN {exit !(b > 0.2)}'; then
	log "WARNING: $BUSY_BEFORE cores are busy before the suite starts; results will be low and noisy"
fi

# Binaries.
if [[ -z ${PARLEY_BENCH_BIN:-} || -z ${PARLEY_BIN:-} ]]; then
	log "building parley from $ROOT"
	(cd "$ROOT" && go build -o "$TMP/parley" ./cmd/parley)
fi
GW_BIN=${PARLEY_BIN:-$TMP/parley}
BENCH_BIN=${PARLEY_BENCH_BIN:-$TMP/parley}

# CPU caps for the capped scaling scenario: one cgroup per gateway under the
# cgroup v1 cpu controller (/sys/fs/cgroup/cpu) or cgroup v2 (cpu.max), with
# a 10 ms period so a capped gateway is throttled in small slices.
CG_V1=/sys/fs/cgroup/cpu CG_V2=/sys/fs/cgroup CAPPED=()
cap_root() {
	if [[ -w $CG_V1/cgroup.procs && -e $CG_V1/cpu.cfs_quota_us ]]; then
		echo v1
	elif [[ -w $CG_V2/cgroup.procs && -e $CG_V2/cgroup.subtree_control ]] &&
		grep -qw cpu "$CG_V2/cgroup.subtree_control" 2>/dev/null; then
		echo v2
	fi
}
# cap PID N: move PID into cgroup N, capped at CAP_CORES.
cap() {
	local quota
	quota=$(awk -v c="$CAP_CORES" 'BEGIN {printf "%d", c * 10000}')
	case $(cap_root) in
	v1)
		local g=$CG_V1/parley-bench-$$-$2
		mkdir -p "$g" && echo 10000 >"$g/cpu.cfs_period_us" && echo "$quota" >"$g/cpu.cfs_quota_us" &&
			echo "$1" >"$g/cgroup.procs" && CAPPED+=("$g")
		;;
	v2)
		local g=$CG_V2/parley-bench-$$-$2
		mkdir -p "$g" && echo "$quota 10000" >"$g/cpu.max" && echo "$1" >"$g/cgroup.procs" && CAPPED+=("$g")
		;;
	*) return 1 ;;
	esac
}
# uncap_all: move every capped process back to the root group, remove the groups.
uncap_all() {
	local g root pid
	for g in "${CAPPED[@]}"; do
		root=$(dirname "$g")
		[[ -e $g/cgroup.procs ]] || continue
		while read -r pid; do
			echo "$pid" >"$root/cgroup.procs" 2>/dev/null || true
		done <"$g/cgroup.procs"
		rmdir "$g" 2>/dev/null || true
	done
	CAPPED=()
}

# free_port prints a loopback TCP port nothing listens on (bounded tries).
free_port() {
	local i p
	for ((i = 0; i < 100; i++)); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	echo "bench/run.sh: no free port" >&2
	return 1
}

# wait_for CMD...: retry CMD every 0.1 s for at most 10 s.
wait_for() {
	local i
	for ((i = 0; i < 100; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	echo "bench/run.sh: timed out waiting for: $*" >&2
	return 1
}

# Redis: persistence off (no RDB, no AOF) in its own temp dir.
RP=$(free_port)
mkdir -p "$TMP/redis"
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP/redis" \
	--logfile "$TMP/redis.log" --maxclients 20000 &
PIDS+=($!)
REDIS_PID=$!
wait_for redis-cli -p "$RP" ping
log "redis-server on 127.0.0.1:$RP (persistence off), pid $REDIS_PID"

GW_PIDS=() GW_URLS=()
for i in 1 2; do
	p=$(free_port)
	"$GW_BIN" serve --dev-auth --addr "127.0.0.1:$p" --redis "redis://127.0.0.1:$RP/0" \
		--node-id "gw-$i" --log-level warn >"$TMP/gw$i.log" 2>&1 &
	PIDS+=($!)
	GW_PIDS+=($!)
	GW_URLS+=("ws://127.0.0.1:$p/ws")
	wait_for curl -fsS "http://127.0.0.1:$p/readyz"
	log "gateway gw-$i on 127.0.0.1:$p, pid $!"
done

SCALE_URLS=(--url "${GW_URLS[0]}" --url "${GW_URLS[1]}")
if ((HAPROXY)); then
	HP=$(free_port)
	cat >"$TMP/haproxy.cfg" <<EOF
global
  maxconn 40000
defaults
  mode http
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
frontend fe
  bind 127.0.0.1:$HP
  default_backend gws
backend gws
  balance leastconn
  server gw1 ${GW_URLS[0]#ws://} check
  server gw2 ${GW_URLS[1]#ws://} check
EOF
	sed -i 's|/ws check| check|' "$TMP/haproxy.cfg"
	haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 &
	PIDS+=($!)
	wait_for curl -fsS "http://127.0.0.1:$HP/readyz"
	SCALE_URLS=(--url "ws://127.0.0.1:$HP/ws")
	log "haproxy on 127.0.0.1:$HP, pid ${PIDS[-1]}"
fi

OUT=$TMP/out
mkdir -p "$OUT"

# bench FILE ARGS...: one bounded `parley bench --json` run; stdout to FILE,
# stderr to FILE.err. Never fails the suite (gaps are reported, not fatal).
bench() {
	local f=$1
	shift
	timeout "$SCENARIO_TIMEOUT" "$BENCH_BIN" bench --sources "$SOURCES" --json "$@" >"$f" 2>"$f.err" || true
	if ! jq -e .connections "$f" >/dev/null 2>&1; then
		log "bench $* failed: $(tail -n 2 "$f.err" | tr '\n' ' ')"
		echo '{}' >"$f"
	fi
}

# forget PID...: drop PIDs that were stopped and reaped from PIDS, so the
# trap never signals a number the kernel may have given to someone else.
forget() {
	local keep=() p q drop
	for p in "${PIDS[@]}"; do
		drop=0
		for q in "$@"; do [[ $p != "$q" ]] || drop=1; done
		((drop)) || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}
# stop PID...: stop processes this script started, wait for them, forget them.
stop() {
	local pid
	for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
	for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
	forget "$@"
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { # utime + stime of every pid given, in clock ticks
	local t=0 pid
	for pid in "$@"; do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
	done
	echo "$t"
}
# ticks_each PID...: utime + stime of each pid, space-separated.
ticks_each() {
	local pid out=()
	for pid in "$@"; do out+=("$(awk '{print $14 + $15}' "/proc/$pid/stat")"); done
	echo "${out[*]}"
}
# cores_json "TICKS0" "TICKS1" SECONDS: each process's CPU between two
# ticks_each samples, in cores, as a JSON array.
cores_json() {
	awk -v a="$1" -v b="$2" -v dt="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN {
		n = split(a, x, " "); split(b, y, " "); s = "["
		for (i = 1; i <= n; i++) s = s (i > 1 ? "," : "") sprintf("%.3f", (dt > 0) ? (y[i] - x[i]) / hz / dt : 0)
		print s "]" }'
}
redis_stat() { redis-cli -p "${2:-$RP}" INFO "$1" | tr -d '\r'; }
# evalsha_calls [PORT...]: EVALSHA calls served (by the single Redis, or
# summed over the given ports), from INFO commandstats.
evalsha_calls() {
	local p t=0
	for p in "${@:-$RP}"; do
		t=$((t + $(redis_stat commandstats "$p" | awk -F'[=,:]' '/^cmdstat_evalsha:/ {print $3; f=1} END {if (!f) print 0}')))
	done
	echo "$t"
}
total_cmds() { redis_stat stats | awk -F: '/^total_commands_processed:/ {print $2}'; }
now() { date +%s.%N; }

# step_json MEMBERS FILE: one fan-out step as a summary object.
step_json() {
	jq -c --argjson m "$1" 'if .connections then {
		rate: .config.rate, sent_per_sec, delivered_per_sec,
		expected_per_sec: (.sent_per_sec * $m),
		p50: .latency_ms.p50, p99: .latency_ms.p99, missing, gaps, duplicates, dropped, closes, errors,
		ok: (.latency_ms.p99 < 100 and .delivered_per_sec >= 0.95 * .sent_per_sec * $m
			and .missing == 0 and .gaps == 0 and .duplicates == 0 and .dropped == 0)
	} else {ok: false, error: "bench failed"} end' "$2"
}

# stepwise NAME RATES STEP ARGS...: runs `STEP RATE NAME ARGS...` (one step,
# printing its summary object with .ok) for each rate in turn, until a step
# is not sustainable; a failed step gets one retry, so one noisy run does not
# end the stepping. Every recorded step goes to $OUT/NAME.steps.
stepwise() {
	local name=$1 rates=$2 step=$3 r s try
	shift 3
	: >"$OUT/$name.steps"
	for r in $rates; do
		for try in 1 2; do
			log "$name: $r msgs/s$( ((try == 1)) || echo ' (retry)')"
			s=$("$step" "$r" "$name" "$@")
			[[ $(jq -r .ok <<<"$s") == true ]] && break
		done
		echo "$s" >>"$OUT/$name.steps"
		log "$name: $(jq -r '"delivered/s \(.delivered_per_sec // 0 | floor) p50 \(.p50 // "-") p99 \(.p99 // "-") ok \(.ok)"' <<<"$s")"
		[[ $(jq -r .ok <<<"$s") == true ]] || break
	done
}

# fanout_step RATE NAME MEMBERS URLARGS...: one fan-out step into one room.
fanout_step() {
	local r=$1 name=$2 members=$3 s
	shift 3
	bench "$OUT/$name-$r.json" "$@" --conns "$members" --rooms 1 --rate "$r" \
		--warmup "$STEP_WARMUP" --duration "${STEP_SECS}s" --drain 3s --quiet
	s=$(step_json "$members" "$OUT/$name-$r.json")
	[[ $s == *'"rate"'* ]] || s=$(jq -c --argjson r "$r" '. + {rate: $r}' <<<"$s")
	echo "$s"
}

# many NAME URLARGS RATE PIDS...: run the many-rooms load in the background,
# sample CPU of PIDS and Redis counters over the measured window.
many() {
	local name=$1 urls=$2 rate=$3
	shift 3
	local f=$OUT/$name.json i t0 t1 c0 c1 e0 e1 n0 n1
	# shellcheck disable=SC2086
	timeout "$SCENARIO_TIMEOUT" "$BENCH_BIN" bench --sources "$SOURCES" --json $urls \
		--conns "$MANY_CONNS" --members 5 --rate "$rate" --warmup "${MANY_WARMUP}s" \
		--duration "${MANY_SECS}s" >"$f" 2>"$f.err" &
	local bpid=$!
	PIDS+=("$bpid")
	for ((i = 0; i < 1200; i++)); do # 120 s at most
		grep -q ' measure ' "$f.err" 2>/dev/null && break
		kill -0 "$bpid" 2>/dev/null || break
		sleep 0.1
	done
	t0=$(now) c0=$(cpu_ticks "$@") e0=$(evalsha_calls) n0=$(total_cmds)
	sleep $((MANY_SECS - 3))
	t1=$(now) c1=$(cpu_ticks "$@") e1=$(evalsha_calls) n1=$(total_cmds)
	wait "$bpid" || true
	forget "$bpid"
	jq -e .connections "$f" >/dev/null 2>&1 || { log "$name failed: $(tail -n 2 "$f.err" | tr '\n' ' ')"; echo '{}' >"$f"; }
	jq -n --argjson dt "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" \
		--argjson ticks "$((c1 - c0))" --argjson hz "$(getconf CLK_TCK)" --argjson n "$#" \
		--argjson ev "$((e1 - e0))" --argjson cmds "$((n1 - n0))" --slurpfile r "$f" '
		($r[0]) as $r | {
			conns: $r.connections, rooms: $r.config.rooms, rate: $r.config.rate,
			sent_per_sec: $r.sent_per_sec, delivered_per_sec: $r.delivered_per_sec,
			p50: $r.latency_ms.p50, p90: $r.latency_ms.p90, p99: $r.latency_ms.p99,
			p999: $r.latency_ms.p99_9, max: $r.latency_ms.max,
			gaps: $r.gaps, duplicates: $r.duplicates, missing: $r.missing, dropped: $r.dropped,
			gateways: $n, gateway_cpu_cores: ($ticks / $hz / $dt),
			evalsha_per_msg: (if $r.sent_per_sec > 0 then $ev / $dt / $r.sent_per_sec else null end),
			redis_cmds_per_msg: (if $r.sent_per_sec > 0 then $cmds / $dt / $r.sent_per_sec else null end)
		}' >"$OUT/$name.sum"
	log "$name: $(cat "$OUT/$name.sum")"
}

# cap_step RATE NAME URLARGS: one step of the many-rooms shape on capped
# gateways; sustainable below CAP_P99 ms with everything sent and delivered.
cap_step() {
	local r=$1 name=$2 urls=$3
	# shellcheck disable=SC2086
	bench "$OUT/$name-$r.json" $urls --conns "$MANY_CONNS" --members 5 --rate "$r" \
		--warmup "${MANY_WARMUP}s" --duration "${CAP_SECS}s" --drain 3s --quiet
	jq -c --argjson r "$r" --argjson lim "$CAP_P99" 'if .connections then {
		rate: $r, sent_per_sec, delivered_per_sec, p50: .latency_ms.p50, p99: .latency_ms.p99,
		missing, gaps, duplicates, dropped,
		ok: (.latency_ms.p99 < $lim and .delivered_per_sec >= 0.95 * .sent_per_sec * 5
			and .sent_per_sec >= 0.95 * $r and .missing == 0 and .gaps == 0
			and .duplicates == 0 and .dropped == 0)
	} else {rate: $r, ok: false, error: "bench failed"} end' "$OUT/$name-$r.json"
}

# The publish script, its KEYS/ARGV for redis-benchmark, and a parser of
# redis-benchmark's -q output.
BODY=$(printf 'x%.0s' $(seq 64))
awk '/^var publishScript = goredis.NewScript\(`/ {f = 1; next} f && /^`\)/ {exit} f' \
	"$ROOT/pkg/broker/redis/scripts.go" >"$TMP/publish.lua"
EV_HEAD='{"type":"message","room":"bench","seq":'
EV_TAIL='"id":"c-1","from":"bench","device":"bench","ts":"2026-11-22T10:00:00.000Z","body":"'$BODY'"}'
EV_TS=2026-11-22T10:00:00.000Z
rps() { tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -n 1 | awk '{print $1}'; }
evalsha_failed() { # evalsha_failed PORT: EVALSHA calls that ended in an error
	redis_stat commandstats "$1" | awk -F'failed_calls=' '/^cmdstat_evalsha:/ {print $2 + 0; f=1} END {if (!f) print 0}'
}

# evalsha_run "PORTS" "PIDS" TAG PUBCMD REDIS-BENCHMARK-ARGS...: loads the
# publish script on every port, then runs redis-benchmark (-c 50) of EVALSHA
# of it with its KEYS/ARGV layout: keys in the hash tag {TAG}, every call a
# new idempotency key (so the whole script runs), PUBCMD as the publish
# command (PUBLISH, or SPUBLISH on a Cluster). Prints one JSON object:
# requests/s, each Redis process's CPU over the run (cores), the calls each
# port served and how many of them failed.
evalsha_run() {
	local ports=$1 pids=$2 tag=$3 cmd=$4 p sha t0 t1 c0 c1 r calls=() failed=()
	shift 4
	for p in $ports; do
		sha=$(redis-cli -p "$p" SCRIPT LOAD "$(cat "$TMP/publish.lua")")
		calls+=("$(evalsha_calls "$p")") failed+=("$(evalsha_failed "$p")")
	done
	# shellcheck disable=SC2086
	t0=$(now) c0=$(ticks_each $pids)
	r=$(redis-benchmark "$@" -n "$REDIS_N" -c 50 -r 1000000000 -q EVALSHA "$sha" 3 \
		"parley:{$tag}:meta" "parley:{$tag}:log" "parley:{$tag}:idem:5:bench:__rand_int__" \
		"$EV_HEAD" "$EV_TAIL" 1000 120000 e1 "parley:{$tag}" "$EV_TS" "$cmd" | rps)
	# shellcheck disable=SC2086
	t1=$(now) c1=$(ticks_each $pids)
	local i=0 dcalls=() dfailed=()
	for p in $ports; do
		dcalls+=("$(($(evalsha_calls "$p") - calls[i]))") dfailed+=("$(($(evalsha_failed "$p") - failed[i]))")
		i=$((i + 1))
	done
	local dt
	dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
	jq -cn --arg rps "${r:-0}" --argjson cpu "$(cores_json "$c0" "$c1" "$dt")" --argjson dt "$dt" \
		--argjson calls "[$(IFS=,; echo "${dcalls[*]}")]" --argjson failed "[$(IFS=,; echo "${dfailed[*]}")]" '{
		rps: ($rps | tonumber? // 0), redis_cpu: $cpu, calls: $calls, failed_calls: ($failed | add),
		calls_per_cpu_second: (if ($cpu | add) > 0 then ($calls | add) / (($cpu | add) * $dt) else null end)
	}'
}

# Scenario outputs start empty, so a scenario left out by --only is empty
# in the results.
for f in idle many1 scale1 scale2 cluster; do echo '{}' >"$OUT/$f.sum"; done
echo '{}' >"$OUT/storm.json"
for f in fanout raw cap1 cap2; do : >"$OUT/$f.steps"; done
CAP_NOTE="" PUB_RPS="" EV_SINGLE=""

# 1. Idle connections (first, on a fresh gateway 1).
if run idle; then
	log "idle: $IDLE_CONNS connections on gw-1"
	GW1=${GW_PIDS[0]}
	RSS0=$(rss_kib "$GW1")
	timeout "$SCENARIO_TIMEOUT" "$BENCH_BIN" bench --sources "$SOURCES" --json --url "${GW_URLS[0]}" \
		--conns "$IDLE_CONNS" --rooms "$((IDLE_CONNS / 10))" --rate 0 --hold 8s --connect-concurrency 128 \
		>"$OUT/idle.json" 2>"$OUT/idle.err" &
	BPID=$!
	PIDS+=("$BPID")
	for ((i = 0; i < 1200; i++)); do
		grep -q 'bench: holding' "$OUT/idle.err" 2>/dev/null && break
		kill -0 "$BPID" 2>/dev/null || break
		sleep 0.1
	done
	sleep 3
	RSS1=$(rss_kib "$GW1")
	wait "$BPID" || true
	forget "$BPID"
	HELD=$(jq -r '.connections // 0' "$OUT/idle.json" 2>/dev/null || echo 0)
	jq -n --argjson b "$RSS0" --argjson a "$RSS1" --argjson n "$HELD" \
		'{conns: $n, rss_before_kib: $b, rss_after_kib: $a, kib_per_conn: (if $n > 0 then ($a - $b) / $n else null end)}' >"$OUT/idle.sum"
	log "idle: $(cat "$OUT/idle.sum")"
fi

# 2. Fan-out, and 3. the raw ceiling on the same steps.
! run fanout || stepwise fanout "$FAN_RATES" fanout_step "$FAN_CONNS" --url "${GW_URLS[0]}"
if run raw; then
	RAWP=$(free_port)
	"$BENCH_BIN" bench --raw-serve "127.0.0.1:$RAWP" 2>"$TMP/raw.log" &
	RAW_PID=$!
	PIDS+=("$RAW_PID")
	wait_for grep -q 'raw fan-out server' "$TMP/raw.log"
	log "raw fan-out server on 127.0.0.1:$RAWP, pid $RAW_PID"
	stepwise raw "$RAW_RATES" fanout_step "$FAN_CONNS" --url "ws://127.0.0.1:$RAWP/ws"
	stop "$RAW_PID"
fi

# 4. Many rooms on one gateway; 5. scaling at a higher rate on one and two.
if run many; then
	log "many rooms: $MANY_CONNS conns in rooms of 5, $MANY_RATE msgs/s, gw-1"
	many many1 "--url ${GW_URLS[0]}" "$MANY_RATE" "${GW_PIDS[0]}"
fi
if run scaling; then
	log "scaling: $SCALE_RATE msgs/s on 1 gateway, then on 2"
	many scale1 "--url ${GW_URLS[0]}" "$SCALE_RATE" "${GW_PIDS[0]}"
	many scale2 "${SCALE_URLS[*]}" "$SCALE_RATE" "${GW_PIDS[@]}"
fi

# 5b. Scaling where the gateways are the bottleneck: each gateway capped at
# CAP_CORES of CPU, so that the load generator and Redis have the rest of the
# machine; the many-rooms shape stepped on 1 gateway, then on 2.
if ! run capped; then
	:
elif [[ -n $(cap_root) ]] && cap "${GW_PIDS[0]}" gw1 && cap "${GW_PIDS[1]}" gw2; then
	log "capped scaling: each gateway capped at $CAP_CORES core ($(cap_root) cgroups)"
	stepwise cap1 "$CAP_RATES" cap_step "--url ${GW_URLS[0]}"
	stepwise cap2 "$CAP_RATES" cap_step "${SCALE_URLS[*]}"
	uncap_all
else
	uncap_all
	CAP_NOTE="no writable cgroup cpu controller (run as root with /sys/fs/cgroup/cpu or cgroup v2 cpu)"
	log "capped scaling: skipped: $CAP_NOTE"
fi

# 6. Resume storm.
if run storm; then
	log "resume storm: $STORM_CONNS conns, $STORM_MSGS missed messages each"
	bench "$OUT/storm.json" --url "${GW_URLS[0]}" --conns "$STORM_CONNS" --rooms "$STORM_ROOMS" \
		--duration 0 --resume-storm "$STORM_MSGS" --publisher-rate 15 --quiet
fi

# 7. Redis ceilings.
if run redis; then
	log "redis-benchmark: PUBLISH"
	PUB_RPS=$(redis-benchmark -p "$RP" -n "$REDIS_N" -c 50 -q PUBLISH 'parley:{bench}' "$BODY" | rps)
	log "redis-benchmark: EVALSHA of the publish script"
	EV_SINGLE=$(evalsha_run "$RP" "$REDIS_PID" bench PUBLISH -p "$RP")
	log "redis-benchmark: EVALSHA: $EV_SINGLE"
fi

# 8. One Redis against a 3-master Redis Cluster on this machine.

# free_cluster_port prints a free loopback port P whose cluster bus port,
# P + 10000, is free too, both below the ephemeral range when it leaves room
# (so no outgoing connection of the load generator or the gateways holds
# one of them).
free_cluster_port() {
	local i p lo span
	lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	span=$((lo - 10000 - 20000))
	((span >= 500)) || span=30000
	for ((i = 0; i < 100; i++)); do
		p=$((20000 + RANDOM % span))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
			! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	echo "bench/run.sh: no free port pair for a cluster node" >&2
	return 1
}
# cluster_ok: every node says cluster_state:ok with all 16384 slots served.
cluster_ok() {
	local p info
	for p in "${CL_PORTS[@]}"; do
		info=$(redis-cli -p "$p" CLUSTER INFO | tr -d '\r')
		[[ $info == *cluster_state:ok* && $info == *cluster_slots_ok:16384* ]] || return 1
	done
}
# cluster_up starts 3 cluster-enabled redis-servers (persistence off like
# the single one, each in its own temp dir), forms a cluster of 3 masters
# and no replicas, and waits until it is healthy.
cluster_up() {
	local i p try pid
	CL_PORTS=() CL_PIDS=()
	for i in 1 2 3; do
		for try in 1 2 3; do # a port taken in the meantime: another one
			p=$(free_cluster_port) || return 1
			rm -rf "$TMP/cluster$i"
			mkdir -p "$TMP/cluster$i"
			redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
				--cluster-config-file "$TMP/cluster$i/nodes.conf" --save "" --appendonly no \
				--dir "$TMP/cluster$i" --logfile "$TMP/cluster$i.log" --maxclients 20000 &
			pid=$!
			PIDS+=("$pid")
			wait_for redis-cli -p "$p" ping && break
			log "cluster: node $i on port $p did not start: $(tail -n 1 "$TMP/cluster$i.log" 2>/dev/null)"
			stop "$pid"
			pid=""
		done
		[[ -n $pid ]] || return 1
		CL_PIDS+=("$pid")
		CL_PORTS+=("$p")
	done
	redis-cli --cluster create "${CL_PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
		>"$TMP/cluster-create.log" 2>&1 || { tail -n 3 "$TMP/cluster-create.log" >&2; return 1; }
	wait_for cluster_ok
}
# cluster_gateways starts 2 gateways with --redis-cluster.
cluster_gateways() {
	local i p seeds
	seeds=$(IFS=,; echo "${CL_PORTS[*]/#/127.0.0.1:}")
	CL_GW_PIDS=() CL_GW_URLS=()
	for i in 1 2; do
		p=$(free_port) || return 1
		"$GW_BIN" serve --dev-auth --addr "127.0.0.1:$p" --redis-cluster "$seeds" \
			--node-id "cgw-$i" --log-level warn >"$TMP/cgw$i.log" 2>&1 &
		PIDS+=($!)
		CL_GW_PIDS+=($!)
		CL_GW_URLS+=(--url "ws://127.0.0.1:$p/ws")
		wait_for curl -fsS "http://127.0.0.1:$p/readyz" || return 1
		log "gateway cgw-$i (--redis-cluster) on 127.0.0.1:$p, pid $!"
	done
}
sum_info() { # sum_info SECTION FIELD PORT...: an INFO field summed over ports
	local s=$1 k=$2 p t=0
	shift 2
	for p in "$@"; do t=$((t + $(redis_stat "$s" "$p" | awk -F: -v k="$k" '$1 == k {print $2}'))); done
	echo "$t"
}
dbsize_sum() { local p t=0; for p in "$@"; do t=$((t + $(redis-cli -p "$p" DBSIZE))); done; echo "$t"; }
# key_stats PORT KEY...: one JSON object per key: its name, its list length
# (0 for other types), MEMORY USAGE with every element sampled, and the
# length of its last element (the newest envelope of a room's log).
key_stats() {
	local p=$1 k
	shift
	for k in "$@"; do
		jq -cn --arg k "$k" --argjson n "$(redis-cli -p "$p" LLEN "$k" 2>/dev/null | grep -E '^[0-9]+$' || echo 0)" \
			--argjson b "$(redis-cli -p "$p" MEMORY USAGE "$k" SAMPLES 0)" \
			--argjson e "$(($(redis-cli -p "$p" LINDEX "$k" -1 2>/dev/null | wc -c) - 1))" \
			'{key: $k, messages: $n, bytes: $b, envelope: $e}'
	done
}
# scan_keys PORT PATTERN: the keys matching PATTERN on one node.
scan_keys() {
	local cur=0 out k
	while :; do
		mapfile -t out < <(redis-cli -p "$1" SCAN "$cur" MATCH "$2" COUNT 1000)
		cur=${out[0]:-0}
		for k in "${out[@]:1}"; do [[ -z $k ]] || echo "$k"; done
		[[ $cur != 0 ]] || break
	done
}

# redis_quiet PORT...: wait (10 s at most) until no script runs on these
# Redis processes for half a second: the presence writes of the previous
# step's connections (one EVALSHA per join and per leave, written off the
# request path) are done before the next step starts.
redis_quiet() {
	local i a b
	b=$(evalsha_calls "$@")
	for ((i = 0; i < 20; i++)); do
		sleep 0.5
		a=$b b=$(evalsha_calls "$@")
		((a != b)) || return 0
	done
}

# cl_step RATE NAME URLARGS "PORTS" "REDIS_PIDS" "GATEWAY_PIDS": one step
# of the many-rooms shape (CL_CONNS in rooms of 5) through the gateways of
# URLARGS; over the measured window, the CPU of each Redis process and of the
# gateways, and EVALSHA calls per published message (1 when nothing but
# publishes ran: above 1, presence writes of the joins were still draining).
# Sustainable below CAP_P99 ms with everything sent and delivered, as a
# capped step.
cl_step() {
	local r=$1 name=$2 urls=$3 ports=$4 rpids=$5 gpids=$6
	local f=$OUT/$name-$r.json i t0 t1 c0 c1 g0 g1 e0 e1 bpid dt
	# shellcheck disable=SC2086
	redis_quiet $ports
	# shellcheck disable=SC2086
	timeout "$SCENARIO_TIMEOUT" "$BENCH_BIN" bench --sources "$SOURCES" --json $urls \
		--conns "$CL_CONNS" --members 5 --rate "$r" --warmup "${CL_WARMUP}s" \
		--duration "${CL_SECS}s" --drain 2s >"$f" 2>"$f.err" &
	bpid=$!
	PIDS+=("$bpid")
	for ((i = 0; i < 1200; i++)); do # 120 s at most
		grep -q ' measure ' "$f.err" 2>/dev/null && break
		kill -0 "$bpid" 2>/dev/null || break
		sleep 0.1
	done
	# shellcheck disable=SC2086
	t0=$(now) c0=$(ticks_each $rpids) g0=$(cpu_ticks $gpids) e0=$(evalsha_calls $ports)
	sleep $((CL_SECS - 2))
	# shellcheck disable=SC2086
	t1=$(now) c1=$(ticks_each $rpids) g1=$(cpu_ticks $gpids) e1=$(evalsha_calls $ports)
	wait "$bpid" || true
	forget "$bpid"
	if ! jq -e .connections "$f" >/dev/null 2>&1; then
		log "$name $r failed: $(tail -n 2 "$f.err" | tr '\n' ' ')"
		echo '{}' >"$f"
	fi
	dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
	jq -c --argjson r "$r" --argjson lim "$CAP_P99" --argjson dt "$dt" --argjson ev "$((e1 - e0))" \
		--argjson rc "$(cores_json "$c0" "$c1" "$dt")" --argjson gc "$(cores_json "$g0" "$g1" "$dt")" '
	if .connections then {
		rate: $r, sent_per_sec, delivered_per_sec, p50: .latency_ms.p50, p99: .latency_ms.p99,
		missing, gaps, duplicates, dropped,
		redis_cpu: $rc, redis_cpu_total: ($rc | add), gateway_cpu: $gc[0],
		redis_cpu_us_per_msg: (if .sent_per_sec > 0 then ($rc | add) * 1e6 / .sent_per_sec else null end),
		evalsha_per_msg: (if .sent_per_sec > 0 then $ev / $dt / .sent_per_sec else null end),
		ok: (.latency_ms.p99 < $lim and .delivered_per_sec >= 0.95 * .sent_per_sec * 5
			and .sent_per_sec >= 0.95 * $r and .missing == 0 and .gaps == 0
			and .duplicates == 0 and .dropped == 0)
	} else {rate: $r, ok: false, error: "bench failed"} end' "$f"
}

: >"$OUT/clsingle.steps"
: >"$OUT/clcluster.steps"
CL_SKIP=""
if ! run cluster; then
	:
elif ! cluster_up; then
	CL_SKIP="the Redis Cluster did not form (see redis-cli --cluster create)"
	log "cluster: skipped: $CL_SKIP"
	stop "${CL_PIDS[@]}"
else
	log "cluster: 3 masters, no replicas, persistence off: ports ${CL_PORTS[*]}, pids ${CL_PIDS[*]}"
	# (a) The store's ceiling: EVALSHA of the publish script on 1 Redis and
	# on the cluster, redis-benchmark --cluster rewriting the literal {tag}
	# of each client's keys to a hash tag of a slot of the master it talks
	# to, so the calls spread over the 3 masters.
	if [[ -z $EV_SINGLE ]]; then
		log "cluster: redis-benchmark EVALSHA on the single Redis"
		EV_SINGLE=$(evalsha_run "$RP" "$REDIS_PID" bench PUBLISH -p "$RP")
	fi
	USED0=$(sum_info memory used_memory "${CL_PORTS[@]}") KEYS0=$(dbsize_sum "${CL_PORTS[@]}")
	log "cluster: redis-benchmark --cluster EVALSHA on 3 masters"
	EV_CLUSTER=$(evalsha_run "${CL_PORTS[*]}" "${CL_PIDS[*]}" tag SPUBLISH -p "${CL_PORTS[0]}" --cluster)
	log "cluster: EVALSHA 1 Redis: $EV_SINGLE; 3 masters: $EV_CLUSTER"
	# What that burst left in Redis: the rooms' full logs (1000 messages
	# each), their meta hashes, and one idempotency key per call.
	USED1=$(sum_info memory used_memory "${CL_PORTS[@]}") KEYS1=$(dbsize_sum "${CL_PORTS[@]}")
	: >"$OUT/burst.logs"
	: >"$OUT/burst.metas"
	for p in "${CL_PORTS[@]}"; do
		mapfile -t ks < <(scan_keys "$p" 'parley:{*}:log')
		((${#ks[@]} == 0)) || key_stats "$p" "${ks[@]}" >>"$OUT/burst.logs"
		mapfile -t ks < <(scan_keys "$p" 'parley:{*}:meta')
		((${#ks[@]} == 0)) || key_stats "$p" "${ks[@]}" >>"$OUT/burst.metas"
	done
	jq -s --slurpfile metas <(jq -s . "$OUT/burst.metas") --argjson used "$((USED1 - USED0))" \
		--argjson keys "$((KEYS1 - KEYS0))" --argjson calls "$(jq '.calls | add' <<<"$EV_CLUSTER")" '
		. as $logs | ($metas[0]) as $metas |
		([$logs[] | select(.messages == 1000)]) as $full |
		(($logs | map(.bytes) | add // 0) + ($metas | map(.bytes) | add // 0)) as $rooms |
		($keys - ($logs | length) - ($metas | length)) as $idem | {
			full_logs: ($full | length), messages_per_log: 1000,
			log_bytes: (if ($full | length) > 0 then ($full | map(.bytes) | add) / ($full | length) else null end),
			bytes_per_message: (if ($full | length) > 0 then ($full | map(.bytes) | add) / ($full | length) / 1000 else null end),
			envelope_bytes: ($logs[0].envelope // null),
			meta_bytes: (if ($metas | length) > 0 then ($metas | map(.bytes) | add) / ($metas | length) else null end),
			calls: $calls, idempotency_keys: $idem,
			bytes_per_idempotency_key: (if $idem > 0 then ($used - $rooms) / $idem else null end),
			used_memory_delta: $used
		}' "$OUT/burst.logs" >"$OUT/burst.sum"
	log "cluster: history memory: $(cat "$OUT/burst.sum" | jq -c .)"

	# (b) End to end: the many-rooms shape stepped on 2 gateways on the
	# single Redis, then on 2 gateways on the cluster.
	if cluster_gateways; then
		log "cluster: $CL_CONNS conns in rooms of 5 on gw-1 and gw-2 (--redis), stepped $CL_RATES msgs/s"
		stepwise clsingle "$CL_RATES" cl_step "--url ${GW_URLS[0]} --url ${GW_URLS[1]}" "$RP" "$REDIS_PID" "${GW_PIDS[*]}"
		log "cluster: the same on cgw-1 and cgw-2 (--redis-cluster)"
		stepwise clcluster "$CL_RATES" cl_step "${CL_GW_URLS[*]}" "${CL_PORTS[*]}" "${CL_PIDS[*]}" "${CL_GW_PIDS[*]}"
		# Rooms as the gateways store them: a sample of the logs just written.
		mapfile -t ks < <(scan_keys "${CL_PORTS[0]}" 'parley:{bench-*}:log' | head -n 50)
		((${#ks[@]} == 0)) || key_stats "${CL_PORTS[0]}" "${ks[@]}" >"$OUT/rooms.logs"
	else
		CL_SKIP="the --redis-cluster gateways did not start (see their logs)"
		log "cluster: end to end skipped: $CL_SKIP"
	fi
	[[ -s $OUT/rooms.logs ]] || echo '{}' >"$OUT/rooms.logs"
	jq -n --argjson cores "$(nproc)" --argjson conns "$CL_CONNS" --argjson lim "$CAP_P99" \
		--argjson single "$EV_SINGLE" --argjson cluster "$EV_CLUSTER" --slurpfile burst "$OUT/burst.sum" \
		--slurpfile rooms <(jq -s '[.[] | select(.messages > 0)]' "$OUT/rooms.logs") \
		--slurpfile s1 <(jq -s . "$OUT/clsingle.steps") --slurpfile s3 <(jq -s . "$OUT/clcluster.steps") '
		def best(s): [s[] | select(.ok)] | max_by(.sent_per_sec) // null;
		($rooms[0]) as $rooms | {
			shards: 3, replicas: 0, cores: $cores,
			evalsha: {single: $single, cluster: $cluster},
			end_to_end: {conns: $conns, rooms: ($conns / 5), members: 5, gateways: 2, p99_limit_ms: $lim,
				single: {max_publishes_per_sec: (best($s1[0]) | .sent_per_sec // 0), at_max: best($s1[0]),
					all_steps_ok: (($s1[0] | length) > 0 and ($s1[0] | last | .ok))},
				cluster: {max_publishes_per_sec: (best($s3[0]) | .sent_per_sec // 0), at_max: best($s3[0]),
					all_steps_ok: (($s3[0] | length) > 0 and ($s3[0] | last | .ok))},
				single_steps: $s1[0], cluster_steps: $s3[0]},
			memory: ($burst[0] + {rooms_sampled: ($rooms | length),
				room_messages: (if ($rooms | length) > 0 then ($rooms | map(.messages) | add) / ($rooms | length) else null end),
				room_log_bytes: (if ($rooms | length) > 0 then ($rooms | map(.bytes) | add) / ($rooms | length) else null end),
				room_bytes_per_message: (if ($rooms | length) > 0 then ($rooms | map(.bytes) | add) / ($rooms | map(.messages) | add) else null end),
				room_envelope_bytes: (if ($rooms | length) > 0 then ($rooms | map(.envelope) | add) / ($rooms | length) else null end)})
		}' >"$OUT/cluster.sum"
	stop "${CL_GW_PIDS[@]}" "${CL_PIDS[@]}"
fi
if [[ -n $CL_SKIP ]]; then
	jq --arg s "$CL_SKIP" '. + {skipped: $s}' "$OUT/cluster.sum" >"$OUT/cluster.sum.new"
	mv "$OUT/cluster.sum.new" "$OUT/cluster.sum"
fi

# Other load during the suite: machine-wide busy CPU minus this suite's own
# (its reaped children, from `times`, plus redis and the gateways, still up).
HZ=$(getconf CLK_TCK)
STAT1=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat)
CHILD_SECS=$(times | tail -n 1 | awk '{
	t = 0
	for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2] }
	print t }')
LIVE=$(cpu_ticks "${PIDS[@]::$((${#GW_PIDS[@]} + 1))}")
FOREIGN=$(awk -v s0="$STAT0" -v s1="$STAT1" -v c="$CHILD_SECS" -v l="$LIVE" -v hz="$HZ" \
	-v w0="$WALL0" -v w1="$(date +%s.%N)" 'BEGIN {
	f = ((s1 - s0) / hz - c - l / hz) / (w1 - w0); if (f < 0) f = 0; printf "%.2f\n", f }')
if awk -v f="$FOREIGN" 'BEGIN {exit !(f > 0.2)}'; then
	log "WARNING: other processes kept $FOREIGN cores busy on average during the suite"
fi

# Summary.
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES=$ROOT/bench/results
mkdir -p "$RES"
REDIS_VER=$(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-)
[[ -n $EV_SINGLE ]] || EV_SINGLE='{}'
jq -n \
	--arg stamp "$STAMP" --argjson quick "$QUICK" \
	--arg cpu "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
	--argjson cores "$(nproc)" --arg kernel "$(uname -r)" --arg go "$(go version 2>/dev/null | awk '{print $3}')" \
	--arg redis "$REDIS_VER" --arg gwbin "$GW_BIN" --argjson busy "$BUSY_BEFORE" --argjson foreign "$FOREIGN" \
	--slurpfile idle "$OUT/idle.sum" \
	--slurpfile fan <(jq -s . "$OUT/fanout.steps") --slurpfile raw <(jq -s . "$OUT/raw.steps") \
	--argjson members "$FAN_CONNS" \
	--slurpfile m1 "$OUT/many1.sum" --slurpfile s1 "$OUT/scale1.sum" --slurpfile m2 "$OUT/scale2.sum" \
	--slurpfile storm "$OUT/storm.json" \
	--slurpfile cap1 <(jq -s . "$OUT/cap1.steps") --slurpfile cap2 <(jq -s . "$OUT/cap2.steps") \
	--argjson capcores "$CAP_CORES" --argjson capp99 "$CAP_P99" --arg capnote "$CAP_NOTE" \
	--arg pub "${PUB_RPS:-0}" --argjson ev "$EV_SINGLE" --argjson haproxy "$HAPROXY" \
	--argjson ran "$(printf '%s\n' "${RAN[@]}" | jq -R . | jq -cs .)" --slurpfile cl "$OUT/cluster.sum" '
	def best(s): ([s[] | select(.ok) | .delivered_per_sec] | max // 0);
	def bestp99(s): ([s[] | select(.ok)] | max_by(.delivered_per_sec) // {} | .p99);
	{
		stamp: $stamp, quick: ($quick == 1), scenarios: $ran,
		machine: {cpu: $cpu, cores: $cores, kernel: $kernel, go: $go, redis: $redis, gateway_binary: $gwbin, busy_cores_before: $busy, other_load_cores: $foreign},
		idle: $idle[0],
		fanout: {members: $members, max_deliveries_per_sec: best($fan[0]), p99_at_max: bestp99($fan[0]), steps: $fan[0]},
		raw: {members: $members, max_deliveries_per_sec: best($raw[0]), p99_at_max: bestp99($raw[0]), steps: $raw[0]},
		many_rooms: $m1[0],
		scaling: {one: $s1[0].delivered_per_sec, two: $m2[0].delivered_per_sec,
			ratio: (if ($s1[0].delivered_per_sec // 0) > 0 then $m2[0].delivered_per_sec / $s1[0].delivered_per_sec else null end),
			offered_per_sec: (($s1[0].sent_per_sec // 0) * 5), one_gateway: $s1[0], two_gateways: $m2[0], via_haproxy: ($haproxy == 1)},
		capped_scaling: {cap_cores: $capcores, p99_limit_ms: $capp99, skipped: (if $capnote == "" then null else $capnote end),
			one: best($cap1[0]), two: best($cap2[0]),
			ratio: (if best($cap1[0]) > 0 then best($cap2[0]) / best($cap1[0]) else null end),
			one_steps: $cap1[0], two_steps: $cap2[0]},
		storm: ($storm[0].resume_storm // {}),
		redis: {publish_rps: ($pub | tonumber? // 0), evalsha_publish_script_rps: ($ev.rps // 0),
			evalsha_redis_cpu_cores: ($ev.redis_cpu[0] // null), evalsha_calls_per_cpu_second: ($ev.calls_per_cpu_second // null),
			evalsha_failed_calls: ($ev.failed_calls // null)},
		cluster: $cl[0]
	} | .fanout.raw_fraction = (if .raw.max_deliveries_per_sec > 0 then .fanout.max_deliveries_per_sec / .raw.max_deliveries_per_sec else null end)
	' >"$RES/$STAMP.json"

# The table (markdown), with the issue's targets.
jq -r '
	def f(x; d): if x == null then "n/a" else (x * pow(10; d) | round / pow(10; d) | tostring) end;
	def met(c): if c then "met" else "**missed**" end;
	def cores(a): if a == null or (a | length) == 0 then "n/a" else (a | map(f(.; 2)) | join(" / ")) end;
	def mp(x): if (x.max_publishes_per_sec // 0) > 0 then f(x.max_publishes_per_sec; 0) else "none (the first step failed)" end;
	def steps(store; s): s[] | "| \(store) | \(.rate) | \(f(.sent_per_sec; 0)) | \(f(.delivered_per_sec; 0)) | \(f(.p50; 2)) | \(f(.p99; 2)) | \(cores(.redis_cpu)) | \(f(.gateway_cpu; 2)) | \(f(.evalsha_per_msg; 2)) | \(.ok) |";
	. as $s | .cluster as $c | ($c.end_to_end // {}) as $e |
	def ran(n): ($s.scenarios | index(n)) != null;
	"| Scenario | Result | Target | |",
	"|---|---|---|---|",
	(if ran("idle") then
		"| idle: RSS per connection (\(.idle.conns) conns) | \(f(.idle.kib_per_conn; 1)) KiB (\(.idle.rss_before_kib / 1024 | floor) → \(.idle.rss_after_kib / 1024 | floor) MiB) | ≤ 20 KiB | \(met((.idle.kib_per_conn // 1e9) <= 20)) |"
	else empty end),
	(if ran("fanout") then
		"| fan-out: max deliveries/s, 1 room × \(.fanout.members) (p99 < 100 ms) | \(f(.fanout.max_deliveries_per_sec; 0)) /s (p99 \(f(.fanout.p99_at_max; 1)) ms) | ≥ 40,000 /s | \(met(.fanout.max_deliveries_per_sec >= 40000)) |"
	else empty end),
	(if ran("raw") then
		"| raw fan-out ceiling (no Redis, no gateway) | \(f(.raw.max_deliveries_per_sec; 0)) /s (p99 \(f(.raw.p99_at_max; 1)) ms) | (reference) | |"
	else empty end),
	(if ran("fanout") and ran("raw") then
		"| fan-out / raw ceiling | \(f((.fanout.raw_fraction // 0) * 100; 0)) % | ≥ 70 % | \(met((.fanout.raw_fraction // 0) >= 0.7)) |"
	else empty end),
	(if ran("many") then
		"| many rooms: \(.many_rooms.rooms) rooms × 5, \(.many_rooms.rate) msgs/s: p50 / p99 / p99.9 | \(f(.many_rooms.p50; 2)) / \(f(.many_rooms.p99; 2)) / \(f(.many_rooms.p999; 2)) ms | p99 < 5 ms | \(met((.many_rooms.p99 // 1e9) < 5)) |",
		"| many rooms: gateway CPU | \(f(.many_rooms.gateway_cpu_cores; 2)) core | ≤ 0.25 core | \(met((.many_rooms.gateway_cpu_cores // 9) <= 0.25)) |",
		"| Redis round trips per published message (EVALSHA calls / sent) | \(f(.many_rooms.evalsha_per_msg; 2)) (Redis total_commands_processed per message, counting the 7 calls inside the script: \(f(.many_rooms.redis_cmds_per_msg; 2))) | 1 | \(met(((.many_rooms.evalsha_per_msg // 9) - 1 | fabs) < 0.05)) |"
	else empty end),
	(if ran("scaling") then
		"| scaling: \(.scaling.one_gateway.rooms) rooms × 5 at \(.scaling.one_gateway.rate) msgs/s, delivered/s on 1 → 2 gateways | \(f(.scaling.one; 0)) → \(f(.scaling.two; 0)) /s = \(f(.scaling.ratio; 2))× (offered ≈ \(f(.scaling.offered_per_sec; 0)) /s; p99 \(f(.scaling.one_gateway.p99; 1)) → \(f(.scaling.two_gateways.p99; 1)) ms; gateway CPU \(f(.scaling.one_gateway.gateway_cpu_cores; 2)) → \(f(.scaling.two_gateways.gateway_cpu_cores; 2)) core in all) | ≥ 1.6× | \(if (.scaling.ratio // 0) >= 1.6 then "met" elif (.scaling.one // 0) >= 0.95 * (.scaling.offered_per_sec // 1e9) then "**missed** (unmeasurable: one gateway already delivers the whole offered load, and the 2 cores are shared by Redis, the gateways and the load generator)" else "**missed** (the 2 cores are shared by Redis, the gateways and the load generator, so a second gateway adds no CPU)" end) |"
	else empty end),
	(if ran("capped") then
		"| scaling with each gateway capped at \(.capped_scaling.cap_cores) core (the gateways the bottleneck): max sustainable delivered/s (p99 < \(.capped_scaling.p99_limit_ms) ms) on 1 → 2 gateways | \(if .capped_scaling.skipped then "skipped: \(.capped_scaling.skipped)" else "\(f(.capped_scaling.one; 0)) → \(f(.capped_scaling.two; 0)) /s = \(f(.capped_scaling.ratio; 2))×" end) | ≥ 1.6× | \(if .capped_scaling.skipped then "" elif (.capped_scaling.one_steps | last | .ok) == true then "not shown: one gateway sustained every step (raise CAP_RATES)" elif (.capped_scaling.two_steps | last | .ok) == true then "\(met((.capped_scaling.ratio // 0) >= 1.6)) (two gateways sustained every step: the ratio is a lower bound)" else met((.capped_scaling.ratio // 0) >= 1.6) end) |"
	else empty end),
	(if ran("storm") then
		"| resume storm: \(.storm.conns // 0) clients, \(.storm.messages_per_room // 0) missed each | resumed in \(f(.storm.resume_seconds; 2)) s, all caught up in \(f(.storm.catch_up_seconds; 2)) s (\(.storm.caught_up // 0) caught up, \(.storm.gaps // 0) gaps, \(.storm.duplicates // 0) dups) | (reference) | |"
	else empty end),
	(if ran("redis") then
		"| redis-benchmark PUBLISH (-c 50) | \(f(.redis.publish_rps; 0)) /s | (ceiling) | |",
		"| redis-benchmark EVALSHA publish script (-c 50) | \(f(.redis.evalsha_publish_script_rps; 0)) /s (Redis CPU \(f(.redis.evalsha_redis_cpu_cores; 2)) core: \(f(.redis.evalsha_calls_per_cpu_second; 0)) calls per Redis CPU-second\(if (.redis.evalsha_failed_calls // 0) > 0 then "; **\(.redis.evalsha_failed_calls) calls failed**" else "" end)) | (ceiling) | |"
	else empty end),
	(if ran("cluster") and $c.skipped == null then
		"| cluster: redis-benchmark EVALSHA publish script (-c 50), 1 Redis → 3 shards | \(f($c.evalsha.single.rps; 0)) → \(f($c.evalsha.cluster.rps; 0)) /s (Redis CPU \(cores($c.evalsha.single.redis_cpu)) → \(cores($c.evalsha.cluster.redis_cpu)) core; \(f($c.evalsha.single.calls_per_cpu_second; 0)) → \(f($c.evalsha.cluster.calls_per_cpu_second; 0)) calls per Redis CPU-second) | (ceiling) | |",
		"| cluster: end to end, \($e.rooms) rooms × 5 on 2 gateways, max sustainable publishes/s (p99 < \($e.p99_limit_ms) ms), 1 Redis → 3 shards | \(mp($e.single)) → \(mp($e.cluster)) /s (p99 \(f($e.single.at_max.p99; 1)) → \(f($e.cluster.at_max.p99; 1)) ms; Redis CPU at that rate \(cores($e.single.at_max.redis_cpu)) → \(cores($e.cluster.at_max.redis_cpu)) core, \(f($e.single.at_max.redis_cpu_us_per_msg; 0)) → \(f($e.cluster.at_max.redis_cpu_us_per_msg; 0)) µs per message) | (reference) | \(if $e.single.all_steps_ok or $e.cluster.all_steps_ok then "a lower bound: the last step was sustainable" else "" end) |"
	elif ran("cluster") then
		"| cluster: 1 Redis → 3 shards | skipped: \($c.skipped) | | |"
	else empty end),
	(if ran("fanout") or ran("raw") then
		"",
		"Fan-out steps (\(.fanout.members) members):",
		"",
		"| source | rate msgs/s | delivered/s | p50 ms | p99 ms | missing / dropped conns | ok |",
		"|---|---|---|---|---|---|---|",
		(.fanout.steps[] | "| gateway | \(.rate) | \(f(.delivered_per_sec; 0)) | \(f(.p50; 2)) | \(f(.p99; 2)) | \(.missing // "n/a") / \(.dropped // "n/a") | \(.ok) |"),
		(.raw.steps[] | "| raw | \(.rate) | \(f(.delivered_per_sec; 0)) | \(f(.p50; 2)) | \(f(.p99; 2)) | \(.missing // "n/a") / \(.dropped // "n/a") | \(.ok) |")
	else empty end),
	(if (.capped_scaling.one_steps | length) > 0 then
		"",
		"Capped scaling steps (1,000 rooms × 5; each gateway capped at \(.capped_scaling.cap_cores) core; sustainable: p99 < \(.capped_scaling.p99_limit_ms) ms, everything delivered):",
		"",
		"| gateways | rate msgs/s | delivered/s | p50 ms | p99 ms | ok |",
		"|---|---|---|---|---|---|",
		(.capped_scaling.one_steps[] | "| 1 | \(.rate) | \(f(.delivered_per_sec; 0)) | \(f(.p50; 2)) | \(f(.p99; 2)) | \(.ok) |"),
		(.capped_scaling.two_steps[] | "| 2 | \(.rate) | \(f(.delivered_per_sec; 0)) | \(f(.p50; 2)) | \(f(.p99; 2)) | \(.ok) |")
	else empty end),
	(if ran("cluster") and $c.skipped == null then
		"",
		"Cluster: 1 Redis against 3 masters of a Redis Cluster (no replicas, persistence off), side by side. Redis, the gateways and the load generator share this machine'"'"'s \($c.cores) cores, so end to end the machine runs out of CPU in the gateways and the load generator long before Redis does, and the maximum rate is the machine'"'"'s, not the store'"'"'s; the Redis CPU of each process shows how the work spreads over the shards. redis-benchmark --cluster sends each client'"'"'s calls to one master, in a hash tag of a slot that master serves.",
		"",
		"| | 1 Redis | 3-shard cluster |",
		"|---|---|---|",
		"| redis-benchmark EVALSHA of the publish script (-c 50), calls/s | \(f($c.evalsha.single.rps; 0)) | \(f($c.evalsha.cluster.rps; 0)) |",
		"| Redis CPU during it, per process (cores) | \(cores($c.evalsha.single.redis_cpu)) | \(cores($c.evalsha.cluster.redis_cpu)) |",
		"| calls each process served | \(($c.evalsha.single.calls // []) | map(tostring) | join(" / ")) | \(($c.evalsha.cluster.calls // []) | map(tostring) | join(" / ")) |",
		"| calls per second of Redis CPU (one shard on one core) | \(f($c.evalsha.single.calls_per_cpu_second; 0)) | \(f($c.evalsha.cluster.calls_per_cpu_second; 0)) |",
		"| end to end (\($e.rooms) rooms × 5, 2 gateways): max sustainable publishes/s | \(mp($e.single))\(if $e.single.all_steps_ok then " (every step sustained)" else "" end) | \(mp($e.cluster))\(if $e.cluster.all_steps_ok then " (every step sustained)" else "" end) |",
		"| deliveries/s at that rate | \(f($e.single.at_max.delivered_per_sec; 0)) | \(f($e.cluster.at_max.delivered_per_sec; 0)) |",
		"| p50 / p99 at that rate (ms) | \(f($e.single.at_max.p50; 2)) / \(f($e.single.at_max.p99; 2)) | \(f($e.cluster.at_max.p50; 2)) / \(f($e.cluster.at_max.p99; 2)) |",
		"| Redis CPU at that rate, per process (cores) | \(cores($e.single.at_max.redis_cpu)) | \(cores($e.cluster.at_max.redis_cpu)) |",
		"| Redis CPU per published message (all processes) | \(f($e.single.at_max.redis_cpu_us_per_msg; 0)) µs | \(f($e.cluster.at_max.redis_cpu_us_per_msg; 0)) µs |",
		"| gateways CPU at that rate (2 gateways, cores) | \(f($e.single.at_max.gateway_cpu; 2)) | \(f($e.cluster.at_max.gateway_cpu; 2)) |",
		"| EVALSHA calls per published message | \(f($e.single.at_max.evalsha_per_msg; 2)) | \(f($e.cluster.at_max.evalsha_per_msg; 2)) |",
		"",
		"Cluster steps (sustainable: p99 < \($e.p99_limit_ms) ms, everything sent and delivered; a failed step is retried once):",
		"",
		"| store | rate msgs/s | sent/s | delivered/s | p50 ms | p99 ms | Redis CPU per process | gateways CPU | EVALSHA per msg | ok |",
		"|---|---|---|---|---|---|---|---|---|---|",
		steps("1 Redis"; $e.single_steps // []),
		steps("3 shards"; $e.cluster_steps // []),
		"",
		($c.memory as $m |
		"History in Redis (on the cluster; MEMORY USAGE with every element sampled): a room log of 1,000 messages left by redis-benchmark (envelopes of \($m.envelope_bytes // "n/a") bytes, a 64-byte body) takes \(f($m.log_bytes; 0)) bytes, \(f($m.bytes_per_message; 1)) per message (\($m.full_logs) logs); the gateways'"'"' rooms (\($m.rooms_sampled) sampled, \(f($m.room_messages; 1)) messages each, envelopes of \(f($m.room_envelope_bytes; 0)) bytes with a 64-byte body) take \(f($m.room_bytes_per_message; 1)) bytes per message; a room'"'"'s meta hash \(f($m.meta_bytes; 0)) bytes; an idempotency key, kept for the idempotency window, \(f($m.bytes_per_idempotency_key; 1)) bytes (used_memory growth over the burst, less its logs and meta hashes, over its \($m.idempotency_keys) keys).")
	else empty end),
	"",
	"Machine: \(.machine.cpu), \(.machine.cores) cores, kernel \(.machine.kernel), \(.machine.go), redis \(.machine.redis)\(if .quick then " (--quick run)" else "" end)\(if (.scenarios | length) < 9 then "; scenarios: \(.scenarios | join(", "))" else "" end); other processes kept \(.machine.busy_cores_before) cores busy just before the suite and \(.machine.other_load_cores) on average during it."
' "$RES/$STAMP.json" >"$RES/$STAMP.md"

# The chart.
if (run fanout || run raw) && (cd "$ROOT" && go run ./bench/chart -in "$RES/$STAMP.json" -out "$RES/$STAMP-fanout.svg"); then
	if command -v chromium >/dev/null; then
		timeout 60 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
			--screenshot="$RES/$STAMP-fanout.png" --window-size=900,560 \
			"file://$RES/$STAMP-fanout.svg" >/dev/null 2>&1 || log "chromium screenshot failed"
	fi
	if ((UPDATE_DOCS)); then
		cp "$RES/$STAMP-fanout.svg" "$ROOT/docs/perf-fanout.svg"
		[[ -f $RES/$STAMP-fanout.png ]] && cp "$RES/$STAMP-fanout.png" "$ROOT/docs/perf-fanout.png"
	fi
fi

echo
cat "$RES/$STAMP.md"
echo
log "saved $RES/$STAMP.json, .md$([[ ! -f $RES/$STAMP-fanout.svg ]] || echo ", -fanout.svg")"
