"""A stand-in for the Hugging Face Hub on 127.0.0.1 that refuses every token (HTTP 401, the Hub's JSON error),
for testing `--push-to-hub` up to the point where the network is needed."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


class RefusingHub(BaseHTTPRequestHandler):
    """Answers every call as the Hub does for a bad token; `seen` records (method, path, authorization)."""

    seen: list = []

    def _refuse(self):
        type(self).seen.append((self.command, self.path, self.headers.get("authorization")))
        body = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _refuse

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def refusing_hub() -> Iterator[str]:
    """Serve `RefusingHub` on a free port; yields its base URL."""
    RefusingHub.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusingHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
