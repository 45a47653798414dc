"""A test HTTP server on loopback, served from a daemon thread inside a `with` block."""
import threading


class LoopbackServer:
    """Subclasses create `self.server` (an http.server.HTTPServer bound to 127.0.0.1)."""
    server = None

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
