#!/usr/bin/env python3
"""Talon demo worker: a tiny HTTP service that Talon supervises.

GET  /health  -> 200 "ok", or 503 while the fault file exists (inject a fault with `touch`)
PUT  /sync    -> 200, and records that Talon's post-start sync call arrived
Environment: DEMO_PORT (default 3111), DEMO_DIR (default /tmp/talon-demo).
"""
import http.server
import os
import sys
import time

PORT = int(os.environ.get("DEMO_PORT", "3111"))
DIR = os.environ.get("DEMO_DIR", "/tmp/talon-demo")
FAULT = os.path.join(DIR, "worker-fault")


class Handler(http.server.BaseHTTPRequestHandler):
    def _reply(self, code, body):
        data = (body + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/health"):
            if os.path.exists(FAULT):
                self._reply(503, "fault injected: " + FAULT)
            else:
                self._reply(200, "ok")
        else:
            self._reply(404, "not found")

    def do_PUT(self):
        if self.path.startswith("/sync"):
            with open(os.path.join(DIR, "synced"), "a") as f:
                f.write("%d\n" % time.time())
            self._reply(200, "synced")
        else:
            self._reply(404, "not found")

    def log_message(self, fmt, *args):
        sys.stderr.write("demo-worker: " + (fmt % args) + "\n")


if __name__ == "__main__":
    os.makedirs(DIR, exist_ok=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    sys.stderr.write("demo-worker: listening on 127.0.0.1:%d\n" % PORT)
    server.serve_forever()
