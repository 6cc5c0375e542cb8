"""trusted_proxies through a real nginx configured as docs/deployment.md shows ("One public port
behind nginx"): clients reach nginx from 127.0.0.2, .3 and .4, nginx reaches skyrelay from
127.0.0.1 (the one trusted address), and skyrelay sees each client's own address."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest
from fromaddr import open_from, ws_open, xff

import skyrelay
from skyrelay.testing import wait_until

TRUSTED = "127.0.0.1"


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream realtime {{ server 127.0.0.1:{upstream}; keepalive 32; }}
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port};
        location ~ ^/(ws|sse|socket\\.io)(/|$) {{
            proxy_pass http://realtime;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout 120s;
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


@pytest.fixture
def nginx(tmp_path):
    """Starts nginx in front of `upstream` (a port); yields nginx's port; stops it by its pid."""
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (make deps installs it)")
    processes = []

    def start(upstream: int) -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        conf = tmp_path / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp_path, upstream=upstream, port=port))
        proc = subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        processes.append(proc)

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        assert wait_until(listening, timeout=10), proc.stderr.read1() if proc.poll() else ""
        return port

    yield start
    for proc in processes:
        proc.terminate()  # SIGTERM to the master: a fast shutdown of it and its worker
        proc.wait(10)
        proc.stderr.close()


def test_through_nginx_as_documented(nginx):
    # limit_loopback makes the clients' loopback addresses count, as public ones would.
    server = skyrelay.Server(port=0, client_topics="*", trusted_proxies=[TRUSTED],
                             max_connections_per_ip=2, limit_loopback=True)
    seen: list[tuple[str, str]] = []
    schemes: list[str] = []

    @server.on_connect
    def record(conn):
        seen.append((conn.transport, conn.remote))
        schemes.append(conn.scheme)

    with server:
        port = nginx(server.port)
        # A client's own X-Forwarded-For goes through nginx with its real address appended.
        # Its own X-Forwarded-Proto is replaced by nginx's scheme (plain HTTP here).
        a, status, _ = ws_open(port, "127.0.0.2",
                               {**xff("203.0.113.77"), "X-Forwarded-Proto": "https"})
        assert status == 101
        assert wait_until(lambda: len(seen) == 1)
        assert seen[0] == ("websocket", "127.0.0.2:0")
        assert schemes == ["http"]
        b, status, _ = ws_open(port, "127.0.0.2")
        assert status == 101
        # The per-IP limit is the client's, through the proxy.
        c, status, raw = ws_open(port, "127.0.0.2")
        assert status == 503 and b"too many connections from this address" in raw
        c.close()
        d, status, _ = ws_open(port, "127.0.0.3")
        assert status == 101
        # An event stream through nginx.
        e = open_from("127.0.0.4", port)
        e.sendall(b"GET /sse/news HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert e.recv(65536).startswith(b"HTTP/1.1 200")
        assert wait_until(lambda: ("sse", "127.0.0.4:0") in seen), seen
        for s in (a, b, d, e):
            s.close()
