#!/usr/bin/env python3
"""Per publication, from `perf trace -T -e io_uring_enter,clock_nanosleep` of a skyrelay server
at light load (probe.sh): when the publisher woke (its clock_nanosleep returned) to the start
of the first io_uring_enter and to the end of the last one before its next wake-up; and, over
all of them, the user-space time between two enters of one flush (the runs of up to 64 write
loops) and the kernel time per send inside an enter of 64.

    bench/lightload_probe/publications.py /tmp/t.txt
"""

from __future__ import annotations

import re
import statistics
import sys

CALL = re.compile(r"\s*([\d.]+) \(\s*([\d.]+) ms\): \S+\s+(?:\.\.\. \[continued\]: )?(\w+)\((.*)")


def main(path: str) -> None:
    wakes, enters = [], []
    for line in open(path):
        m = CALL.match(line)
        if not m:
            continue
        start, took, name, args = float(m[1]), float(m[2]), m[3], m[4]
        if name == "clock_nanosleep":
            wakes.append(start + took)
        elif name == "io_uring_enter":
            n = re.search(r"to_submit: (\d+)", args)
            enters.append((start, start + took, int(n[1]) if n else 0))
    wakes.sort()
    enters.sort()
    first, last = [], []
    for w, nxt in zip(wakes, wakes[1:] + [float("inf")]):
        mine = [e for e in enters if w <= e[0] < nxt]
        if mine:
            first.append(mine[0][0] - w)
            last.append(mine[-1][1] - w)
    gaps = [b[0] - a[1] for a, b in zip(enters, enters[1:]) if 0 <= b[0] - a[1] < 0.3]
    per_send = [(e[1] - e[0]) / e[2] for e in enters if e[2] == 64]
    q = lambda v, p: sorted(v)[min(len(v) - 1, int(p * len(v)))]
    print(f"{len(first)} publications: wake -> first send {statistics.median(first):.2f} ms "
          f"(median); wake -> last send {statistics.median(last):.2f} ms median, "
          f"{q(last, 0.9):.2f} p90, {max(last):.2f} max")
    print(f"{len(enters)} enters: user time between two enters of a flush "
          f"{statistics.median(gaps) * 1000:.0f} us median; kernel time per send in an enter "
          f"of 64 {statistics.median(per_send) * 1000:.2f} us median")


if __name__ == "__main__":
    main(sys.argv[1])
