"""The web app of ``ran serve``: one page, a JSON API, and a server-sent event stream (Starlette).

Routes:

- ``GET /``: the page; ``GET /static/...``: its files, served only from this package's ``static`` folder
  (Starlette's StaticFiles refuses ``..``, absolute paths and links out of it with 404).
- ``GET /api/events``: server-sent events (``text/event-stream``), one JSON object per event, starting
  with a snapshot of the session; ``GET /api/state``: the same snapshot once.
- ``POST /api/message`` ``{"text": ...}``, ``/api/tick`` ``{"count": N}``, ``/api/reset`` ``{"what":
  "context"|"state"|"all"}``, ``/api/save``, ``/api/session`` ``{"name": ..., "action": "new"|"resume"}``,
  ``/api/stop``: JSON in, JSON out; a refusal is ``{"error": one line}`` with a 4xx status.

A POST must be ``application/json`` (a cross-site form cannot send that without a preflight, which this
app never grants) and, when the browser names its origin, come from this server's own origin; bound to
a loopback address the app also refuses requests for any other host name (DNS rebinding).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ran.errors import ArtifactError, ConfigError, RanError
from ran.web import STATIC
from ran.web.host import Busy, SessionHost, TooLarge

MAX_BODY_BYTES = 64 * 1024  # a request body; a message's own limit (characters) is checked after parsing
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Refused(Exception):
    """A request refused before it reached the session (wrong content type, origin, size, JSON)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def create_app(host: SessionHost, allowed_hosts: Sequence[str] | None = LOOPBACK_NAMES) -> Starlette:
    """The app around ``host``; ``allowed_hosts=None`` accepts any Host header (a non-loopback bind)."""

    @asynccontextmanager
    async def lifespan(app: Starlette):
        import asyncio

        host.attach(asyncio.get_running_loop())
        yield

    async def page(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS | {"Cache-Control": "no-store"})

    async def state(request: Request) -> JSONResponse:
        return JSONResponse(host.snapshot())

    async def events(request: Request) -> EventSourceResponse:
        async def stream():
            async for event in host.subscribe():
                yield {"data": json.dumps(event)}

        return EventSourceResponse(stream(), ping=15, headers={"Cache-Control": "no-store"})

    async def message(request: Request) -> JSONResponse:
        body = await _json_body(request)
        return JSONResponse(await host.prompt(body.get("text")))

    async def tick(request: Request) -> JSONResponse:
        body = await _json_body(request)
        return JSONResponse(await host.tick(body.get("count", 1)))

    async def reset(request: Request) -> JSONResponse:
        body = await _json_body(request)
        return JSONResponse(await host.reset(body.get("what")))

    async def save(request: Request) -> JSONResponse:
        await _json_body(request)
        return JSONResponse(await host.save())

    async def session(request: Request) -> JSONResponse:
        body = await _json_body(request)
        action = body.get("action")
        if action not in ("new", "resume"):
            raise ConfigError(f"unknown session action {action!r}: choose new or resume")
        return JSONResponse(await host.open(body.get("name"), create=action == "new"))

    async def stop(request: Request) -> JSONResponse:
        await _json_body(request)
        return JSONResponse(host.stop())

    routes = [
        Route("/", page),
        Route("/api/state", state),
        Route("/api/events", events),
        Route("/api/message", message, methods=["POST"]),
        Route("/api/tick", tick, methods=["POST"]),
        Route("/api/reset", reset, methods=["POST"]),
        Route("/api/save", save, methods=["POST"]),
        Route("/api/session", session, methods=["POST"]),
        Route("/api/stop", stop, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))] if allowed_hosts else []
    handlers = {Refused: _refused, RanError: _ran_error}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan)


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, after the content-type, origin and size checks."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise Refused(415, f"send JSON (Content-Type: application/json), not {content_type or 'no content type'!r}")
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Refused(403, f"cross-origin request from {origin!r} refused: use the page this server serves")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise Refused(413, f"request body over {MAX_BODY_BYTES} bytes refused; nothing was run")
    try:
        data = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Refused(400, f"the request body is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise Refused(400, f"the request body must be a JSON object, got {type(data).__name__}")
    return data


async def _refused(request: Request, error: Refused) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=error.status)


async def _ran_error(request: Request, error: RanError) -> JSONResponse:
    if isinstance(error, Busy):
        status = 409
    elif isinstance(error, TooLarge):
        status = 413
    elif isinstance(error, ArtifactError):
        status = 409  # the session exists, is in use, or does not fit this model: the request itself was sound
    else:
        status = 400
    return JSONResponse({"error": str(error)}, status_code=status)
