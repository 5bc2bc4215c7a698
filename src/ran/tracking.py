"""Experiment tracking: each run's settings, loss curve, scores and artifact, logged where runs can be compared.

Off unless asked (``--track tensorboard``). Every run the runner finishes is written as one TensorBoard run
under ``<directory>/<experiment>/<run>``: the training loss per step (and the stateless ablation's), every
score of every condition (carried, wiped, untrained, stateless) as a scalar, scores by delay as a curve whose
step is the delay (so two runs' retention curves sit on one chart), the settings as hyperparameters (the
HPARAMS tab compares runs by them) and the artifact's path as text. Open it with
``tensorboard --logdir runs/tensorboard``.

TensorBoard rather than MLflow: its files are local and plain, it needs no server, database or account to
write or read them, and PyTorch ships its writer (``torch.utils.tensorboard``), so tracking adds one small
package (the ``track`` extra).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ran.errors import ConfigError

TRACKERS = ("tensorboard",)
DEFAULT_DIRECTORY = "runs/tensorboard"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class TrackConfig:
    """Where runs are logged: ``<directory>/<experiment>/<run name>``."""

    kind: str = "tensorboard"
    directory: str = DEFAULT_DIRECTORY
    experiment: str = "runs"  # one folder per command's results name, e.g. retention

    def __post_init__(self) -> None:
        if self.kind not in TRACKERS:
            raise ConfigError(f"unknown tracker '{self.kind}': choose one of {', '.join(TRACKERS)}")
        if not _NAME.match(self.experiment):
            raise ConfigError(f"experiment name {self.experiment!r} must be 1-64 letters, digits, '.', '_' or '-'")


def run_name(record: dict[str, Any], label: str = "") -> str:
    """A run's folder: when it finished, what it trained, its seed (and ``label``, e.g. a grid arm)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parts = [stamp, str(record.get("task", "run")), f"seed{record.get('seed', 0)}", label]
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", "-".join(p for p in parts if p))


def log_run(track: TrackConfig, record: dict[str, Any], label: str = "", artifact: Path | None = None) -> Path:
    """Write one runner record (``ran.runner.run_one``) as a TensorBoard run; returns its folder."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--track tensorboard needs the tensorboard package: pip install 'ran[track]'") from None
    folder = Path(track.directory) / track.experiment / run_name(record, label)
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for curve, tag in (("loss_curve", "loss/train"), ("stateless_loss_curve", "loss/stateless")):
            for step, loss in enumerate(record.get(curve) or []):
                writer.add_scalar(tag, loss, step)
        headline = {}
        for condition, score in (record.get("scores") or {}).items():
            for tag, value, step in score_scalars(score):
                writer.add_scalar(f"{condition}/{tag}", value, step)
            if isinstance(score.get("value"), (int, float)):
                headline[f"score/{condition}"] = float(score["value"])
        for measure in ("harm",):  # measurements beside the task's scores (ran.harm's no-harm check)
            for tag, value, step in score_scalars(record.get(measure) or {}):
                writer.add_scalar(f"{measure}/{tag}", value, step)
        if artifact is not None:
            writer.add_text("artifact", str(artifact))
        writer.add_hparams(settings(record), headline, run_name=".")
    finally:
        writer.close()
    return folder


def score_scalars(score: dict[str, Any], prefix: str = "") -> list[tuple[str, float, int]]:
    """(tag, value, step) for every number in a task's score: plain numbers at step 0; ``groups`` rows by their
    labels, with the delay as the step where a row has one; a task mix's ``tasks`` each under its name."""
    found: list[tuple[str, float, int]] = []
    for key, value in score.items():
        if key == "predictions":
            continue
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, (int, float)):
            found.append((f"{prefix}{key}", float(value), 0))
        elif key == "tasks" and isinstance(value, dict):
            for name, task_score in value.items():
                if isinstance(task_score, dict):
                    found += score_scalars(task_score, f"{prefix}{name}/")
        elif key == "groups" and isinstance(value, list):
            for row in value:
                if isinstance(row, dict):
                    found += _group_scalars(row, prefix)
        elif isinstance(value, dict):
            found += score_scalars(value, f"{prefix}{key}/")
    return found


def _group_scalars(row: dict[str, Any], prefix: str) -> list[tuple[str, float, int]]:
    """A group's measurements, tagged by its labels (its strings and integers, as ``ran.tasks.base.group_key``
    names a group, e.g. ``split=heldout/due=3``), with the delay as the step where the row has one."""
    def is_label(key: str, value: Any) -> bool:
        return key not in ("delay", "n") and (isinstance(value, str) or (isinstance(value, int)
                                                                       and not isinstance(value, bool)))

    labels = "/".join(f"{k}={v}" for k, v in row.items() if is_label(k, v))
    step = row.get("delay", 0)
    step = step if isinstance(step, int) and not isinstance(step, bool) else 0
    where = f"{labels}/" if labels else ""
    by = "by_delay/" if "delay" in row else ""
    return [(f"{prefix}{by}{where}{k}", float(v), step) for k, v in row.items()
            if isinstance(v, float) and not is_label(k, v) and k not in ("delay", "n")]


def settings(record: dict[str, Any]) -> dict[str, Any]:
    """The run's settings flattened for TensorBoard's hyperparameters: numbers, strings and booleans only."""
    flat: dict[str, Any] = {}

    def walk(value: Any, name: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{name}.{key}" if name else key)
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        elif value is None:
            flat[name] = "none"
        elif isinstance(value, (list, tuple)) and len(value) <= 16:
            flat[name] = ",".join(str(v) for v in value)

    walk({"ran": record.get("ran_config") or {}, "train": record.get("train_config") or {},
          "task": record.get("task", ""), "seed": record.get("seed", 0)}, "")
    return flat
