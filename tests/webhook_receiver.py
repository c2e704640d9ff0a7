"""A real HTTP server on 127.0.0.1 that records what webhooks send it and answers as planned."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Records every request; answers with ``plan`` codes in order, then ``then`` (default 200)."""

    def __init__(self, plan: list[int] | None = None, then: int = 200) -> None:
        self.plan = list(plan or [])
        self.then = then
        self.requests: list[Received] = []
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._changed:
                    code = receiver.plan.pop(0) if receiver.plan else receiver.then
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                    receiver._changed.notify_all()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("X-Receiver", "test")
                self.end_headers()
                self.wfile.write(f"answered {code}".encode())

            def log_message(self, *_: object) -> None:
                pass

        return Handler

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Block until ``count`` requests arrived; fail the test with what did arrive otherwise."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self.requests) >= count, timeout)
            if not arrived:
                raise AssertionError(f"expected {count} webhook requests within {timeout} s, got {len(self.requests)}")
            return list(self.requests)

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def receiving(plan: list[int] | None = None, then: int = 200) -> Iterator[Receiver]:
    receiver = Receiver(plan, then)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
