"""One engine for every experiment: members in, one record per finished run out.

An experiment (``ran crosspass``, ``ran battery``, ``ran remember``, ``ran population``) is a list of members
(:mod:`ran.engine.members`: one run's whole configuration as a JSON dict). :func:`run_members` runs
each member not yet on disk, in this process or on Ray (:mod:`ran.engine.backends`), writes its record
atomically as it finishes (:mod:`ran.engine.store`) and returns the records in the members' order, so
a killed experiment, rerun with the same settings, runs only what is missing (a run that saved its trained model
before it stopped is scored from it, not trained again: ``ran.runner.run_one``). The experiments are
reports over these records, written in one results schema (:mod:`ran.engine.report`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ran.engine.backends import Backend, execute
from ran.engine.members import member_key, member_of, spec_of
from ran.engine.store import RecordStore
from ran.engine.worker import run_member, runner_record
from ran.errors import ConfigError
from ran.runner import saved_run_of
from ran.tracking import TrackConfig, log_run

__all__ = ["Backend", "RecordStore", "batch_groups", "member_key", "member_of", "run_member", "run_members",
           "runner_record", "spec_of"]


def run_members(members: list[dict[str, Any]], directory: str | Path, backend: Backend | None = None,
                threads: int | None = 1, progress: bool = True, log: Callable[[str], None] = print,
                track: TrackConfig | None = None, label_of: Callable[[dict[str, Any]], str] | None = None,
                saves: list[Path | None] | None = None) -> list[dict[str, Any]]:
    """Run every member whose record is not under ``directory`` yet; returns all records, in members' order.

    ``threads`` per run (None: in-process, torch's current number); ``saves[i]``: where member i's trained
    artifact goes (None: not saved). With ``track``, each record is logged (``ran.tracking``) as it arrives,
    by this process, wherever the run ran, named ``label_of(member)`` (default: its key).
    """
    backend = backend or Backend()
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads per run must be an integer >= 1, got {threads!r}")
    keys = [member_key(m) for m in members]
    if len(set(keys)) != len(keys):
        raise ConfigError("two runs of this experiment have the same settings and seeds: each would overwrite the "
                          "other's record")
    backend.check()  # before anything loads: a cluster that does not answer fails in seconds
    store = RecordStore(directory)
    store.remove_temporaries()
    finished = store.keys()
    todo = [i for i, key in enumerate(keys) if key not in finished]
    threads_text = "torch's threads" if threads is None else f"{threads} thread{'s' if threads > 1 else ''}"
    saves = saves or [None] * len(members)
    resumed = [i for i in todo if saved_run_of(spec_of(members[i]), saves[i]) is not None]
    log(f"{len(members)} runs, {len(members) - len(todo)} already finished, {len(todo)} to run "
        f"({backend.describe()}, {threads_text} per run; records in {store.directory})")
    if resumed:
        log(f"{len(resumed)} of them saved their trained model before they stopped ("
            f"{', '.join(str(saves[i]) for i in resumed)}): scored again, not trained again")
    if todo:
        in_process = not backend.uses_ray
        groups = batch_groups(todo, members, backend.batch, alone=set(resumed))
        if backend.batch > 1:
            log(f"trained in {len(groups)} batch{'es' if len(groups) > 1 else ''} of "
                f"{', '.join(str(len(group)) for group in groups)} runs (--batch-runs {backend.batch})")
        with tqdm(total=len(todo), desc="runs", disable=not progress or len(todo) < 2, dynamic_ncols=True) as bar:
            runs = execute([[members[i] for i in group] for group in groups], backend, threads,
                           [[saves[i] for i in group] for group in groups], progress=progress and in_process)
            with closing(runs):  # closing stops Ray at once on an error
                for record in runs:
                    if track is not None:
                        label = label_of(record["member"]) if label_of else record["key"]
                        record["tracked"] = str(log_run(track, runner_record(record), label,
                                                        saves[keys.index(record["key"])]))
                    store.write(record)
                    bar.update()
    return store.read_all(keys)


def batch_groups(todo: list[int], members: list[dict[str, Any]], batch: int,
                 alone: set[int] = frozenset()) -> list[list[int]]:
    """``todo`` (indices into ``members``) split into groups trained in one batch: runs of one model, device,
    dtype, pass format and shape (:func:`ran.batched.batch_shape`), at most ``batch`` per group, in order;
    a run that must train alone, one in ``alone`` (e.g. resumed from its saved model) or any with ``batch`` 1 is
    a group of its own."""
    if batch <= 1:
        return [[i] for i in todo]
    from ran.batched import batch_shape

    open_groups: dict[Any, list[int]] = {}
    groups: list[list[int]] = []
    for i in todo:
        spec = spec_of(members[i])
        shape = None if i in alone else batch_shape(spec.ran, spec.train)
        if shape is None:
            groups.append([i])
            continue
        key = (spec.model, spec.device, spec.dtype, spec.format, shape)
        if key not in open_groups or len(open_groups[key]) == batch:
            open_groups[key] = []
            groups.append(open_groups[key])
        open_groups[key].append(i)
    return groups
