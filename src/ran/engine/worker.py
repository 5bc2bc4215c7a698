"""One run of the engine: a plain function of its member dict that returns its results record (and one
group of runs that share a shape, trained in one batch: :func:`run_group`).

The same function runs in-process and as a Ray task, so a record does not depend on the backend:
a run uses a fixed number of CPU threads (the order of floating-point sums in a matmul depends on
it), and the loaded base model is shared by the runs of one process (wrapping and unwrapping leave it
as it was; LoRA runs load their own, see ``ran.runner.run_one``).
"""

from __future__ import annotations

import platform
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ran.engine.members import member_key, spec_of
from ran.engine.store import RECORD_SCHEMA
from ran.harm import task_harm
from ran.loading import load_model
from ran.provenance import source
from ran.runner import run_one, run_together
from ran.switches import switch_rates
from ran.tasks.memory import MemoryTask

# Fields of a runner record that measure the machine, not the model: kept apart, under "timing".
TIMING_FIELDS = ("train_seconds", "episodes_per_second", "passes_per_second")

_loaded: dict[tuple[str, str, str], tuple[Any, Any]] = {}  # the last base model this process loaded


def run_member(member: dict[str, Any], threads: int | None = 1, save_to: str | Path | None = None,
               progress: bool = False) -> dict[str, Any]:
    """Train and evaluate one member with ``threads`` CPU threads (None: torch's current number); returns its
    record. ``save_to`` also saves the trained artifact there (``ran.runner.save_artifact``)."""
    started = time.perf_counter()
    with torch_threads(threads) as threads:
        spec = spec_of(member)
        base, tokenizer = shared_base_model(spec.model, spec.device, spec.dtype)
        result = run_one(spec, base, tokenizer, progress=progress, save_to=None if save_to is None else Path(save_to),
                         stateless=bool(member.get("stateless")), after=_after(member, spec))
    return _record(member, result, {"seconds": round(time.perf_counter() - started, 3), "threads": threads})


def run_group(members: list[dict[str, Any]], threads: int | None = 1, saves: list[str | Path | None] | None = None,
              progress: bool = False) -> list[dict[str, Any]]:
    """Train ``members`` (one shape: :func:`ran.batched.batch_shape`) in one batch and evaluate each as
    :func:`run_member` does; returns their records, each equal to its solo record up to float rounding. Its
    timing holds the whole group's seconds and ``batch``, the number of runs trained together."""
    saves = saves or [None] * len(members)
    if len(members) == 1:
        return [run_member(members[0], threads, save_to=saves[0], progress=progress)]
    started = time.perf_counter()
    with torch_threads(threads) as threads:
        specs = [spec_of(member) for member in members]
        base, tokenizer = shared_base_model(specs[0].model, specs[0].device, specs[0].dtype)
        results = run_together(specs, base, tokenizer, progress=progress,
                               saves=[None if path is None else Path(path) for path in saves],
                               stateless=[bool(member.get("stateless")) for member in members],
                               afters=[_after(member, spec) for member, spec in zip(members, specs, strict=True)])
    timing = {"seconds": round(time.perf_counter() - started, 3), "threads": threads, "batch": len(members)}
    return [_record(member, result, timing) for member, result in zip(members, results, strict=True)]


@contextmanager
def torch_threads(threads: int | None):
    """torch's CPU threads set to ``threads`` (None: as they are) for the block, then restored; yields the number."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        yield threads or previous
    finally:
        torch.set_num_threads(previous)


def _after(member: dict[str, Any], spec) -> Any:
    """The member's measures after training, if it asks for them: the no-harm check (``ran.harm.task_harm``)
    and, for a memory artifact, where its switches open (``ran.switches``)."""
    if not member.get("harm"):
        return None
    if isinstance(spec.task, MemoryTask):
        return lambda model, renderer: {**task_harm(model, renderer, spec.task),
                                        **switch_rates(model, renderer, spec.task)}
    return lambda model, renderer: task_harm(model, renderer, spec.task)


def _record(member: dict[str, Any], result: dict[str, Any], timing: dict[str, Any]) -> dict[str, Any]:
    """The engine's record of a finished run: its result, with what measures the machine under ``timing``."""
    timing = {**{name: result.pop(name) for name in TIMING_FIELDS if name in result}, **timing,
              "host": platform.node()}
    return {"schema": RECORD_SCHEMA, "key": member_key(member), "member": member, "result": result, "timing": timing,
            "git": source()}  # the code this worker ran


def runner_record(record: dict[str, Any]) -> dict[str, Any]:
    """An engine record as the runner returned it (``ran.runner.run_one``): its result with the timing back, and
    ``git``, the code that ran it (a rerun that reuses a record of older code keeps that code's commit)."""
    timing = {name: record["timing"][name] for name in TIMING_FIELDS if name in record["timing"]}
    return {**record["result"], **timing, "git": record["git"],
            **({"tracked": record["tracked"]} if "tracked" in record else {})}


def shared_base_model(model: str, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
    """(base model, tokenizer), loaded once per process: the runs of a process share it."""
    where = (model, device, dtype)
    if where not in _loaded:
        _loaded.clear()  # one model per process: a worker that changes model frees the last one
        _loaded[where] = load_model(model, device=device, dtype=dtype)
    return _loaded[where]
