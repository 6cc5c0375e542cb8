#!/usr/bin/env python3
"""The scaling model's check on this machine (issue 18 item 6; docs/benchmarks.md "A model for
many cores and machines").

The model says a delivery costs the server a fixed CPU time whatever the number of I/O threads
(the hub's per-channel locks and the per-thread flush queues do not serialize the I/O threads),
so a machine's deliveries per second are its cores divided by the CPU that one delivery costs
everyone on it. On a machine where the load client shares the cores with the server, that is

    D(2 cores) = 2 / (c_server + c_client)      [c_x: CPU seconds per delivery, measured alone]

Method, per round (JSON protocol, 1,000 subscribers, the saturation rate):

1. **Alone.** skyrelay with one I/O thread pinned to CPU 1, one load client pinned to CPU 0,
   as in every fan-out driver: c_server and c_client per delivery.
2. **Prediction.** D(2 cores) from those two figures.
3. **Both cores.** skyrelay with two I/O threads and two load clients of 500 subscribers each,
   nothing pinned: the measured deliveries/s, and the server's CPU per delivery with two
   threads (the model says: the same c_server).

A run disturbed by other work on the machine is marked (other CPU above 15% of a core), as in
bench/harness.py. Reported: per round and the median of the ratio measured / predicted.

    .venv/bin/python bench/run_model_check.py             # 3 rounds, ~2 min
    .venv/bin/python bench/run_model_check.py --quick     # 1 round, short windows
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import harness
from harness import (HERE, LOADCLIENT, RESULTS, busy_seconds, cpu_seconds, free_port, server,
                     stop, wait_line, wait_port)

RATE = 4000.0  # messages/s × 1,000 subscribers: more than two cores deliver (saturation)


def run(io_threads: int, loadclients: int, pinned: bool, args) -> dict:
    """One run: the server with `io_threads`, `loadclients` load clients sharing --clients."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(HERE / "servers"))
    share = args.clients // loadclients
    cmd = [*server("skyrelay_server.py"), "--port", str(port), "--clients", str(args.clients),
           "--rate", str(RATE), "--seconds", str(args.warmup + args.duration + 1.5),
           "--io-threads", str(io_threads)]
    srv, clients = None, []
    try:
        log = open(RESULTS / "model-check-server.log", "w")
        srv = subprocess.Popen((["taskset", "-c", "1"] if pinned else []) + cmd,
                               stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        wait_port(port, srv)
        for i in range(loadclients):
            lc = [str(LOADCLIENT), "--port", str(port), "--path", "/ws/bench", "--protocol", "ws",
                  "--clients", str(share), "--warmup", str(args.warmup),
                  "--duration", str(args.duration)]
            clients.append(subprocess.Popen((["taskset", "-c", "0"] if pinned else []) + lc,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            text=True))
        wait_line(srv, "PUBLISHING", 60)
        time.sleep(args.warmup)
        cpu0, t0, busy0 = cpu_seconds(srv.pid), time.monotonic(), busy_seconds()[0]
        time.sleep(args.duration)
        cpu1, t1, busy1 = cpu_seconds(srv.pid), time.monotonic(), busy_seconds()[0]
        outs = [json.loads(c.communicate(timeout=args.duration + 60)[0].strip().splitlines()[-1])
                for c in clients]
    finally:
        for c in clients:
            stop(c)
        stop(srv)
    deliveries = sum(o["deliveries"] for o in outs)
    duration = max(o["duration_s"] for o in outs)
    client_cpu = sum(o["client_cpu_s"] for o in outs)
    server_cpu = cpu1 - cpu0
    other = busy1 - busy0 - server_cpu - client_cpu
    return {
        "io_threads": io_threads, "loadclients": loadclients, "pinned": pinned,
        "deliveries_per_s": deliveries / duration,
        "server_cpu_per_delivery_us": 1e6 * server_cpu / deliveries,
        "client_cpu_per_delivery_us": 1e6 * client_cpu / deliveries,
        "server_cpu_util": server_cpu / (t1 - t0), "client_cpu_s": client_cpu,
        "other_cpu_s": round(other, 3), "disturbed": other > 0.15 * (t1 - t0),
    }


def main() -> int:
    p = harness.argument_parser(__doc__)
    args = harness.parse_args(p)
    harness.prepare()
    rounds = []
    for rnd in range(args.rounds):
        alone = run(1, 1, True, args)
        both = run(2, 2, False, args)
        c = (alone["server_cpu_per_delivery_us"] + alone["client_cpu_per_delivery_us"]) / 1e6
        predicted = 2 / c
        r = {"alone": alone, "both": both, "predicted_per_s": predicted,
             "measured_over_predicted": both["deliveries_per_s"] / predicted,
             "server_cost_2_threads_over_1": (both["server_cpu_per_delivery_us"]
                                             / alone["server_cpu_per_delivery_us"])}
        rounds.append(r)
        print(f"round {rnd + 1}: alone {alone['deliveries_per_s']:.0f}/s "
              f"(server {alone['server_cpu_per_delivery_us']:.3f} µs, client "
              f"{alone['client_cpu_per_delivery_us']:.3f} µs per delivery"
              f"{', disturbed' if alone['disturbed'] else ''}); predicted on 2 cores "
              f"{predicted:.0f}/s; measured {both['deliveries_per_s']:.0f}/s "
              f"(server {both['server_cpu_per_delivery_us']:.3f} µs per delivery"
              f"{', disturbed' if both['disturbed'] else ''}): "
              f"{r['measured_over_predicted']:.2f}× the prediction", flush=True)
    ratio = statistics.median(r["measured_over_predicted"] for r in rounds)
    cost = statistics.median(r["server_cost_2_threads_over_1"] for r in rounds)
    print(f"\nmedian measured/predicted {ratio:.2f}; server CPU per delivery with 2 I/O threads "
          f"{cost:.2f}× that with 1")
    path = harness.save("model-check", {"args": vars(args), "rounds": rounds,
                                        "median_measured_over_predicted": ratio,
                                        "median_server_cost_ratio": cost})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
