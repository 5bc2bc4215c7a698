"""Checks that what ran reads back is what it wrote: checksums, finite numbers, and the artifact manifest.

An artifact's ``ran_config.json`` records the SHA-256 of every weight file beside it (``files``) and a
``checksum`` over its own content; loading verifies both, so a flipped byte in a readout or an edited
config is refused in one line instead of silently changing what the model does. Weights and states
holding NaN or infinite values are refused on load and never written. Artifacts written before these
records existed still load, with one warning per artifact saying how to re-save them.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from ran.errors import ArtifactError, RanWarning
from ran.fileio import sha256_file

FILES_KEY = "files"  # file name -> SHA-256 of its bytes
CHECKSUM_KEY = "checksum"  # SHA-256 over the description's canonical JSON without this key
RESAVE_HINT = "re-save it (ran crosspass ... --save DIR --overwrite, or model.save_pretrained) to add checksums"
_warned: set[str] = set()


def check_finite(tensors: dict[str, torch.Tensor], what: str) -> None:
    """Refuse tensors holding NaN or infinite values (one line naming the tensor)."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ArtifactError(f"{what} holds {bad} NaN or infinite value{'s' if bad > 1 else ''} in '{name}': "
                                "refused (a diverged training run or a corrupt file)")


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_weights(path: Path, what: str, sha256: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file, checked against its recorded SHA-256 and for finite values.

    Never unpickles anything: safetensors holds raw tensors and a JSON header only."""
    if not path.is_file():
        raise ArtifactError(f"{what} not found: {path}")
    if sha256 is not None and sha256_file(path) != sha256:
        raise ArtifactError(f"{what} {path} does not match the SHA-256 recorded when it was saved: the file was "
                            "changed or corrupted; restore it or re-save the artifact")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ArtifactError(f"{what} {path} is corrupt or not a safetensors file ({reason})") from None
    check_finite(tensors, f"{what} {path}")
    return tensors, metadata


def description_checksum(description: dict[str, Any]) -> str:
    body = {key: value for key, value in description.items() if key != CHECKSUM_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(description: dict[str, Any]) -> dict[str, Any]:
    """The description with its checksum added (the last key)."""
    return {**{k: v for k, v in description.items() if k != CHECKSUM_KEY},
            CHECKSUM_KEY: description_checksum(description)}


def verify_description(description: dict[str, Any], path: Path) -> None:
    """Refuse an edited description; warn once about one written before checksums existed."""
    recorded = description.get(CHECKSUM_KEY)
    if recorded is None:
        warn_once(str(path.parent), f"artifact {path.parent} was saved without checksums (before ran recorded "
                                    f"them), so tampering cannot be detected: {RESAVE_HINT}")
        return
    if recorded != description_checksum(description):
        raise ArtifactError(f"{path} was edited after it was saved (its checksum does not match its content): "
                            "restore the file, or re-save the artifact")


def recorded_sha256(description: dict[str, Any], name: str, directory: Path) -> str | None:
    """The SHA-256 the description records for ``name``; None for artifacts that predate the records. A file
    the artifact needs but does not list is refused (it was added after saving)."""
    files = description.get(FILES_KEY)
    if files is None:
        return None
    if not isinstance(files, dict) or name not in files:
        raise ArtifactError(f"{directory / name} is not listed in {directory}/ran_config.json: it was not saved "
                            "with this artifact; restore the artifact or re-save it")
    return files[name]


def warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RanWarning, stacklevel=3)
