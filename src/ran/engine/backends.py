"""Where an experiment's runs execute: in this process (the default), or as Ray tasks.

``Backend(workers=N)`` starts a private local Ray instance with N CPUs (one run per CPU);
``Backend(ray_address=ADDR)`` joins an existing cluster (``ray start --head --port=6379`` on the head
node, ``ray start --address=HEAD:6379`` on the others). Either way each run is :func:`run_member` as a
remote task, asking for one GPU when the cluster has any. ``batch=N`` trains up to N runs that share a
shape in one batch (:func:`run_group`, :mod:`ran.batched`), one group per task. A cluster address is
probed with a plain TCP connect first, so an address that does not answer fails in seconds with one line
instead of hanging.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ran.engine.worker import run_group
from ran.errors import ConfigError, RanError

PROBE_TIMEOUT_SECONDS = 3.0
RAY_INSTALL_HINT = "pip install 'reservoir-attention[ray]'"
AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"


@dataclass(frozen=True)
class Backend:
    """In-process (``workers=0``, no address), N local Ray workers, or an existing Ray cluster."""

    workers: int = 0
    ray_address: str | None = None
    batch: int = 1  # runs of one shape trained in one batch, at most (1: each alone)

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(f"workers must be an integer >= 0 (0 = in-process), got {self.workers!r}")
        if not isinstance(self.batch, int) or isinstance(self.batch, bool) or self.batch < 1:
            raise ConfigError(f"batch must be an integer >= 1 (1 = each run trains alone), got {self.batch!r}")
        if self.workers and self.ray_address:
            raise ConfigError("give --workers (local Ray workers) or --ray-address (an existing cluster), not both")

    @property
    def uses_ray(self) -> bool:
        return bool(self.workers or self.ray_address)

    def describe(self) -> str:
        if self.ray_address:
            return f"Ray cluster at {self.ray_address}"
        if self.workers:
            return f"{self.workers} local Ray workers"
        return "in-process"

    def check(self) -> None:
        """Fail now, with one line, if the backend cannot start: Ray missing, or a cluster that does not answer."""
        if not self.uses_ray:
            return
        if self.ray_address and self.ray_address != "auto":
            probe_address(self.ray_address)
            authenticate_like_a_local_head(self.ray_address)
        import_ray()


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(f"Ray is not installed: {RAY_INSTALL_HINT}") from None
    return ray


def probe_address(address: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> None:
    """Refuse an address ("HOST:PORT" or "ray://HOST:PORT") on which nothing accepts a TCP connection."""
    host, port = split_address(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise ConfigError(f"no Ray cluster answers at {address} ({reason}): start one with "
                          "`ray start --head --port=6379` and pass --ray-address HOST:6379") from None


def authenticate_like_a_local_head(address: str) -> None:
    """Use Ray's token authentication for a cluster on this machine when this machine has a token.

    Ray >= 2.5x starts a head (``ray start --head``) with token authentication whenever the user's token
    file (~/.ray/auth_token, written by any earlier local ``ray.init``) exists, but a driver given an
    explicit address never enables it and fails to connect after ~20 s. For a loopback address the
    token never leaves the machine, so enable it the way the head did. It must be set before Ray is
    imported (Ray reads it once); RAY_AUTH_MODE set by the user always wins.
    """
    if AUTH_MODE_VARIABLE in os.environ or "ray" in sys.modules or not _has_token():
        return
    host, _ = split_address(address)
    try:
        local = host == "localhost" or ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        local = False
    if local:
        os.environ[AUTH_MODE_VARIABLE] = "token"


def _has_token() -> bool:
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path).is_file()


def split_address(address: str) -> tuple[str, int]:
    text = address.removeprefix("ray://")
    host, colon, port = text.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"Ray address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379) or ray://HOST:PORT")
    return host, int(port)


def execute(groups: list[list[dict[str, Any]]], backend: Backend, threads: int | None = 1,
            saves: list[list[str | None]] | None = None, progress: bool = False) -> Iterator[dict[str, Any]]:
    """Run every group of members (one member, or several trained in one batch: :func:`run_group`); yields
    each record as its group finishes (in completion order on Ray). ``threads`` is per group (None:
    in-process, torch's current number; on Ray, 1); ``saves[g][i]`` is where member i of group g saves its
    artifact (None: not saved); ``progress`` shows an in-process group's training steps."""
    saves = saves or [[None] * len(group) for group in groups]
    if not backend.uses_ray:
        for group, group_saves in zip(groups, saves, strict=True):
            yield from run_group(group, threads, saves=group_saves, progress=progress)
        return
    threads = threads or 1
    with ray_session(backend, threads) as ray:
        largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=0)
        if largest < threads:  # Ray would wait forever for a node that can take one run
            raise ConfigError(f"no Ray node has {threads} CPUs for one run (the largest has {largest:g}): "
                              "lower --threads")
        gpus = ray.cluster_resources().get("GPU", 0)
        remote = ray.remote(run_group).options(num_cpus=threads, num_gpus=1 if gpus else 0)
        pending = [remote.remote(group, threads, group_saves) for group, group_saves in zip(groups, saves, strict=True)]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield from _result(ray, done[0])
        finally:
            for reference in pending:  # an error or an interrupt: stop the runs still queued
                ray.cancel(reference, force=True)


def _result(ray, reference) -> list[dict[str, Any]]:
    """The records of a finished task; a user-facing error inside it comes back as that error."""
    try:
        return ray.get(reference)
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, RanError):
            raise type(cause)(str(cause)) from None
        raise


@contextmanager
def ray_session(backend: Backend, threads: int = 1):
    """Ray, initialised for this backend (local: ``workers`` runs of ``threads`` CPUs each at once), shut
    down on exit (unless the caller had initialised it)."""
    backend.check()
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                               "log_to_driver": False}
    if backend.ray_address:
        options["address"] = backend.ray_address
    else:  # "local": always a new private instance, never a cluster this machine happens to run
        options.update(address="local", num_cpus=backend.workers * threads)
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        hint = ""
        if backend.ray_address and os.environ.get(AUTH_MODE_VARIABLE) != "token" and _has_token():
            hint = f"; if the cluster uses token authentication, set {AUTH_MODE_VARIABLE}=token (and RAY_AUTH_TOKEN)"
        raise ConfigError(f"could not start Ray ({backend.describe()}): {first_line}{hint}") from None
    try:
        yield ray
    finally:
        ray.shutdown()
