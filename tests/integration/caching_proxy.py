"""A caching HTTP proxy in front of the loopback S3 server: a CDN edge in a few lines.

It forwards GET to the origin and keeps each 200 answer as long as its Cache-Control
max-age says (no-store / no max-age: not kept); a cached answer is served without asking
the origin again, whatever the origin holds meanwhile: exactly the staleness a CDN
introduces. `purge(paths)` is what a CloudFront invalidation does to the edge.
"""
from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CachingProxy:
    def __init__(self, origin: str):
        self.origin = origin.rstrip("/")
        # path -> (fetched at, max-age, status, headers, body)
        self.cache: dict[str, tuple[float, float, int, dict, bytes]] = {}
        self.hits = self.misses = 0
        self.max_ttl: float | None = None       # the edge's cap on max-age (a CDN's MaxTTL)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                status, headers, body = proxy.fetch(self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def fetch(self, path: str) -> tuple[int, dict, bytes]:
        with self._lock:
            cached = self.cache.get(path)
            if cached and self._fresh(cached, time.monotonic()):
                self.hits += 1
                return cached[2:]
            self.misses += 1
        try:
            with urllib.request.urlopen(self.origin + path, timeout=30) as resp:
                status, body = resp.status, resp.read()
                headers = {k.title(): v for k, v in resp.headers.items()
                           if k.lower() in ("content-type", "cache-control", "etag",
                                            "last-modified")}
        except urllib.error.HTTPError as exc:
            return exc.code, {"Content-Type": "text/plain"}, exc.read()
        age = re.search(r"max-age=(\d+)", headers.get("Cache-Control", ""))
        if status == 200 and age and int(age.group(1)) > 0:
            with self._lock:
                self.cache[path] = (time.monotonic(), int(age.group(1)), status, headers, body)
        return status, headers, body

    def _fresh(self, cached, now: float) -> bool:
        return now < cached[0] + min(cached[1], self.max_ttl or float("inf"))

    def purge(self, paths) -> list[str]:
        """Forget these URL paths (a trailing * matches a prefix, as in CloudFront);
        returns those it still held unexpired."""
        now = time.monotonic()
        with self._lock:
            gone = [p for p in self.cache for want in paths
                    if p == want or (want.endswith("*") and p.startswith(want[:-1]))]
            held = [p for p in gone if self._fresh(self.cache[p], now)]
            for p in gone:
                self.cache.pop(p, None)
        return held

    def __enter__(self) -> "CachingProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)
