#!/usr/bin/env python3
"""Runs the libFuzzer targets until each has had a CPU budget, across sessions.

Each run of a target lasts --chunk seconds of wall time on the working corpus in
build/fuzz-corpus/<target> (seeded from fuzz/corpus/<target>) and appends one line to
fuzz/runs.jsonl: the target, the CPU seconds it used, its executions, libFuzzer's coverage at
the end, the date and the commit. The target with the least CPU so far goes next, until every
target has --minutes of CPU or --until passes. A crash stops the run and leaves its input in
build/fuzz/artifacts/. Build the targets first: `make fuzz-build`.

    tools/fuzz_budget.py --minutes 30 --until 04:40     # fuzz, niced, until 04:40 at the latest
    tools/fuzz_budget.py --jobs 2 --until 07:40         # two targets at a time (both cores)
    tools/fuzz_budget.py --report                       # the totals, as docs/security.md shows
    tools/fuzz_budget.py --merge                        # keep inputs that add coverage in fuzz/corpus
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEDGER = ROOT / "fuzz" / "runs.jsonl"
BUILD = ROOT / "build" / "fuzz"


def targets() -> list[str]:
    """The targets `make fuzz` runs, read from the Makefile so the two never disagree."""
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("FUZZ_TARGETS :="):
            return line.split(":=", 1)[1].split()
    raise SystemExit("FUZZ_TARGETS not found in the Makefile")


def totals() -> dict[str, dict]:
    out: dict[str, dict] = collections.defaultdict(lambda: {"cpu": 0.0, "execs": 0, "last": None})
    if LEDGER.exists():
        for line in LEDGER.read_text().splitlines():
            run = json.loads(line)
            t = out[run["target"]]
            t["cpu"] += run["cpu"]
            t["execs"] += run["execs"] or 0
            if run["cov"] is not None:  # a failed run reports no coverage
                t["last"] = run
    return out


def run_once(target: str, chunk: int) -> dict:
    corpus = ROOT / "build" / "fuzz-corpus" / target
    corpus.mkdir(parents=True, exist_ok=True)
    (BUILD / "artifacts").mkdir(parents=True, exist_ok=True)
    # The fuzzer is exec'd by nice, so wait4 on its pid gives its own CPU time, apart from
    # other runs going on at the same time.
    proc = subprocess.Popen(
        ["nice", "-n", "19", str(BUILD / f"fuzz_{target}"), f"-max_total_time={chunk}",
         "-max_len=8192", "-timeout=10", "-print_final_stats=1",
         f"-artifact_prefix={BUILD / 'artifacts'}/{target}-", str(corpus),
         str(ROOT / "fuzz" / "corpus" / target)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    execs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", output)
    cov = re.findall(r"cov: (\d+) ft: (\d+)", output)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    run = {"target": target,
           "cpu": round(usage.ru_utime + usage.ru_stime, 1),
           "execs": int(execs[-1]) if execs else None,
           "cov": int(cov[-1][0]) if cov else None, "ft": int(cov[-1][1]) if cov else None,
           "rc": proc.returncode, "date": datetime.date.today().isoformat(), "commit": commit}
    if proc.returncode != 0:
        sys.stdout.write(output[-4000:])
    return run


def report() -> None:
    print("| target | CPU minutes | executions | coverage (edges / features) |")
    print("| --- | ---: | ---: | ---: |")
    done = totals()
    for name in targets():  # every target, also one that has not run yet
        t, last = done[name], done[name]["last"]
        cov = f"{last['cov']} / {last['ft']}" if last else "none yet"
        print(f"| `{name}` | {t['cpu'] / 60:.1f} | {t['execs'] / 1e6:.1f} M | {cov} |")


def merge() -> None:
    for target in targets():
        work = ROOT / "build" / "fuzz-corpus" / target
        if not work.is_dir():
            continue
        subprocess.run([str(BUILD / f"fuzz_{target}"), "-merge=1", "-max_len=8192",
                        str(ROOT / "fuzz" / "corpus" / target), str(work)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        print(target, len(os.listdir(ROOT / "fuzz" / "corpus" / target)), "inputs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="CPU minutes per target")
    ap.add_argument("--chunk", type=int, default=300, help="wall seconds per run")
    ap.add_argument("--until", help="stop starting runs after this time of day, HH:MM")
    ap.add_argument("--jobs", type=int, default=1, help="targets fuzzed at the same time")
    ap.add_argument("--report", action="store_true", help="print the totals and exit")
    ap.add_argument("--merge", action="store_true",
                    help="merge the working corpora into fuzz/corpus and exit")
    args = ap.parse_args()
    if args.report:
        return report()
    if args.merge:
        return merge()
    deadline = float("inf")
    if args.until:
        hh, mm = map(int, args.until.split(":"))
        now = datetime.datetime.now()
        deadline = now.replace(hour=hh, minute=mm, second=0).timestamp()
    # A target without its binary would be recorded as a failed run (rc 127) with no time:
    # refuse before anything runs instead.
    missing = [t for t in targets() if not (BUILD / f"fuzz_{t}").exists()]
    if missing:
        raise SystemExit(f"no fuzz_{missing[0]} in {BUILD}: run `make fuzz-build` first")
    lock = threading.Lock()
    running: set[str] = set()
    failed: list[str] = []

    def next_target() -> str | None:
        done = totals()
        todo = [t for t in targets()
                if t not in running and done[t]["cpu"] < args.minutes * 60]
        return min(todo, key=lambda t: done[t]["cpu"]) if todo else None

    def worker() -> None:
        while not failed and time.time() + args.chunk <= deadline:
            with lock:
                target = next_target()
                if target is None:
                    return
                running.add(target)
            run = run_once(target, args.chunk)
            with lock:
                running.discard(target)
                with LEDGER.open("a") as f:
                    f.write(json.dumps(run) + "\n")
                print(json.dumps(run), flush=True)
                if run["rc"] != 0:
                    failed.append(target)

    workers = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if failed:
        raise SystemExit(f"fuzz_{failed[0]} failed; its input is in {BUILD / 'artifacts'}")

if __name__ == "__main__":
    main()
