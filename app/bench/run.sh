#!/usr/bin/env bash
# gin-demo benchmarks: numbers for README.md, not asserts. Loopback only;
# every loop is bounded (RUNS, COUNT, ROUNDS x WRK_DURATION).
#
#   make -C app bench            # or: app/bench/run.sh after make -C app build image
#   RUNS=100 COUNT=10 ROUNDS=5 WRK_DURATION=10s app/bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=bin/gin-demo
IMAGE_TAR=bin/gin-demo-image.tar
RUNS=${RUNS:-50}                # start-to-ready runs
COUNT=${COUNT:-5}               # go test -bench -count
ROUNDS=${ROUNDS:-3}             # wrk rounds per server, alternating
WRK_DURATION=${WRK_DURATION:-5s}
WRK_CONNS=${WRK_CONNS:-32}
GIN_PORT=${GIN_PORT:-18080}
BARE_PORT=${BARE_PORT:-18081}

median() { sort -g | awk '{v[NR]=$1} END{ if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2 }'; }

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(go version | cut -d' ' -f3)"

echo "== sizes"
[ -f "$BIN" ] || { echo "run make build first" >&2; exit 1; }
bin_bytes=$(stat -c %s "$BIN")
echo "binary $BIN: $bin_bytes bytes ($(awk -v b="$bin_bytes" 'BEGIN{printf "%.2f MiB", b/1048576}'))"
if [ -f "$IMAGE_TAR" ]; then
  go run ./cmd/mkimage -verify "$IMAGE_TAR" | sed -n 1,2p
  tar_bytes=$(stat -c %s "$IMAGE_TAR")
  echo "image tarball $IMAGE_TAR: $tar_bytes bytes ($(awk -v b="$tar_bytes" 'BEGIN{printf "%.2f MiB", b/1048576}'))"
else
  echo "image: $IMAGE_TAR missing (make image)"
fi

echo "== start to first 200 from /readyz ($RUNS runs)"
go run ./bench/startup -bin "$BIN" -n "$RUNS"

echo "== go test -bench: GET / gin+metrics vs bare net/http ($COUNT alternating runs)"
out=bin/bench-go.txt
: >"$out"
for _ in $(seq 1 "$COUNT"); do # one process per round, so gin and bare alternate
  go test -run '^$' -bench 'Root|Loopback' -benchmem -count 1 . | tee -a "$out" | grep -E '^Benchmark'
done
# col UNIT: the value before UNIT on a benchmark line
col() { awk -v b="$1" -v u="$2" 'index($1, b) == 1 { for (i = 2; i < NF; i++) if ($(i+1) == u) print $i }' "$out" | median; }
for b in Root Loopback; do
  for unit in ns/op cpu-ns/op; do
    g=$(col "Benchmark$b/gin+metrics" "$unit")
    r=$(col "Benchmark$b/bare-net-http" "$unit")
    awk -v b="$b" -v u="$unit" -v g="$g" -v r="$r" \
      'BEGIN{printf "%-9s median %-9s gin+metrics %7.0f, bare %7.0f -> throughput ratio gin/bare %.2f\n", b, u, g, r, r/g}'
  done
done

echo "== wrk: GET / over loopback, $ROUNDS alternating rounds of $WRK_DURATION, $WRK_CONNS connections"
if ! command -v wrk >/dev/null; then
  echo "wrk not installed (apt-get install wrk); skipped"
  exit 0
fi
go build -o bin/bareserver ./bench/bareserver
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_ready() { # url
  for _ in $(seq 1 500); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.01; done
  echo "not ready: $1" >&2; return 1
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime+stime of a pid, in clock ticks
HZ=$(getconf CLK_TCK)
run_wrk() { # name port pid
  local t0 t1
  t0=$(ticks "$3")
  wrk -t1 -c"$WRK_CONNS" -d"$WRK_DURATION" --latency "http://127.0.0.1:$2/" >"bin/wrk-$1.txt"
  t1=$(ticks "$3")
  rps=$(awk '/^Requests\/sec:/{print $2}' "bin/wrk-$1.txt")
  reqs=$(awk '/requests in/{print $1}' "bin/wrk-$1.txt")
  p50=$(awk '$1=="50%"{print $2}' "bin/wrk-$1.txt")
  p99=$(awk '$1=="99%"{print $2}' "bin/wrk-$1.txt")
  errs=$(grep -c 'Non-2xx\|Socket errors' "bin/wrk-$1.txt" || true)
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN{printf "%.1f", d / hz * 1e6 / n}')
  echo "$1 $rps $p50 $p99 $cpu $errs" | tee -a bin/wrk-rounds.txt
}
: >bin/wrk-rounds.txt
echo "server req/s p50 p99 server-cpu-us/req error-lines"
for round in $(seq 1 "$ROUNDS"); do
  LISTEN_ADDR=127.0.0.1:$GIN_PORT APP_VERSION=v1.0.0 POD_NAME=gin-demo-bench "$BIN" 2>/dev/null &
  pids+=($!); wait_ready "http://127.0.0.1:$GIN_PORT/readyz"
  run_wrk gin+metrics "$GIN_PORT" "${pids[-1]}"
  kill -TERM "${pids[-1]}"; wait "${pids[-1]}" || true
  LISTEN_ADDR=127.0.0.1:$BARE_PORT bin/bareserver &
  pids+=($!); wait_ready "http://127.0.0.1:$BARE_PORT/"
  run_wrk bare-net-http "$BARE_PORT" "${pids[-1]}"
  kill -TERM "${pids[-1]}"; wait "${pids[-1]}" || true
done
for c in 2:req/s 5:server-cpu-us/req; do
  i=${c%%:*}; u=${c#*:}
  g=$(awk -v i="$i" '$1=="gin+metrics"{print $i}' bin/wrk-rounds.txt | median)
  r=$(awk -v i="$i" '$1=="bare-net-http"{print $i}' bin/wrk-rounds.txt | median)
  if [ "$i" = 2 ]; then ratio=$(awk -v g="$g" -v r="$r" 'BEGIN{print g/r}'); else ratio=$(awk -v g="$g" -v r="$r" 'BEGIN{print r/g}'); fi
  awk -v u="$u" -v g="$g" -v r="$r" -v x="$ratio" 'BEGIN{printf "wrk median %-19s gin+metrics %8.1f, bare %8.1f -> throughput ratio gin/bare %.2f\n", u, g, r, x}'
done
