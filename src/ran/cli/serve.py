"""``ran serve``: the always-alive session of ``ran chat`` as a local web page, with its state plotted live.

The page sends messages (replies stream token by token), idle ticks, ``/reset context`` and ``/reset
state``, saves, and creates or resumes named sessions; plots show, per pass, the state norm, how far the
pass moved the state, the gate's value and the context length. The session is the one ``ran chat``
drives: the same pass format, the same crash-safe store (``--sessions-dir``), the same name check, and a
stored session of the given name is resumed (else created). Passes run one at a time on one worker;
several tabs see the same session. Needs the ``serve`` extra (``make setup`` installs it).
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from typing import Any

from ran.cli.sessions import add_session_arguments, open_session
from ran.errors import ConfigError
from ran.runtime import SessionStore

DEFAULT_SESSION = "web"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
EPILOG = "Example: ran serve --artifact runs/artifacts/kv-keys6-scaling0.2-seed0, then open http://127.0.0.1:8000/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_session_arguments(parser, default_session=DEFAULT_SESSION)
    group = parser.add_argument_group("server")
    group.add_argument("--host", default=DEFAULT_HOST,
                       help=f"address to listen on (default: {DEFAULT_HOST}; any non-loopback address is reachable "
                            "from other machines and prints a warning: the page has no login)")
    group.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0: a free one)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound before the model loads so a taken port fails at once."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535, got {port}")
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise ConfigError(f"--host {host!r} is not an address of this machine ({error.strerror})") from None
    listener = socket.socket(family, kind, protocol)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as error:
        listener.close()
        raise ConfigError(f"cannot listen on {host} port {port} ({error.strerror}): choose another --port "
                          "(0 picks a free one)") from None
    listener.listen(64)
    return listener


def url_of(listener: socket.socket) -> str:
    address, port = listener.getsockname()[:2]
    return f"http://{f'[{address}]' if ':' in address else address}:{port}/"


def prepare(args: argparse.Namespace) -> tuple[Any, Any]:
    """(host, app): the named session opened (resumed when stored) and the web app around it."""
    try:
        from ran.web.app import LOOPBACK_NAMES, create_app
        from ran.web.host import SessionHost
    except ImportError as error:
        raise ConfigError(f"ran serve needs the serve extra ({error.name} is missing): "
                          "pip install -e '.[serve]' (make setup installs it)") from None
    args.resume = SessionStore(args.session, args.sessions_dir).exists()
    opened = open_session(args)
    host = SessionHost(opened, args.sessions_dir)
    return host, create_app(host, allowed_hosts=LOOPBACK_NAMES if is_loopback(args.host) else None)


def run(args: argparse.Namespace) -> int:
    listener = bind(args.host, args.port)
    try:
        if not is_loopback(args.host):
            print(f"ran serve: warning: listening on {args.host}, not a loopback address: anyone who can reach "
                  "this machine can drive the session (the page has no login)", file=sys.stderr, flush=True)
        host, app = prepare(args)
    except BaseException:
        listener.close()
        raise
    import uvicorn

    session = host.session
    print(f"session '{session.name}' ({'resumed at tick ' + str(session.tick) if args.resume else 'new'}) in "
          f"{session.store.directory}: {session.settings['model']}, mode={session.model.config.mode} "
          f"units={session.model.reservoir.units}, {session.gate.kind} gate", flush=True)
    print(f"serving {url_of(listener)} (Ctrl-C stops)", flush=True)
    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            host.end_streams()  # open pages' event streams end now, so shutting down waits for no one
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="on")
    try:
        Server(config).run(sockets=[listener])
    except KeyboardInterrupt:  # uvicorn stops on Ctrl-C, then hands the signal on: stopping is the normal end
        pass
    finally:
        host.close()  # a running pass completes and is saved first
        listener.close()
    print(f"stopped; session '{host.session.name}' saved at tick {host.session.tick}", flush=True)
    return 0
