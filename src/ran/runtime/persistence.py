"""Session state on disk: one safetensors file per session, replaced atomically after every pass.

A session named NAME lives in ``<root>/NAME/`` (root: ``$RAN_SESSIONS``, else ``sessions/``):

- ``session.safetensors``: tensors ``state`` (1, K) float32, ``context`` (T,) int64 token ids and
  ``scores`` (T,) float32 (accumulated attention per context token, for the h2o policy), plus string
  metadata: ``format``/``version``, ``name``, ``tick``, ``identity`` (JSON: RAN config, reservoir
  fingerprint, readout hash, base-model identity), ``settings`` (JSON: session config, model name),
  ``last`` (JSON: the last pass's record) and ``checksum`` (SHA-256 over the tensors and metadata).
- ``lock``: held (``flock``) by the one process driving the session.

Writes go to a temporary file in the same directory, which is fsynced, renamed over the old file, and
the directory fsynced: a crash at any moment leaves the previous or the new file, never a torn one.
Nothing here unpickles anything.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ran import __version__
from ran.errors import ArtifactError, ConfigError

SESSION_FORMAT = "ran-session"
SESSION_VERSION = 1
STATE_FILE = "session.safetensors"
LOCK_FILE = "lock"
TEMP_MARK = ".tmp-"
DEFAULT_ROOT = "sessions"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# The parts of a base model's identity that must match (its name or path may differ between machines).
BASE_IDENTITY_KEYS = ("model_type", "n_layers", "hidden_size", "vocab_size", "embedding_sha256")


def sessions_root(root: str | os.PathLike | None = None) -> Path:
    """Where sessions live: ``root`` if given, else $RAN_SESSIONS, else ./sessions."""
    return Path(root if root is not None else os.environ.get("RAN_SESSIONS") or DEFAULT_ROOT)


@dataclass
class SessionSnapshot:
    """Everything a session carries between passes."""

    name: str
    tick: int  # completed passes (prompted + idle)
    state: torch.Tensor  # (1, K) float32
    context: list[int]  # token ids kept for the next pass
    scores: list[float]  # accumulated attention per context token (zeros unless h2o)
    identity: dict[str, Any]  # what the state is only valid with: checked on open
    settings: dict[str, Any] = field(default_factory=dict)  # session config, model name, artifact
    last: dict[str, Any] | None = None  # the last pass's record


class SessionStore:
    """The directory of one session: atomic saves, checked loads, and a single-writer lock."""

    def __init__(self, name: str, root: str | os.PathLike | None = None):
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise ConfigError(f"invalid session name {name!r}: use 1-100 letters, digits, '.', '_' or '-', "
                              "starting with a letter or digit")
        self.name = name
        self.root = sessions_root(root)
        self.directory = self.root / name
        self.path = self.directory / STATE_FILE
        self._lock_fd: int | None = None

    def exists(self) -> bool:
        return self.path.is_file()

    def existing_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / STATE_FILE).is_file())

    # ----- locking ---------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the session's lock (released on close or when the process dies); refuse if it is held."""
        if self._lock_fd is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ArtifactError(f"session '{self.name}' is in use by another process ({self.directory})") \
                from None
        self._lock_fd = fd
        for stale in self.directory.glob(f".{STATE_FILE}{TEMP_MARK}*"):  # left by a writer that was killed
            stale.unlink(missing_ok=True)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ----- save / load -------------------------------------------------------------------------------
    def save(self, snapshot: SessionSnapshot) -> None:
        tensors = _tensors_of(snapshot)
        metadata = {
            "format": SESSION_FORMAT,
            "version": str(SESSION_VERSION),
            "ran_version": __version__,
            "name": snapshot.name,
            "tick": str(snapshot.tick),
            "identity": json.dumps(snapshot.identity, sort_keys=True),
            "settings": json.dumps(snapshot.settings, sort_keys=True),
            "last": json.dumps(snapshot.last, sort_keys=True),
        }
        metadata["checksum"] = _checksum(tensors, metadata)
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{STATE_FILE}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            save_file(tensors, str(temporary), metadata=metadata)
            with open(temporary, "rb+") as stream:
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        finally:
            temporary.unlink(missing_ok=True)

    def load(self) -> SessionSnapshot:
        """Read and check the state file; any defect raises :class:`ArtifactError` and leaves it as it is."""
        where = f"session '{self.name}': state file {self.path}"
        if not self.path.is_file():
            names = self.existing_names()
            known = f"existing sessions: {', '.join(names)}" if names else "there are no sessions there yet"
            raise ArtifactError(f"no session '{self.name}' in {self.root}/ ({known})")
        try:
            with safe_open(str(self.path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(self.path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ArtifactError(f"{where} is truncated or corrupt ({reason}); left untouched") from None
        if metadata.get("format") != SESSION_FORMAT:
            raise ArtifactError(f"{where} is not a ran session file; left untouched")
        if metadata.get("version") != str(SESSION_VERSION):
            raise ArtifactError(f"{where} has format version {metadata.get('version')}; this ran reads "
                                f"{SESSION_VERSION}; left untouched")
        expected = metadata.pop("checksum", None)
        if set(tensors) != {"state", "context", "scores"} or expected != _checksum(tensors, metadata):
            raise ArtifactError(f"{where} is corrupt (checksum mismatch); left untouched")
        try:
            snapshot = SessionSnapshot(
                name=metadata["name"], tick=int(metadata["tick"]), state=tensors["state"],
                context=tensors["context"].tolist(), scores=tensors["scores"].tolist(),
                identity=json.loads(metadata["identity"]), settings=json.loads(metadata["settings"]),
                last=json.loads(metadata["last"]),
            )
        except (KeyError, ValueError) as error:
            raise ArtifactError(f"{where} has invalid metadata ({error}); left untouched") from None
        state = snapshot.state
        if state.ndim != 2 or state.shape[0] != 1 or len(snapshot.scores) != len(snapshot.context):
            raise ArtifactError(f"{where} has inconsistent tensors; left untouched")
        return snapshot


def check_identity(name: str, stored: dict[str, Any], actual: dict[str, Any]) -> None:
    """Refuse a session whose state was made with another base model, reservoir, config or readout."""
    base_stored, base_actual = stored.get("base_model", {}), actual["base_model"]
    differences = [key for key in BASE_IDENTITY_KEYS if base_stored.get(key) != base_actual.get(key)]
    if differences:
        raise ArtifactError(
            f"session '{name}' was made with another base model ({base_stored.get('name_or_path')}, "
            f"{base_stored.get('model_type')}); this one ({base_actual.get('name_or_path')}, "
            f"{base_actual.get('model_type')}) differs in {', '.join(differences)}"
        )
    if stored.get("reservoir_fingerprint") != actual["reservoir_fingerprint"]:
        stored_reservoir = stored.get("ran_config", {}).get("reservoir")
        raise ArtifactError(
            f"session '{name}' was made with another reservoir (fingerprint "
            f"{str(stored.get('reservoir_fingerprint'))[:12]}, this one "
            f"{actual['reservoir_fingerprint'][:12]}): its reservoir was {stored_reservoir}"
        )
    if stored.get("ran_config") != actual["ran_config"]:
        raise ArtifactError(f"session '{name}' was made with another RAN config: {stored.get('ran_config')}")
    if stored.get("readout_sha256") != actual["readout_sha256"]:
        raise ArtifactError(f"session '{name}' was made with another readout (a different artifact or none)")


def _tensors_of(snapshot: SessionSnapshot) -> dict[str, torch.Tensor]:
    return {
        "state": snapshot.state.detach().to(torch.float32).cpu().contiguous(),
        "context": torch.tensor(snapshot.context, dtype=torch.int64),
        "scores": torch.tensor(snapshot.scores, dtype=torch.float32),
    }


def _checksum(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key].contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    digest.update(json.dumps(metadata, sort_keys=True).encode())
    return digest.hexdigest()
