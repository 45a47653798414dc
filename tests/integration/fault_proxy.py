"""A fault-injecting HTTP proxy on loopback, in front of the S3 server.

A share of requests gets a 503 SlowDown or 500 InternalError answer, or a connection
reset, either before the request reaches the server or after it was applied (the
response is lost): the faults a real S3 client must survive.
"""
import http.client
import http.server
import random
import socket
import struct
import threading

from .loopback import LoopbackServer

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
            b'<Message>Please reduce your request rate.</Message></Error>')
INTERNAL = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
            b'<Message>We encountered an internal error. Please try again.</Message></Error>')


class FaultProxy(LoopbackServer):
    def __init__(self, upstream: str, rate: float, seed: int = 1):
        host, port = upstream.replace("http://", "").split(":")
        self.upstream = (host, int(port))
        self.rate = rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "503": 0, "500": 0, "reset-before": 0, "reset-after": 0}
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b""):
                                pass
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reset(self):
                # RST instead of FIN: the client sees "connection reset by peer"
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            def _error(self, status, body):
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self):
                body = self._body()
                fault = proxy._draw()
                if fault == "503":
                    return self._error(503, SLOWDOWN)
                if fault == "500":
                    return self._error(500, INTERNAL)
                if fault == "reset-before":
                    return self._reset()
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("transfer-encoding", "connection")}
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if fault == "reset-after":          # applied upstream, answer lost
                    return self._reset()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _draw(self):
        with self.lock:
            self.counts["requests"] += 1
            if self.rng.random() >= self.rate:
                return None
            fault = self.rng.choice(["503", "500", "reset-before", "reset-after"])
            self.counts[fault] += 1
            return fault
