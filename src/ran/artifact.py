"""Artifact files: what :meth:`ran.model.ReservoirModel.save_pretrained` writes and ``from_pretrained`` reads.

An artifact is a directory, laid out as PEFT lays out an adapter:

- ``ran_config.json``: format and version, the ran version, the RAN config, the reservoir's fingerprint,
  the base model's identity (:func:`base_model_identity`), the pass format the readout was trained on,
  the SHA-256 of every weight file (``files``) and a checksum of itself (see :mod:`ran.integrity`);
- ``readout.safetensors``: the injector's weights, and the trained read's where the config has one;
- ``adapter_model.safetensors``: the LoRA weights, where the config has a rank;
- ``recurrence.safetensors``: a trained recurrence's weights (gru); the fixed reservoir has none, it is
  regenerated from its seed and checked against the fingerprint;
- ``gate.safetensors``: the gate head, where the config has one: tensors ``weight`` (K,) and ``bias`` ()
  in float32, metadata ``format`` = ``ran-gate``, ``threshold`` and ``reservoir_fingerprint``.

The model hands over its tensors by part (readout, adapter, recurrence, gate head) and decides what they
are; this module decides the files they go to, how they are stored and how they are checked. It knows
neither the model class nor the runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import save_file
from transformers import PreTrainedModel

from ran import __version__
from ran.architectures import geometry_of
from ran.errors import ArtifactError, ConfigError
from ran.fileio import atomic_write, sha256_file
from ran.integrity import FILES_KEY, check_finite, read_weights, recorded_sha256, seal, verify_description
from ran.passes import PassFormat

ARTIFACT_FORMAT = "ran-artifact"
ARTIFACT_VERSION = 1
CONFIG_FILE = "ran_config.json"
READOUT_FILE = "readout.safetensors"
ADAPTER_FILE = "adapter_model.safetensors"
RECURRENCE_FILE = "recurrence.safetensors"  # a trained recurrence's weights (gru); none for the fixed reservoir
GATE_FILE = "gate.safetensors"
GATE_FORMAT = "ran-gate"
# part -> (its file, what it is called in errors)
PARTS = {"readout": (READOUT_FILE, "readout file"), "adapter": (ADAPTER_FILE, "LoRA adapter file"),
         "recurrence": (RECURRENCE_FILE, "recurrence file")}
# The parts of a base model's identity that must match (its name or path may differ between machines).
BASE_IDENTITY_KEYS = ("model_type", "n_layers", "hidden_size", "vocab_size", "embedding_sha256")


class GateHead(NamedTuple):
    """The gate head as stored: p(speak) = sigmoid(weight . r + bias) on the state r after a pass, or, with a
    hidden layer, sigmoid(weight . relu(hidden_weight r + hidden_bias) + bias)."""

    weight: torch.Tensor  # (K,) float32, or (H,) with a hidden layer
    bias: float
    threshold: float  # speak when p >= threshold
    hidden_weight: torch.Tensor | None = None  # (H, K)
    hidden_bias: torch.Tensor | None = None  # (H,)

    @property
    def hidden_units(self) -> int:
        return 0 if self.hidden_weight is None else int(self.hidden_weight.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        """What ``gate.safetensors`` holds (float32, contiguous, on the CPU)."""
        named = {"weight": self.weight, "bias": torch.tensor(float(self.bias))}
        if self.hidden_weight is not None:
            named |= {"hidden_weight": self.hidden_weight, "hidden_bias": self.hidden_bias}
        return {name: t.detach().to(torch.float32).cpu().contiguous() for name, t in named.items()}

    def logit(self, state: torch.Tensor) -> torch.Tensor:
        """(B,) the logit of speaking from states (B, K)."""
        state = state.detach().float().cpu()
        if self.hidden_weight is not None:
            state = torch.relu(state @ self.hidden_weight.float().T + self.hidden_bias.float())
        return state @ self.weight.float() + self.bias


def base_model_identity(base: PreTrainedModel) -> dict[str, Any]:
    """What ties an artifact (or a state) to its base model: sizes plus a hash of the input embedding matrix."""
    geometry = geometry_of(base)
    embedding = base.get_input_embeddings().weight.detach().to(torch.float32).cpu().contiguous()
    return {
        "name_or_path": str(getattr(base.config, "_name_or_path", "") or ""),
        "model_type": geometry.model_type,
        "n_layers": geometry.n_layers,
        "hidden_size": geometry.hidden_size,
        "vocab_size": int(embedding.shape[0]),
        "embedding_sha256": hashlib.sha256(embedding.numpy().tobytes()).hexdigest(),
    }


def base_model_differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """The identity keys in which two base models differ (none: the same base model)."""
    return [key for key in BASE_IDENTITY_KEYS if expected.get(key) != actual.get(key)]


def save_artifact(directory: str | os.PathLike, config: dict[str, Any], reservoir_fingerprint: str,
                  base_model: dict[str, Any], pass_format: PassFormat, parts: dict[str, dict[str, torch.Tensor]],
                  gate: GateHead | None = None) -> Path:
    """Write an artifact: the file of each of ``parts`` (part name in :data:`PARTS` -> tensors), the gate head,
    and ran_config.json last, recording the SHA-256 of each. Weights holding NaN or infinite values are refused
    before anything is written; weight files of an earlier artifact in the directory that this one does not
    have are removed."""
    directory = Path(directory)
    weights = {PARTS[part][0]: {key: t.detach().cpu().contiguous() for key, t in tensors.items()}
               for part, tensors in parts.items()}
    gate_tensors = None if gate is None else gate.tensors()
    for name, tensors in weights.items():
        check_finite(tensors, f"the weights for {name}")
    if gate_tensors is not None:
        check_finite(gate_tensors, "the gate head")
    for name, tensors in weights.items():
        atomic_write(directory / name, lambda temporary, tensors=tensors: save_file(tensors, temporary))
    if gate is not None:
        save_gate_head(directory, gate, reservoir_fingerprint)
    written = [*weights, *([GATE_FILE] if gate is not None else [])]
    for stale in (*(file for file, _ in PARTS.values()), GATE_FILE):
        if stale not in written:
            (directory / stale).unlink(missing_ok=True)
    description = {
        "format": ARTIFACT_FORMAT,
        "version": ARTIFACT_VERSION,
        "ran_version": __version__,
        "config": config,
        "reservoir_fingerprint": reservoir_fingerprint,
        "base_model": base_model,
        "pass_format": pass_format.to_dict(),
        FILES_KEY: {name: sha256_file(directory / name) for name in written},
    }
    atomic_write(directory / CONFIG_FILE, json.dumps(seal(description), indent=2) + "\n")
    return directory


def read_artifact_description(directory: str | os.PathLike) -> dict[str, Any]:
    """Parse and check an artifact's ran_config.json."""
    path = Path(directory) / CONFIG_FILE
    if not Path(directory).is_dir():
        raise ArtifactError(f"artifact directory not found: {directory}")
    if not path.is_file():
        raise ArtifactError(f"{directory} is not a ran artifact: it has no {CONFIG_FILE}")
    try:
        description = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ArtifactError(f"{path} is corrupt: {error}") from None
    if not isinstance(description, dict) or description.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path} is not a ran artifact description")
    if description.get("version") != ARTIFACT_VERSION:
        raise ArtifactError(
            f"{path} has format version {description.get('version')}; this ran reads {ARTIFACT_VERSION}")
    for key in ("config", "base_model", "reservoir_fingerprint"):
        if key not in description:
            raise ArtifactError(f"{path} is missing '{key}'")
    verify_description(description, path)
    if not isinstance(description["base_model"], dict):
        raise ArtifactError(f"{path}: base_model must be an object")
    return description


def check_base_model(description: dict[str, Any], base: PreTrainedModel, directory: str | os.PathLike) -> None:
    """Refuse to load an artifact on a base model other than the one it was trained on."""
    expected, actual = description["base_model"], base_model_identity(base)
    differences = base_model_differences(expected, actual)
    if differences:
        raise ArtifactError(
            f"artifact {directory} was trained on a different base model "
            f"({expected.get('name_or_path')}, {expected.get('model_type')}); this one "
            f"({actual['name_or_path']}, {actual['model_type']}) differs in {', '.join(differences)}"
        )


def read_artifact_part(directory: str | os.PathLike, description: dict[str, Any], part: str) -> dict[str, torch.Tensor]:
    """The tensors of one part (:data:`PARTS`), checked against the SHA-256 ``description`` records for its file."""
    directory = Path(directory)
    name, what = PARTS[part]
    return read_weights(directory / name, what, recorded_sha256(description, name, directory))[0]


def artifact_pass_format(directory: str | os.PathLike) -> PassFormat:
    """How the artifact's readout was trained to read passes (text for artifacts that predate formats)."""
    description = read_artifact_description(directory)
    try:
        return PassFormat.from_dict(description.get("pass_format"))
    except ConfigError as error:
        raise ArtifactError(f"artifact {directory} has an invalid pass format: {error}") from None


def save_gate_head(directory: str | os.PathLike, gate: GateHead, reservoir_fingerprint: str) -> Path:
    """Write ``gate.safetensors`` in ``directory`` (finite values only), atomically."""
    metadata = {"format": GATE_FORMAT, "threshold": repr(float(gate.threshold)),
                "reservoir_fingerprint": reservoir_fingerprint}
    tensors = gate.tensors()
    check_finite(tensors, "the gate head")
    return atomic_write(Path(directory) / GATE_FILE, lambda temporary: save_file(tensors, temporary, metadata=metadata))


def has_gate_head(directory: str | os.PathLike) -> bool:
    return (Path(directory) / GATE_FILE).is_file()


def load_gate_head(directory: str | os.PathLike, reservoir_fingerprint: str, units: int,
                   description: dict[str, Any] | None = None) -> GateHead:
    """The gate head saved in ``directory``, for a reservoir of this fingerprint and ``units``. Inside an
    artifact the file must match the SHA-256 its ran_config.json records (``description``: that file, already
    read; read here when not given); a gate file on its own is only checked for its content."""
    directory = Path(directory)
    if description is None and (directory / CONFIG_FILE).is_file():
        description = read_artifact_description(directory)
    path = directory / GATE_FILE
    sha256 = None if description is None else recorded_sha256(description, GATE_FILE, directory)
    tensors, metadata = read_weights(path, "gate file", sha256)
    linear, hidden = {"weight", "bias"}, {"weight", "bias", "hidden_weight", "hidden_bias"}
    if metadata.get("format") != GATE_FORMAT or set(tensors) not in (linear, hidden):
        raise ArtifactError(f"{path} is not a ran gate file (needs tensors weight and bias, and hidden_weight and "
                            "hidden_bias for a hidden layer)")
    if metadata.get("reservoir_fingerprint") != reservoir_fingerprint:
        raise ArtifactError(f"gate file {path} belongs to a different reservoir (fingerprint mismatch)")
    width = units
    if "hidden_weight" in tensors:
        width = tensors["hidden_weight"].shape[0] if tensors["hidden_weight"].ndim == 2 else -1
        expected = {"hidden_weight": (width, units), "hidden_bias": (width,)}
        for name, shape in expected.items():
            if width < 1 or tuple(tensors[name].shape) != shape:
                raise ArtifactError(f"gate {name} in {path} has shape {tuple(tensors[name].shape)}, expected "
                                    f"(H, {units}) and (H,) for H hidden units")
    if tuple(tensors["weight"].shape) != (width,):
        raise ArtifactError(f"gate weight in {path} has shape {tuple(tensors['weight'].shape)}, "
                            f"expected ({width},)")
    try:
        threshold = float(metadata.get("threshold", "0.5"))
    except ValueError:
        raise ArtifactError(f"gate file {path}: bad threshold {metadata.get('threshold')!r}") from None
    return GateHead(tensors["weight"], float(tensors["bias"]), threshold, tensors.get("hidden_weight"),
                    tensors.get("hidden_bias"))
