"""A ``ran serve`` server in a thread of the test process, and a reader of its event stream."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx


class Served:
    """``ran serve ARGS`` built by the CLI's own code, running in a thread on a free loopback port."""

    def __init__(self, *argv: str):
        import uvicorn

        from ran.cli import build_parser
        from ran.cli import serve as serve_cli

        args = build_parser().parse_args(["serve", "--port", "0", *argv])
        self.listener = serve_cli.bind(args.host, args.port)
        self.host, app = serve_cli.prepare(args)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                                    timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.listener]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        self.url = serve_cli.url_of(self.listener)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def post(self, path: str, body: dict[str, Any] | None = None, **kwargs) -> httpx.Response:
        return self.client.post(path, json=body if body is not None else {}, **kwargs)

    def stop(self) -> None:
        self.client.close()
        self.host.end_streams()  # open event streams end, so the server can stop
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.host.close()
        self.listener.close()


class Events:
    """The server's event stream, read in a thread; ``wait`` returns the events up to a matching one."""

    def __init__(self, url: str):
        self.queue: queue.Queue = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(60, read=None))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            with self._client.stream("GET", "/api/events") as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.queue.put(json.loads(line[len("data: "):]))
        except httpx.HTTPError:
            pass
        self.queue.put(None)

    def wait(self, match: Callable[[dict[str, Any]], bool], timeout: float = 60) -> list[dict[str, Any]]:
        """The events read since the last wait, through the first one that matches."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no matching event within {timeout} s; got {[e['event'] for e in got]}") \
                    from None
            if event is None:
                raise AssertionError(f"the event stream ended; got {[e['event'] for e in got]}")
            got.append(event)
            self.seen.append(event)
            if match(event):
                return got

    def close(self) -> None:
        self._client.close()


def kind(name: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    """A matcher: an event named ``name`` whose fields equal ``fields``."""
    return lambda event: event["event"] == name and all(event.get(k) == v for k, v in fields.items())
