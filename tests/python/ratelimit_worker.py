"""A worker process for test_redis_state.py: ``python ratelimit_worker.py REDIS_URL KEY N``
makes ``RateLimiter(rate=0.001, burst=5, redis=REDIS_URL)``, waits for a line on stdin (so
that both workers start together), calls ``acquire(KEY)`` N times and prints how many were
allowed and the limiter's fallbacks, as JSON."""

from __future__ import annotations

import json
import sys

from skyrelay import RateLimiter


def main() -> None:
    url, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    limiter = RateLimiter(rate=0.001, burst=5, redis=url)
    print("ready", flush=True)
    sys.stdin.readline()
    allowed = sum(1 for _ in range(n) if limiter.acquire(key))
    print(json.dumps({"allowed": allowed, "fallbacks": limiter.stats()["redis_fallbacks"]}),
          flush=True)


if __name__ == "__main__":
    main()
