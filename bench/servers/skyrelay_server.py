"""skyrelay under test: one I/O thread, publisher in the main Python thread."""

from __future__ import annotations

import time

import skyrelay
from common import announce, fail, parse_args, paced, payload

args = parse_args()
server = skyrelay.Server("127.0.0.1", args.port, io_threads=1)
server.start()
# A benchmark topic is a volatile stream: under overload drop stale frames (counted) rather than
# disconnect subscribers, so the run measures sustained delivery.
server.set_room_policy("bench", "drop_oldest")
deadline = time.monotonic() + args.connect_timeout
while server.room_size("bench") < args.clients:
    if time.monotonic() > deadline:
        fail(f"only {server.room_size('bench')} clients subscribed")
    time.sleep(0.05)
announce("PUBLISHING")
seq = 0
for n in paced(args.rate, args.seconds):
    for _ in range(n):
        server.emit("tick", payload(seq).encode(), to="bench")
        seq += 1
announce(f"DONE {seq}")
server.stop()
