"""State on disk: a session's, one safetensors file replaced atomically after every pass; and a wrapped
model's carried state, saved and loaded by hand (:func:`save_state`, :func:`load_state`).

A session named NAME lives in ``<root>/NAME/`` (root: ``$RAN_SESSIONS``, else ``sessions/``):

- ``session.safetensors``: tensors ``state`` (1, K) float32, ``context`` (T,) int64 token ids and
  ``scores`` (T,) float32 (accumulated attention per context token, for the h2o policy), plus string
  metadata: ``format``/``version``, ``name``, ``tick``, ``identity`` (JSON: RAN config, reservoir
  fingerprint, readout hash, base-model identity), ``settings`` (JSON: session config, model name),
  ``last`` (JSON: the last pass's record) and ``checksum`` (SHA-256 over the tensors and metadata).
  The metadata also holds ``session_id``, the random id of the session the file belongs to.
- ``session.json``: written once when the session is made: its name, ``session_id`` and ``identity``.
  A state file is only loaded into the session whose id and identity it carries, so a state file copied
  in from another session (made with another reservoir, base model or readout) is refused.
- ``lock``: held (``flock``) by the one process driving the session.

A *state file* (``save_state``) holds one tensor ``state`` (B, K) float32 and metadata ``format`` =
``ran-state``, ``reservoir_fingerprint``, ``base_model_sha256`` (the base model's embedding hash) and
``sha256`` (over the tensor): it loads only into a model with the same reservoir and base model.

Writes go through :func:`ran.fileio.atomic_write`: a crash at any moment leaves the previous or the new
file, never a torn one. States holding NaN or infinite values are never written and refused on load.
Nothing here unpickles anything.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ran import __version__
from ran.artifact import base_model_differences, base_model_identity
from ran.errors import ArtifactError, ConfigError
from ran.fileio import TEMP_MARK, atomic_write, check_name
from ran.integrity import check_finite, read_weights, tensor_digest
from ran.model import RanConfig, ReservoirModel

SESSION_FORMAT = "ran-session"
SESSION_VERSION = 1
STATE_FILE = "session.safetensors"
MANIFEST_FILE = "session.json"
MANIFEST_FORMAT = "ran-session-manifest"
LOCK_FILE = "lock"
DEFAULT_ROOT = "sessions"
STATE_FORMAT = "ran-state"


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
    session_id: str | None = None  # the session the state belongs to (None: made before session ids)


class SessionStore:
    """The directory of one session: atomic saves, checked loads, and a single-writer lock."""

    def __init__(self, name: str, root: str | os.PathLike | None = None):
        self.name = check_name(name, "session name")
        self.root = sessions_root(root)
        self.directory = self.root / name
        self.path = self.directory / STATE_FILE
        self._lock_fd: int | None = None

    def exists(self) -> bool:
        return self.path.is_file()

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST_FILE

    def write_manifest(self, session_id: str, identity: dict[str, Any]) -> None:
        """Bind the session directory to one session id and identity (once, when the session is made)."""
        manifest = {"format": MANIFEST_FORMAT, "version": SESSION_VERSION, "name": self.name,
                    "session_id": session_id, "identity": identity}
        atomic_write(self.manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")

    def read_manifest(self) -> dict[str, Any] | None:
        """The session's manifest, or None for a session made before manifests existed."""
        if not self.manifest_path.is_file():
            return None
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
            raise ArtifactError(f"session '{self.name}': {self.manifest_path} is corrupt ({error}); left "
                                "untouched") from None
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or \
                not isinstance(manifest.get("session_id"), str) or not isinstance(manifest.get("identity"), dict):
            raise ArtifactError(f"session '{self.name}': {self.manifest_path} is not a ran session manifest; left "
                                "untouched")
        return manifest

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
        for name in (STATE_FILE, MANIFEST_FILE):
            for stale in self.directory.glob(f".{name}{TEMP_MARK}*"):  # left by a writer that was killed
                stale.unlink(missing_ok=True)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ----- save / load -------------------------------------------------------------------------------
    def save(self, snapshot: SessionSnapshot) -> None:
        tensors = _tensors_of(snapshot)
        check_finite({"state": tensors["state"]}, f"session '{self.name}': the state after tick {snapshot.tick}")
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
        if snapshot.session_id is not None:
            metadata["session_id"] = snapshot.session_id
        metadata["checksum"] = _checksum(tensors, metadata)
        atomic_write(self.path, lambda temporary: save_file(tensors, temporary, metadata=metadata))

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
                last=json.loads(metadata["last"]), session_id=metadata.get("session_id"),
            )
        except (KeyError, ValueError) as error:
            raise ArtifactError(f"{where} has invalid metadata ({error}); left untouched") from None
        if not isinstance(snapshot.identity, dict) or not isinstance(snapshot.settings, dict):
            raise ArtifactError(f"{where} has invalid metadata (identity and settings must be objects); left "
                                "untouched")
        state = snapshot.state
        if state.ndim != 2 or state.shape[0] != 1 or len(snapshot.scores) != len(snapshot.context):
            raise ArtifactError(f"{where} has inconsistent tensors; left untouched")
        try:
            check_finite({"state": state}, where)
        except ArtifactError as error:
            raise ArtifactError(f"{error}; left untouched") from None
        self._check_binding(snapshot, where)
        return snapshot

    def _check_binding(self, snapshot: SessionSnapshot, where: str) -> None:
        """The state file must belong to this session: its id and identity are the manifest's."""
        manifest = self.read_manifest()
        if manifest is None:  # made before manifests: its own name is all there is to check
            if snapshot.name != self.name:
                raise ArtifactError(f"{where} belongs to session '{snapshot.name}' (it was copied or swapped in); "
                                    "left untouched: restore this session's own state file")
            return
        if snapshot.session_id != manifest["session_id"] or snapshot.identity != manifest["identity"]:
            made = _describe_identity(snapshot.identity)
            expected = _describe_identity(manifest["identity"])
            raise ArtifactError(f"{where} belongs to another session (made with {made}; this session was made "
                                f"with {expected}): it was copied or swapped in; left untouched")


def check_identity(name: str, stored: dict[str, Any], actual: dict[str, Any]) -> None:
    """Refuse a session whose state was made with another base model, reservoir, config or readout."""
    base_stored, base_actual = stored.get("base_model", {}), actual["base_model"]
    differences = base_model_differences(base_stored, base_actual)
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
    if not _same_ran_config(stored.get("ran_config"), actual["ran_config"]):
        raise ArtifactError(f"session '{name}' was made with another RAN config: {stored.get('ran_config')}")
    if stored.get("readout_sha256") != actual["readout_sha256"]:
        raise ArtifactError(f"session '{name}' was made with another readout (a different artifact or none)")


def _same_ran_config(stored: Any, actual: dict[str, Any]) -> bool:
    """Whether a stored RAN config is ``actual``: a config saved before a field existed reads as that field's
    default (the behaviour it was made with), so a session outlives a release that adds one."""
    if stored == actual:
        return True
    try:
        return RanConfig.from_dict(stored, "stored RAN config").to_dict() == actual
    except ConfigError:
        return False


def _describe_identity(identity: dict[str, Any]) -> str:
    base = identity.get("base_model", {}) if isinstance(identity.get("base_model"), dict) else {}
    return (f"reservoir {str(identity.get('reservoir_fingerprint'))[:12]}, base model "
            f"{base.get('name_or_path') or base.get('model_type')} ({str(base.get('embedding_sha256'))[:12]}), "
            f"readout {str(identity.get('readout_sha256'))[:12]}")


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


def save_state(model: ReservoirModel, path: str | os.PathLike) -> Path:
    """Write ``model``'s carried state to a state file, atomically."""
    if model.state is None:
        raise ConfigError("there is no state to save: run a pass first (reset_state() leaves none)")
    tensors = {"state": model.state.detach().cpu().contiguous()}
    check_finite(tensors, "the carried state")
    metadata = {"format": STATE_FORMAT, "reservoir_fingerprint": model.reservoir.fingerprint,
                "base_model_sha256": base_model_identity(model.base)["embedding_sha256"],
                "sha256": tensor_digest(tensors)}
    return atomic_write(path, lambda temporary: save_file(tensors, temporary, metadata=metadata))


def load_state(model: ReservoirModel, path: str | os.PathLike) -> torch.Tensor:
    """Read a state file written by :func:`save_state` for ``model``'s reservoir and base model; it becomes the
    model's carried state. A changed byte, NaN values or another reservoir or base model are refused, and leave
    the carried state as it was."""
    tensors, metadata = read_weights(Path(path), "state file")
    if metadata.get("format") != STATE_FORMAT or set(tensors) != {"state"}:
        raise ArtifactError(f"{path} is not a ran state file")
    if "sha256" in metadata and metadata["sha256"] != tensor_digest(tensors):
        raise ArtifactError(f"state file {path} was changed after it was saved (checksum mismatch)")
    if metadata.get("reservoir_fingerprint") != model.reservoir.fingerprint:
        raise ArtifactError(f"state file {path} was written by a different reservoir (fingerprint mismatch)")
    base_model = base_model_identity(model.base)["embedding_sha256"]
    if metadata.get("base_model_sha256", base_model) != base_model:
        raise ArtifactError(f"state file {path} was written with a different base model")
    model.set_state(tensors["state"])
    return model.state
