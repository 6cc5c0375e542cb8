#!/usr/bin/env python3
"""What one machine and a cluster of them carry, from the per-connection and per-delivery costs
measured on this 2-core machine (issue 18 item 6; docs/benchmarks.md "A model for many cores
and machines", which gives each constant's source).

    .venv/bin/python bench/machine_model.py                          # 2 cores, 32 cores, 8 × 32
    .venv/bin/python bench/machine_model.py --cores 64 --memory-gib 256 --machines 4

Every constant is an option, so a new measurement changes the model without editing it. The
model is arithmetic on those constants: what it leaves out is listed in the docs.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Costs:
    # Per idle connection (bench/run_scale.py): user space and the kernel's share (half of the
    # two-ended slab growth measured on loopback), KiB.
    user_kib: float
    kernel_kib: float
    # Server CPU per heartbeat (ping + pong, or one SSE keep-alive), µs, and its interval, s.
    heartbeat_us: float
    heartbeat_s: float
    # Server CPU per accepted connection (accept, handshake, session), µs: plain and TLS.
    accept_us: float
    accept_tls_us: float
    # Server CPU per delivery at saturation, µs (bench/run_protocols.py, 1,000 subscribers),
    # and how much more it costs once several I/O threads share the machine
    # (bench/run_model_check.py: two threads against one).
    delivery_us: float
    thread_cost: float
    # The serial part of one publication in one channel: the hub's per-member enqueue under the
    # channel's order (ns per member), which no number of threads splits.
    enqueue_ns: float
    # Inbound events one process's handlers take per second (one dispatcher, the GIL).
    handler_events_per_s: float
    # Publications per second one Redis server carries (its script per publication).
    redis_publications_per_s: float
    # Connections one process may hold: its RLIMIT_NOFILE (the kernel's fs.nr_open bounds it).
    fd_limit: int


def parse() -> tuple[argparse.Namespace, Costs]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cores", type=int, nargs="*", default=[2, 32])
    p.add_argument("--memory-gib", type=float, nargs="*", default=[24, 128],
                   help="memory of each --cores machine")
    p.add_argument("--machines", type=int, default=8, help="machines in the cluster row")
    p.add_argument("--redis-masters", type=int, default=3)
    p.add_argument("--memory-share", type=float, default=0.8,
                   help="share of memory the connections may use")
    p.add_argument("--heartbeat-share", type=float, default=0.1,
                   help="share of the cores heartbeats may use")
    d = Costs(user_kib=2.5, kernel_kib=4.7, heartbeat_us=10.0, heartbeat_s=25.0,
              accept_us=76.0, accept_tls_us=572.0, delivery_us=0.25, thread_cost=1.25,
              enqueue_ns=45.0,
              handler_events_per_s=50_000.0, redis_publications_per_s=13_866.0,
              fd_limit=1_048_576)
    for name, value in vars(d).items():
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = p.parse_args()
    if len(args.memory_gib) != len(args.cores):
        p.error("give one --memory-gib per --cores")
    costs = Costs(**{k: getattr(args, k) for k in vars(d)})
    return args, costs


def machine(cores: int, memory_gib: float, c: Costs, args: argparse.Namespace) -> dict:
    """One machine running one skyrelay process per core group: its limits."""
    by_memory = memory_gib * 2**20 * args.memory_share / (c.user_kib + c.kernel_kib)
    by_heartbeat = cores * args.heartbeat_share * c.heartbeat_s / (c.heartbeat_us * 1e-6)
    connections = min(by_memory, by_heartbeat)
    heartbeat_cores = connections * c.heartbeat_us * 1e-6 / c.heartbeat_s
    per_delivery = c.delivery_us * (c.thread_cost if cores > 1 else 1.0)
    deliveries = (cores - heartbeat_cores) / (per_delivery * 1e-6)
    one_channel = 1 / (c.enqueue_ns * 1e-9)
    return {
        "cores": cores, "memory_gib": memory_gib,
        "connections": connections,
        "binds_connections": "memory" if by_memory <= by_heartbeat else "heartbeat CPU",
        "processes_for_fds": -(-connections // c.fd_limit),
        "deliveries_per_s": deliveries,
        "one_channel_deliveries_per_s": min(deliveries, one_channel),
        "binds_one_channel": "cores" if deliveries <= one_channel else "the channel's order",
        "reconnect_all_s": connections * c.accept_us * 1e-6 / cores,
        "reconnect_all_tls_s": connections * c.accept_tls_us * 1e-6 / cores,
        "handler_events_per_s": cores * c.handler_events_per_s,
    }


def fmt(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f}"


def main() -> int:
    args, c = parse()
    rows = [machine(n, m, c, args) for n, m in zip(args.cores, args.memory_gib)]
    print("| machine | connections (binds) | deliveries/s | one channel, deliveries/s (binds) "
          "| all reconnect, plain / TLS | handler events/s (one process per core) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['cores']} cores, {r['memory_gib']:.0f} GiB "
              f"| {fmt(r['connections'])} ({r['binds_connections']}) "
              f"| {fmt(r['deliveries_per_s'])} "
              f"| {fmt(r['one_channel_deliveries_per_s'])} ({r['binds_one_channel']}) "
              f"| {r['reconnect_all_s']:.0f} s / {r['reconnect_all_tls_s']:.0f} s "
              f"| {fmt(r['handler_events_per_s'])} |")
    big = rows[-1]
    n = args.machines
    redis = c.redis_publications_per_s
    print(f"\nA cluster of {n} × {big['cores']} cores: {fmt(n * big['connections'])} connections, "
          f"{fmt(n * big['deliveries_per_s'])} deliveries/s when every machine's members take "
          f"every publication; publications through the broker at most {fmt(redis)}/s on one "
          f"Redis, {fmt(redis * args.redis_masters)}/s on {args.redis_masters} masters "
          f"(rooms spread over slots). A publication to a room of M members per machine binds "
          f"the broker when M < {big['deliveries_per_s'] / redis:.0f} (one Redis), the "
          f"machines above it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
