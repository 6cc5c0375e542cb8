#!/bin/bash
# Server CPU per answer for one echo peer under bench/loadclient's echo_client: the server on
# CPU 1, the client on CPU 0 (100 connections, 1 s warm-up, 4 s), and `perf stat -e
# task-clock,context-switches` on the server for 2 s of it. Prints answers/s, server CPU µs
# and context switches per answer, and the client's error count. Run from the repository root
# after `bench/run_handlers.py` has built the client (bench/build/loadclient):
#
#   bench/handlers_micro/cpu_per_answer.sh sync sio                 # skyrelay, sync handler
#   PYTHONPATH=/path/to/other/site bench/handlers_micro/cpu_per_answer.sh sync sio  # another build
#   bench/handlers_micro/cpu_per_answer.sh node sio                 # Node socket.io (json: ws)
#
# Modes: sync | async (bench/servers/echo_skyrelay.py), node (bench/servers/echo_node.mjs),
# trivial (bench/loadclient/echo_trivial_server). Protocols: sio | json.
set -eu
mode=$1 proto=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
port=$((20000 + RANDOM % 20000))
case $mode in
  node) taskset -c 1 node bench/servers/echo_node.mjs --proto "$proto" --port $port >"$tmp/srv" 2>&1 & ;;
  trivial) taskset -c 1 bench/build/loadclient/echo_trivial_server --proto "$proto" --port $port --seconds 30 >"$tmp/srv" 2>&1 & ;;
  *) taskset -c 1 .venv/bin/python bench/servers/echo_skyrelay.py --mode "$mode" --port $port >"$tmp/srv" 2>&1 & ;;
esac
server=$!
for _ in $(seq 100); do grep -q READY "$tmp/srv" && break; sleep 0.1; done
sleep 0.3
taskset -c 0 bench/build/loadclient/echo_client --proto "$proto" --port $port --warmup 1 --seconds 4 >"$tmp/client" &
client=$!
sleep 1.5
perf stat -e task-clock,context-switches -p $server -- sleep 2 2>"$tmp/perf"
wait $client
kill $server
wait $server 2>/dev/null || true
python3 - "$tmp" "$mode" "$proto" <<'PY'
import json, re, sys
tmp, mode, proto = sys.argv[1:]
r = json.loads(open(f"{tmp}/client").read().strip().splitlines()[-1])
perf = open(f"{tmp}/perf").read()
rate = r["answers"] / r["seconds"]
cpu_ms = float(re.search(r"([\d.,]+) msec task-clock", perf).group(1).replace(",", ""))
switches = int(re.search(r"([\d,]+)\s+context-switches", perf).group(1).replace(",", ""))
elapsed = float(re.search(r"([\d.]+) seconds time elapsed", perf).group(1))
answers = rate * elapsed  # the client's rate over its window, applied to perf's 2 s
print(f"{mode} {proto}: {rate:,.0f}/s, {cpu_ms * 1000 / answers:.1f} us server CPU per answer, "
      f"{switches / answers:.2f} switches per answer, {r['errors']} errors")
PY
