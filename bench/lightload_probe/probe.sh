#!/bin/bash
# One skyrelay server at 10 msg/s x 1,000 (bench/servers/skyrelay_server.py on CPU 1, the load
# client on CPU 0, as bench/harness.py runs them) with a command of yours run during the
# window, {PID} in it replaced by the server's pid and {CPID} by the client's; then the
# server's CPU ticks over the window and the client's deliveries and latency.
#   bench/lightload_probe/probe.sh PY auto|off SECONDS 'perf stat -e task-clock -p {PID} -- sleep 5'
#   bench/lightload_probe/probe.sh PY auto 4 'perf trace -T -e io_uring_enter,clock_nanosleep -p {PID} -o /tmp/t.txt -- sleep 4'
#   bench/lightload_probe/probe.sh - node 5 'perf record -g -p {PID} -- sleep 5'   # Node `ws` instead
# (PY: a checkout's .venv/bin/python; the load client is built by any bench/run_*.py.
# MODE node runs servers/ws_node.mjs, MODE trivial-epoll / trivial-uring the trivial server,
# the floor, on either path; PY is then unused.)
# RPS=1 in the environment steers the loopback receive to the client's CPU 0 for the probe
# (/sys/class/net/lo/queues/rx-0/rps_cpus = 1, its old value written back on exit; root only).
PY=$1; MODE=$2; DUR=$3; shift 3
cd "$(dirname "$0")/.."
if [ -n "$RPS" ]; then
  RPS_FILE=/sys/class/net/lo/queues/rx-0/rps_cpus
  RPS_OLD=$(cat $RPS_FILE) || exit 1
  trap 'echo $RPS_OLD > $RPS_FILE; echo "rps_cpus restored: $(cat $RPS_FILE)"' EXIT
  echo 1 > $RPS_FILE || exit 1
fi
PORT=$((20000 + RANDOM % 20000))
if [ "$MODE" = node ]; then
  SERVER=(node servers/ws_node.mjs)
elif [ "$MODE" = trivial-epoll ] || [ "$MODE" = trivial-uring ]; then
  SERVER=(build/loadclient/trivial_server --io-uring $([ "$MODE" = trivial-uring ] && echo 1 || echo 0))
else
  SERVER=($PY servers/skyrelay_server.py --io-uring $MODE)
fi
PYTHONPATH=servers taskset -c 1 "${SERVER[@]}" --port $PORT --clients 1000 --rate 10 --seconds $((DUR+8)) > ${OUT:-/tmp}/lightload-probe-srv.out 2>${OUT:-/tmp}/lightload-probe-srv.err &
SPID=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.2; done
taskset -c 0 build/loadclient/loadclient --port $PORT --path /ws/bench --protocol ws --clients 1000 --warmup 2 --duration $((DUR+3)) > ${OUT:-/tmp}/lightload-probe-cli.out 2>${OUT:-/tmp}/lightload-probe-cli.err &
CPID=$!
for i in $(seq 100); do grep -q PUBLISHING ${OUT:-/tmp}/lightload-probe-srv.out && break; sleep 0.2; done
sleep 2
CMD="${@//\{PID\}/$SPID}"; CMD="${CMD//\{CPID\}/$CPID}"
T0=$(awk '{print $14+$15}' /proc/$SPID/stat)
eval timeout $((DUR+5)) $CMD
T1=$(awk '{print $14+$15}' /proc/$SPID/stat)
wait $CPID
echo "server ticks in window: $((T1-T0))"; tail -1 ${OUT:-/tmp}/lightload-probe-cli.out | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print({k:d[k] for k in ('deliveries','p50_us','p99_us') if k in d})"
kill $SPID 2>/dev/null; wait $SPID 2>/dev/null
cat /proc/loadavg
