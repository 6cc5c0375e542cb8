"""The skyrelay server that tests/js/fallback_browser.test.mjs runs skyrelay.js against from
real Chromium: the page (tests/js/fallback_page/) and the built-in /skyrelay.js, the JSON
protocol on /ws and SSE on /sse, all on one port; publications come in on POST /api/publish
with the bearer token given as --publish-token.

Prints "PORT <n>" once it listens and serves until its standard input closes, so it never
outlives the test process that started it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import skyrelay

parser = argparse.ArgumentParser()
parser.add_argument("--publish-token", required=True)
args = parser.parse_args()

# Which topics clients may open is tested elsewhere (tests/python/test_client_topics.py).
server = skyrelay.Server("127.0.0.1", 0, static_dir=str(Path(__file__).with_name("fallback_page")),
                         publish_token=args.publish_token, client_topics="*")
server.start()
print(f"PORT {server.port}", flush=True)
sys.stdin.read()
server.stop()
