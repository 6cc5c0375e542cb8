#!/usr/bin/env python3
"""Splits a server's `perf record -g` samples at light load into where the CPU of a send goes:
the loopback receive run in the sender's context, the TCP/IP transmit itself, the system-call
and socket layer around it (io_uring's own work included), the rest of the kernel, and user
space. Reads `perf script` output; with --deliveries N and --hz F (perf's -F) it also prints
microseconds per delivery (samples / F / N).

    perf script -i server.data | python3 bench/lightload_probe/kernel_split.py --hz 4999 --deliveries 50000

A sample is put in the first category whose test its call chain passes, in this order:

- loopback receive: `process_backlog` in the chain (the backlog that loopback_xmit filled,
  processed in the sender's softirq when it re-enables bottom halves: ip_rcv, tcp_v4_rcv,
  the reader's wake-up). Sub-shares: the reader's wake-up (`sock_def_readable`) and ACK
  handling (`tcp_ack`; this includes the server socket's own processing of the client's
  ACKs where they are handled in this context, which on a real network would stay on the
  server).
- RPS hand-off: `net_rps_send_ipi` (with RPS steering the receive to another CPU, the
  sender's softirq sends that CPU an interrupt when its backlog was idle).
- freed buffers returned: `skb_defer_free_flush` (buffers the reader freed on its CPU, handed
  back to the CPU that allocated them, the sender's).
- other network softirq: the rest under `net_rx_action`.
- TCP/IP transmit: `tcp_sendmsg` in the chain (TCP, IP output, the loopback device's enqueue).
- send system call and socket layer: the rest of a send (`sock_sendmsg`, `__sys_sendmsg`,
  `sock_write_iter`, `do_writev`, io_uring's `io_submit_sqes`/`io_uring_enter` and `fget`).
- other kernel: any other kernel frame at the top (epoll, futex, scheduling, timers, faults).
- user space: the rest, by the sample's innermost object (DSO).
"""

from __future__ import annotations

import argparse
import collections
import re
import sys

SEND_SYSCALL = ("sock_sendmsg", "__sys_sendmsg", "sock_write_iter", "do_writev", "ksys_write",
                "io_submit_sqes", "__do_sys_io_uring_enter", "io_uring_enter", "io_send")
RECEIVE = "loopback receive in the sender's context (process_backlog and below)"
FRAME = re.compile(r"^\s*[0-9a-f]+\s+(\S+?)(?:\+0x[0-9a-f]+)?\s+\((.*)\)\s*$")


def samples(lines):
    """(frames, dsos) per sample, innermost first."""
    frames: list[str] = []
    dsos: list[str] = []
    for line in lines:
        if not line.strip():
            if frames:
                yield frames, dsos
            frames, dsos = [], []
            continue
        m = FRAME.match(line)
        if m:
            frames.append(m.group(1))
            dsos.append(m.group(2))
    if frames:
        yield frames, dsos


def classify(frames: list[str], dsos: list[str]) -> tuple[str, list[str]]:
    chain = set(frames)
    if "process_backlog" in chain:
        subs = [name for name, fn in (("  of which the reader's wake-up (sock_def_readable)",
                                       "sock_def_readable"),
                                      ("  of which ACK handling (tcp_ack)", "tcp_ack"))
                if fn in chain]
        return RECEIVE, subs
    if "net_rps_send_ipi" in chain:
        return "RPS hand-off: interrupt to the receiving CPU (net_rps_send_ipi)", []
    if "skb_defer_free_flush" in chain:
        return "freed buffers returned by the reader (skb_defer_free_flush)", []
    if "net_rx_action" in chain:
        return "other network softirq (net_rx_action)", []
    if "tcp_sendmsg" in chain or "tcp_sendmsg_locked" in chain:
        return "TCP/IP transmit (tcp_sendmsg and below)", []
    if chain.intersection(SEND_SYSCALL):
        return "send system call, socket layer, io_uring's own", []
    if dsos[0] == "[kernel.kallsyms]":
        return "other kernel (epoll, futex, scheduler, timers)", []
    dso = dsos[0].rsplit("/", 1)[-1]
    if dso.startswith("_core"):
        dso = "skyrelay _core"
    elif dso.startswith(("libpython", "python")):
        dso = "CPython"
    elif dso.startswith("perf-") or dso == "unknown":
        dso = "JIT code (V8)"
    return "user space: " + dso, []


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", nargs="?", help="perf script output (default: stdin)")
    p.add_argument("--hz", type=float, help="perf record's -F")
    p.add_argument("--deliveries", type=float, help="deliveries during the recorded window")
    p.add_argument("--top", type=int, default=6, help="user-space objects listed")
    args = p.parse_args()
    counts: collections.Counter[str] = collections.Counter()
    subs: collections.Counter[str] = collections.Counter()
    with (open(args.file) if args.file else sys.stdin) as f:
        total = 0
        for frames, dsos in samples(f):
            cat, sub = classify(frames, dsos)
            counts[cat] += 1
            subs.update(sub)
            total += 1
    per = (lambda n: f" {n / args.hz / args.deliveries * 1e6:6.2f} us/delivery"
           ) if args.hz and args.deliveries else (lambda n: "")
    print(f"{total} samples" + (f", {per(total).strip()}" if per(total) else ""))
    kernel = [c for c in counts if not c.startswith("user space")]
    user = sorted((c for c in counts if c.startswith("user space")), key=lambda c: -counts[c])
    order = [RECEIVE, "RPS hand-off: interrupt to the receiving CPU (net_rps_send_ipi)",
             "freed buffers returned by the reader (skb_defer_free_flush)",
             "other network softirq (net_rx_action)", "TCP/IP transmit (tcp_sendmsg and below)",
             "send system call, socket layer, io_uring's own",
             "other kernel (epoll, futex, scheduler, timers)"]
    for cat in [c for c in order if c in counts] + [c for c in kernel if c not in order]:
        print(f"{counts[cat] / total:6.1%} {per(counts[cat])}  {cat}")
        if cat == RECEIVE:
            for s in sorted(subs, key=lambda s: -subs[s]):
                print(f"{subs[s] / total:6.1%} {per(subs[s])}  {s}")
    u = sum(counts[c] for c in user)
    print(f"{u / total:6.1%} {per(u)}  user space, of which:")
    for cat in user[:args.top]:
        print(f"{counts[cat] / total:6.1%} {per(counts[cat])}    {cat[len('user space: '):]}")
    rest = sum(counts[c] for c in user[args.top:])
    if rest:
        print(f"{rest / total:6.1%} {per(rest)}    other objects")
    return 0


if __name__ == "__main__":
    sys.exit(main())
