#!/usr/bin/env python3
"""Where one Redis, a Redis Cluster and the engine itself bind, for N nodes and M channels: a
cost model whose constants come from a run of bench/run_redis.py (its JSON in bench/results/).

Costs, in CPU-seconds, measured at the run's highest offered rate:
- c_script + c_node x f: redis-server's CPU per publication, fitted over 1, 2 and 4 nodes
  (the publish script, then one pub/sub write per node that follows the channel: f nodes);
- c_delivery: a node's CPU per delivery, from the in-memory broker's run (one node; the
  publisher's own cost per publication is spread over the run's members, so the figure is a
  little high for small rooms);
- c_receive: what the nodes' CPU per publication grows by with each node (fitted over 1, 2
  and 4 nodes with the same members in all): reading and decoding the message from Redis, the
  order check, the hand-over to the hub, the node's own timers.

Limits, in publications per second (each node has `--cores` cores for delivery; Redis runs
commands on one core per server):
- one Redis:   1 / (c_script + c_node x f)
- a cluster:   K masters share the channels (M >= K, spread by hash slot; sharded pub/sub
               sends a message only to the nodes subscribed on its shard): K times one Redis
               while the hottest channel is not the bound; a single hot channel gains nothing
- the engine:  per node, cores / (c_receive + c_delivery x members per node)
where a channel with s members spread at random over N nodes is followed by
f = N x (1 - (1 - 1/N)^s) nodes. The binding limit is the smallest.

    .venv/bin/python bench/redis_model.py [bench/results/redis-<stamp>.json] [--cores 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent


def latest() -> Path:
    runs = sorted((HERE / "results").glob("redis-*.json"))
    if not runs:
        raise SystemExit("no bench/results/redis-*.json: run bench/run_redis.py first")
    return runs[-1]


def per_pub(run: dict, key: str) -> float:
    pubs = run["published_per_s"] * run["duration_s"]
    return run[key] / pubs


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares y = a + b x."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - b * mx, b


def constants(data: dict) -> dict:
    """The model's constants from a run_redis.py result (its highest rate's runs)."""
    scenarios = data["runs"]
    top = max(scenarios, key=lambda s: float(s.split()[0]))
    runs = scenarios[top]
    memory = runs.get("skyrelay, memory, 1 node") or []
    if not memory:
        raise SystemExit(f"the run has no in-memory broker runs at {top}")
    c_delivery = statistics.median(
        r["server_cpu_s"] / (r["deliveries_per_s"] * r["duration_s"]) for r in memory)
    redis_points, node_points = [], []
    for n in (1, 2, 4):
        name = f"skyrelay, redis, {n} node" + ("s" if n > 1 else "")
        for r in runs.get(name) or []:
            redis_points.append((n, per_pub(r, "redis_cpu_s")))
            pubs = r["published_per_s"] * r["duration_s"]
            node_points.append((n, sum(r["node_cpu_s"]) / pubs))
    if len(redis_points) < 2:
        raise SystemExit(f"the run has too few Redis runs at {top} to fit the model")
    c_script, c_node = fit_line(redis_points)
    _, c_receive = fit_line(node_points)  # the nodes' CPU per publication grows by this per node
    return {"scenario": top, "c_delivery": c_delivery, "c_script": max(c_script, 0.0),
            "c_node": max(c_node, 0.0), "c_receive": max(c_receive, 0.0)}


def followers(nodes: int, members: int) -> float:
    return nodes * (1 - (1 - 1 / nodes) ** members)


def limits(k: dict, nodes: int, channels: int, members: int, cores: float,
           masters: int = 3) -> dict:
    """Publications/s (over all channels) at which each part saturates, publications spread
    evenly over `channels` channels of `members` members each, members spread over nodes."""
    f = followers(nodes, members)
    redis = 1 / (k["c_script"] + k["c_node"] * f)
    cluster = redis * min(masters, channels)
    # A node follows a channel with probability f / nodes and then delivers to its members
    # there (members / f of them on average).
    per_node_pub = (f / nodes) * (k["c_receive"] + k["c_delivery"] * members / f)
    engine = cores / per_node_pub
    bound = min(("one Redis", redis), ("the engine", engine), key=lambda t: t[1])
    bound_cluster = min(("the cluster", cluster), ("the engine", engine), key=lambda t: t[1])
    return {"followers": f, "redis": redis, "cluster": cluster, "engine": engine,
            "bound": bound[0], "bound_cluster": bound_cluster[0]}


def table(k: dict, cores: float, masters: int) -> list[str]:
    lines = ["| nodes | channels | members each | nodes per channel | one Redis, pub/s | "
             f"cluster of {masters}, pub/s | engine, pub/s | binds (one Redis) | "
             "binds (cluster) | deliveries/s at the bound (one Redis) |",
             "|---:|---:|---:|---:|---:|---:|---:|---|---|---:|"]
    for channels, members in ((1, 10_000), (1, 100_000), (100, 1_000), (10_000, 10),
                              (100_000, 2)):
        for nodes in (1, 2, 4, 8, 16, 32):
            lim = limits(k, nodes, channels, members, cores, masters)
            at = min(lim["redis"], lim["engine"])
            lines.append(
                f"| {nodes} | {channels:,} | {members:,} | {lim['followers']:.1f} | "
                f"{lim['redis']:,.0f} | {lim['cluster']:,.0f} | {lim['engine']:,.0f} | "
                f"{lim['bound']} | {lim['bound_cluster']} | {at * members:,.0f} |")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("result", nargs="?", type=Path, help="a run_redis.py JSON (default: latest)")
    p.add_argument("--cores", type=float, default=1.0, help="cores per node for delivery")
    p.add_argument("--masters", type=int, default=3, help="masters of the cluster")
    p.add_argument("--redis-node-us", type=float,
                   help="Redis's CPU per following node and publication, in us, instead of the "
                        "fitted one (a run of 1, 2 and 4 nodes may not resolve it: then 0)")
    args = p.parse_args()
    path = args.result or latest()
    k = constants(json.loads(path.read_text()))
    if args.redis_node_us is not None:
        k["c_node"] = args.redis_node_us * 1e-6
    print(f"constants from {path.name} at {k['scenario']}: Redis per publication "
          f"{k['c_script'] * 1e6:.1f} us + {k['c_node'] * 1e6:.1f} us per following node; "
          f"a node per delivery {k['c_delivery'] * 1e9:.0f} ns, per publication received "
          f"{k['c_receive'] * 1e6:.1f} us\n")
    print("\n".join(table(k, args.cores, args.masters)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
