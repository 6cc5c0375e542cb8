"""A TCP proxy on 127.0.0.1 that can cut every connection through it and refuse new ones for a
while: the network failing under a client, whatever protocol it speaks."""

from __future__ import annotations

import socket
import threading
import time


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._refuse_until = 0.0
        self._stopped = threading.Event()
        self._stalled = threading.Event()  # see stall_subscribers
        self._subscribers: set[socket.socket] = set()  # upstream ends of (P)SUBSCRIBE clients
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)
        self._accept_thread.start()

    def cut(self, refuse_for: float = 0.0) -> None:
        """Drops every connection (an RST where it can) and refuses new ones for a while."""
        with self._lock:
            self._refuse_until = time.monotonic() + refuse_for
            victims = list(self._open)
            self._open.clear()
        for s in victims:
            _abort(s)

    def stall_subscribers(self, stalled: bool = True) -> None:
        """Redis only: while stalled, nothing the server sends to a connection that has sent a
        SUBSCRIBE or PSUBSCRIBE is passed on (it stays open and silent: a deaf subscriber);
        every other connection flows. Unstalled, what was held flows again."""
        if stalled:
            self._stalled.set()
        else:
            self._stalled.clear()

    def close(self) -> None:
        self._stopped.set()
        self.cut()
        self._listener.close()
        self._accept_thread.join(timeout=5)
        for t in self._threads:
            t.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                refusing = time.monotonic() < self._refuse_until
            if refusing:
                _abort(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _abort(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            for a, b, up in ((client, upstream, upstream), (upstream, client, upstream)):
                t = threading.Thread(target=self._pipe, args=(a, b, up), daemon=True)
                t.start()
                self._threads.append(t)

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: socket.socket) -> None:
        try:
            src.settimeout(None)
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if dst is upstream and b"SUBSCRIBE" in data.upper():
                    with self._lock:
                        self._subscribers.add(upstream)
                while (src is upstream and self._stalled.is_set() and upstream in self._subscribers
                       and not self._stopped.is_set()):
                    time.sleep(0.02)  # held, not dropped: bounded by the test's unstall
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._open.discard(src)
            self._open.discard(dst)
            self._subscribers.discard(upstream)
        _abort(src)
        _abort(dst)


def _abort(s: socket.socket) -> None:
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
