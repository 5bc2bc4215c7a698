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
from pathlib import Path
from typing import Any

import torch

from ran.engine.members import member_key, spec_of
from ran.engine.store import RECORD_SCHEMA
from ran.harm import task_harm
from ran.loading import load_model
from ran.provenance import source
from ran.runner import run_one, run_together

# Fields of a runner record that measure the machine, not the model: kept apart, under "timing".
TIMING_FIELDS = ("train_seconds", "episodes_per_second", "passes_per_second")

_loaded: dict[tuple[str, str, str], tuple[Any, Any]] = {}  # the last base model this process loaded


def run_member(member: dict[str, Any], threads: int | None = 1, save_to: str | Path | None = None,
               progress: bool = False) -> dict[str, Any]:
    """Train and evaluate one member with ``threads`` CPU threads (None: torch's current number); returns its
    record. ``save_to`` also saves the trained artifact there (``ran.runner.save_artifact``)."""
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    threads = threads or previous_threads
    torch.set_num_threads(threads)
    try:
        spec = spec_of(member)
        base, tokenizer = shared_base_model(spec.model, spec.device, spec.dtype)
        after = (lambda model, renderer: task_harm(model, renderer, spec.task)) if member.get("harm") else None
        result = run_one(spec, base, tokenizer, progress=progress, save_to=None if save_to is None else Path(save_to),
                         stateless=bool(member.get("stateless")), after=after)
    finally:
        torch.set_num_threads(previous_threads)
    timing = {name: result.pop(name) for name in TIMING_FIELDS if name in result}
    timing.update({"seconds": round(time.perf_counter() - started, 3), "threads": threads, "host": platform.node()})
    return {"schema": RECORD_SCHEMA, "key": member_key(member), "member": member, "result": result, "timing": timing,
            "git": source()}  # the code this worker ran


def run_group(members: list[dict[str, Any]], threads: int | None = 1, saves: list[str | Path | None] | None = None,
              progress: bool = False) -> list[dict[str, Any]]:
    """Train ``members`` (one shape: :func:`ran.batched.batch_shape`) in one batch and evaluate each as
    :func:`run_member` does; returns their records, each equal to its solo record up to float rounding. Its
    timing holds the whole group's seconds and ``batch``, the number of runs trained together."""
    saves = saves or [None] * len(members)
    if len(members) == 1:
        return [run_member(members[0], threads, save_to=saves[0], progress=progress)]
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    threads = threads or previous_threads
    torch.set_num_threads(threads)
    try:
        specs = [spec_of(member) for member in members]
        base, tokenizer = shared_base_model(specs[0].model, specs[0].device, specs[0].dtype)
        afters = [(lambda model, renderer, task=spec.task: task_harm(model, renderer, task)) if member.get("harm")
                  else None for member, spec in zip(members, specs, strict=True)]
        results = run_together(specs, base, tokenizer, progress=progress,
                               saves=[None if path is None else Path(path) for path in saves],
                               stateless=[bool(member.get("stateless")) for member in members], afters=afters)
    finally:
        torch.set_num_threads(previous_threads)
    seconds = round(time.perf_counter() - started, 3)
    records = []
    for member, result in zip(members, results, strict=True):
        timing = {name: result.pop(name) for name in TIMING_FIELDS if name in result}
        timing.update({"seconds": seconds, "threads": threads, "host": platform.node(), "batch": len(members)})
        records.append({"schema": RECORD_SCHEMA, "key": member_key(member), "member": member, "result": result,
                        "timing": timing, "git": source()})
    return records


def runner_record(record: dict[str, Any]) -> dict[str, Any]:
    """An engine record as the runner returned it (``ran.runner.run_one``): its result with the timing back."""
    timing = {name: record["timing"][name] for name in TIMING_FIELDS if name in record["timing"]}
    return {**record["result"], **timing, **({"tracked": record["tracked"]} if "tracked" in record else {})}


def shared_base_model(model: str, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
    """(base model, tokenizer), loaded once per process: the runs of a process share it."""
    where = (model, device, dtype)
    if where not in _loaded:
        _loaded.clear()  # one model per process: a worker that changes model frees the last one
        _loaded[where] = load_model(model, device=device, dtype=dtype)
    return _loaded[where]
