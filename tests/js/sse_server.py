"""The skyrelay server that tests/js/sse_browser.test.mjs opens EventSource streams on, from
real Chromium.

It serves the test page (tests/js/sse_page/) on the same origin as /sse/<topic>, and takes
publications on POST /api/publish with the bearer token given as --publish-token. Streams of
topics that start with "private" are refused (HTTP 401) unless their query carries
token=<--stream-token>: EventSource cannot set headers, so a browser's token travels in the URL.

Prints "PORT <n>" once it listens and serves until its standard input closes, so it never
outlives the test process that started it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import parse_qs

import skyrelay

parser = argparse.ArgumentParser()
parser.add_argument("--publish-token", required=True)
parser.add_argument("--stream-token", required=True)
parser.add_argument("--retry", type=float, default=0.5,
                    help="the reconnection delay the streams tell the browser (seconds)")
args = parser.parse_args()

# The pages open streams of many topics by name; which ones clients may open is not what these
# tests are about (tests/python/test_client_topics.py is), so every topic is open.
server = skyrelay.Server("127.0.0.1", 0, static_dir=str(Path(__file__).with_name("sse_page")),
                         publish_token=args.publish_token, sse_retry=args.retry,
                         client_topics="*")


@server.on_connect
def check_token(conn):
    if conn.transport == "sse" and conn.path.startswith("/sse/private"):
        if parse_qs(conn.query).get("token", [None])[0] != args.stream_token:
            raise skyrelay.ConnectionRefused("a valid token is required", status=401)


server.start()
print(f"PORT {server.port}", flush=True)
sys.stdin.read()
server.stop()
