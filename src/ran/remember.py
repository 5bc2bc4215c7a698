"""The one-memory recipe: one artifact that keeps any value a user states, across many turns, and replies cleanly.

A run trains the readout (and the gated read, and LoRA where asked) on the memory task
(``ran.tasks.memory``): values of up to five kinds with held-out splits, many phrasings, intervening passes
of every kind a session has, the chat format, and a stop token at the end of every answer; a fraction
(``harm_fraction``, none by default) of the episodes end in an ordinary turn whose target is the base model's
own reply. It then scores the same
trained parameters with the state carried and wiped, per (kind, value split, phrasing split, delay), and
runs the standard no-harm check (``ran.harm``).

:data:`RECIPE` holds the defaults chosen by the design study (README, "One memory"). Results in the shared
schema (``ran.engine.report``, experiment ``memory``); files of ``ran.memory/1`` stay readable.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ran.engine import Backend, member_of, run_members, runner_record
from ran.engine.report import results_document
from ran.engine.worker import shared_base_model
from ran.harm import with_base_replies
from ran.model import RanConfig
from ran.passes import PassFormat, Renderer
from ran.provenance import environment
from ran.reservoir import ReservoirConfig
from ran.runner import RunSpec
from ran.stats import seed_summary
from ran.switches import recall_by_overwrite
from ran.tasks.memory import KINDS, SLOT, MemoryTask, builtin_values
from ran.tasks.texts import template_words
from ran.tasks.vocab import KeyPool, coined_words, resolve_keys
from ran.tracking import TrackConfig
from ran.training import TrainConfig

RECORDS_SUFFIX = ".records"  # <out>/<name>.records/<key>.json: one record per finished run (ran.engine)
CONDITIONS = ("carried", "wiped")


@dataclass(frozen=True)
class Recipe:
    """The recipe's defaults, from the design study (README, "One memory": ``r63``, 3 seeds, with idle ticks that
    keep): one artifact for all five kinds (vocabulary words, made-up names, 3-6 digit numbers, two-word places,
    coined words), each with a held-out split, stored in forty phrasings a kind. The gated read from the tokens'
    embeddings keeps a value's first eight tokens in order (``read_places``), a write switched once per pass (shut
    on idle ticks: ``idle_write`` "keep", so a tick cannot overwrite what an earlier turn still in the context
    stored), a switched recall, the slots ordered by the reply (place j answers the reply's j-th token) and the
    nearest write (a fixed decoder fit on the training values' store states names each place's token; needs
    thousands of training values to name values it never saw), leak rates spread from 1.0 to 0.01 over 4,096 units
    (``r65``, 3 seeds: at 2,048 the decoder named 0.43 of held-out names whole, at 4,096 0.91, and held-out names
    come back 0.95 [min 0.92] at D = 0 where 2,048 units gave 0.84); 64 hidden ReLU units under the write's switch
    and 185 everyday statements among the training distractors (``r68``, 3 seeds: the write opens on 0.12-0.17 of
    60 held-out statements where one linear unit opened on 0.32, and every store still writes); trained over 0-1
    intervening passes without harm episodes (the switched recall leaves ordinary passes as the base model's).
    Since ``r73`` (3 seeds): a value that opens its message is answered as it was stored and the decoder is fit on
    both forms (``MemoryTask.answer_as_stored``; ``r68`` recalled 0.23 of such words), the read gates also see the
    pass's last token and the token after it, which can shut a gate but barely open one (``gate_context``
    "pass-veto"), and at training only an opener goes before 30% of the store phrasings (``opener_rate``)."""

    ran: RanConfig = RanConfig(summary="gated", write="pass-switched", idle_write="keep", recall="switched",
                               read_places=8, read_from="embeddings", slot_order="reply", value_read="nearest",
                               write_hidden=64, gate_context="pass-veto",
                               reservoir=ReservoirConfig(units=4096, leak_rate=1.0, leak_rate_min=0.01,
                                                         input_scaling=0.05))
    train: TrainConfig = TrainConfig(steps=300, learning_rate=1e-2)
    format: PassFormat = PassFormat("chat")
    kinds: tuple[str, ...] = KINDS
    words: int = 6000  # training words from the vocabulary (and as many coined words)
    heldout_words: int = 200


RECIPE = Recipe()


def builtin_task(tokenizer, words: int = RECIPE.words, heldout_words: int = RECIPE.heldout_words,
                 per_kind: int = 1000, heldout_per_kind: int = 200, **settings) -> MemoryTask:
    """The built-in memory task: vocabulary words that occur in none of its texts, ``per_kind``
    (``heldout_per_kind``) names, numbers and places, and (where ``kinds`` holds "coined") as many coined words
    as vocabulary words, made of pieces no held-out name or place contains."""
    probe = MemoryTask(values={k: ("_",) for k in KINDS}, heldout_values={k: ("-",) for k in KINDS},
                       **{k: v for k, v in settings.items() if k not in ("values", "heldout_values")})
    texts = [t for pool in (probe.store_templates, probe.recall_templates, probe.heldout_store_templates,
                            probe.heldout_recall_templates) for items in pool.values() for t in items]
    texts += [*probe.turns, *probe.heldout_turns, *probe.train_distractors, *probe.eval_distractors, *probe.openers]
    train, heldout = resolve_keys(KeyPool("vocab", words, heldout_words), tokenizer, template_words(texts, SLOT))
    coined = None
    if "coined" in settings.get("kinds", ()):  # a second scan of the vocabulary: only where the task needs them
        heldout_pieces = {token for kind in ("name", "place") for value in builtin_values(kind, heldout_per_kind, True)
                          for token in tokenizer.encode(f" {value}", add_special_tokens=False)}
        coined = coined_words(tokenizer, words, heldout_per_kind, exclude_tokens=heldout_pieces)
    return MemoryTask.builtin(train, heldout, per_kind, heldout_per_kind, coined=coined, **settings)


def run_memory(task: MemoryTask, seeds: list[int], model: str = "smollm2-135m", ran: RanConfig = RECIPE.ran,
               train: TrainConfig = RECIPE.train, pass_format: PassFormat = RECIPE.format,
               arms: list[dict[str, Any]] | None = None, save_dir: Path | None = None, progress: bool = True,
               device: str = "auto", dtype: str = "auto", track: TrackConfig | None = None,
               records: Path | None = None, backend: Backend | None = None,
               threads: int | None = None) -> dict[str, Any]:
    """Train and score the recipe for every (arm, seed) on the engine (``ran.engine``: one record per run
    under ``records``, so a killed run resumes; in-process or on Ray); returns the results document.

    ``arms`` are settings applied to the configs (``ran.grid.apply_point``), e.g. ``{"summary": "last"}``;
    one arm with no changes by default. The reservoir and readout seeds follow the run's seed. Without
    ``records`` the records go to a temporary folder (nothing to resume).
    """
    started, provenance = time.perf_counter(), environment()  # the commit and load when the run starts
    task, named = memory_runs(task, seeds, model, ran, train, pass_format, arms, device, dtype)
    members = [member_of(spec, arm, harm=True) for arm, spec in named]
    saves = [None if save_dir is None else save_dir / artifact_name(arm, spec.train.seed) for arm, spec in named]
    with tempfile.TemporaryDirectory(prefix="ran-memory-") as scratch:
        finished = run_members(members, records or Path(scratch), backend, threads, progress, track=track,
                               label_of=lambda member: ",".join(f"{k}={v}" for k, v in sorted(member["point"].items())),
                               saves=saves)
    runs = [memory_record(runner_record(record), arm) for record, (arm, _) in zip(finished, named, strict=True)]
    config = {"ran": ran.to_dict(), "train": train.to_dict(), "format": pass_format.to_dict(), "task": describe(task)}
    return results_document("memory", model, config, runs, summarise(runs), time.perf_counter() - started,
                            provenance, varied=sorted({name for arm in arms or [{}] for name in arm}),
                            arms=arms or [{}])


def memory_runs(task: MemoryTask, seeds: list[int], model: str, ran: RanConfig, train: TrainConfig,
                pass_format: PassFormat, arms: list[dict[str, Any]] | None, device: str = "auto",
                dtype: str = "auto") -> tuple[MemoryTask, list[tuple[dict[str, Any], RunSpec]]]:
    """The task with the base model's own replies to its ordinary turns, and every (arm, run spec)."""
    from ran.grid import apply_point

    base, tokenizer = shared_base_model(model, device, dtype)
    renderer = Renderer(pass_format, tokenizer)
    task = with_base_replies(task, base, renderer)
    task.check(renderer)
    named = []
    for arm in arms or [{}]:
        arm_ran, arm_train = apply_point(ran, train, arm)
        for seed in seeds:
            named.append((arm, RunSpec(model, replace(arm_ran, readout_seed=seed,
                                                      reservoir=replace(arm_ran.reservoir, seed=seed)),
                                       task, replace(arm_train, seed=seed), pass_format, device, dtype,
                                       untrained=False)))
    return task, named


def artifact_name(arm: dict[str, Any], seed: int) -> str:
    settings = "-".join(f"{k}{v}" for k, v in sorted(arm.items()))
    return f"memory{'-' + settings if settings else ''}-seed{seed}"


def describe(task: MemoryTask) -> dict[str, Any]:
    """The task's settings for a results file: value lists by their counts and first few items."""
    data = task.to_dict()
    for name in ("values", "heldout_values"):
        data[name] = {kind: {"count": len(items), "first": list(items[:5])} for kind, items in data[name].items()}
    data["replies"] = len(data["replies"])
    return data


def memory_record(run: dict[str, Any], arm: dict[str, Any]) -> dict[str, Any]:
    """A runner record in the memory layout: per-group recall and stop rates, carried and wiped."""
    scores = run.pop("scores")
    record = {"arm": arm, "seed": run["seed"], "reservoir_seed": run["reservoir_seed"], "git": run["git"]}
    record["groups"] = [
        {**{k: row[k] for k in ("kind", "values", "phrasing", "delay", "n")},
         "recall": {c: _row(scores[c], row)["recall"] for c in CONDITIONS},
         "stopped": {c: _row(scores[c], row)["stopped"] for c in CONDITIONS}}
        for row in scores["carried"]["groups"]]
    record["headline"] = {c: scores[c]["value"] for c in CONDITIONS}
    record["stopped"] = {c: scores[c]["stopped"] for c in CONDITIONS}
    record["predictions"] = [
        {**carried, "wiped": wiped["reply"]}
        for carried, wiped in zip(scores["carried"]["predictions"], scores["wiped"]["predictions"], strict=True)]
    record.update({k: v for k, v in run.items() if k not in record and k != "task"})
    if "switches" in record and all("between" in p for p in scores["carried"]["predictions"]):
        record["recall_by_overwrite"] = recall_by_overwrite(scores["carried"]["predictions"], record["switches"])
    return record


def _seeds_with(values: list[float | None]) -> dict[str, Any] | None:
    """The seed summary of the seeds that have a value (None: none has)."""
    present = [value for value in values if value is not None]
    return seed_summary(present) if present else None


def _row(score: dict[str, Any], like: dict[str, Any]) -> dict[str, Any]:
    where = ("kind", "values", "phrasing", "delay")
    return next(r for r in score["groups"] if all(r[k] == like[k] for k in where))


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per arm: every group's recall and stop rate over seeds, the headline, the no-harm figures."""
    arms: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        arms.setdefault(repr(sorted(run["arm"].items())), []).append(run)
    rows = []
    for members in arms.values():
        first = members[0]
        row: dict[str, Any] = {"arm": first["arm"], "seeds": [m["seed"] for m in members], "groups": []}
        for group in first["groups"]:
            same = [next(g for g in m["groups"] if all(g[k] == group[k] for k in ("kind", "values", "phrasing",
                                                                                     "delay"))) for m in members]
            row["groups"].append({**{k: group[k] for k in ("kind", "values", "phrasing", "delay", "n")},
                                  **{metric: {c: seed_summary([g[metric][c] for g in same]) for c in CONDITIONS}
                                     for metric in ("recall", "stopped")}})
        row["headline"] = {c: seed_summary([m["headline"][c] for m in members]) for c in CONDITIONS}
        row["stopped"] = {c: seed_summary([m["stopped"][c] for m in members]) for c in CONDITIONS}
        harm = [m["harm"] for m in members]
        row["harm"] = {
            "agreement": {c: seed_summary([h["agreement"][c]["agreement"] for h in harm])
                          for c in ("base", "wiped", "carried")},
            "perplexity_rise": {c: seed_summary([h["perplexity"]["rise"][c] for h in harm]) for c in CONDITIONS},
        }
        if all("switches" in m for m in members):  # where the write and the recall open, per kind of pass
            row["switches"] = [
                {**{k: where[k] for k in ("pass", "phrasing", "n")},
                 **{switch: seed_summary([next(r[switch] for r in m["switches"] if r["pass"] == where["pass"]
                                               and r["phrasing"] == where["phrasing"]) for m in members])
                    for switch in ("write", "recall")}}
                for where in first["switches"]]
        if all("recall_by_overwrite" in m for m in members):
            row["recall_by_overwrite"] = []
            for where in first["recall_by_overwrite"]:
                same = [next(r for r in m["recall_by_overwrite"] if r["delay"] == where["delay"]) for m in members]
                row["recall_by_overwrite"].append({"delay": where["delay"], **{
                    name: {"n": sum(r[name]["n"] for r in same),
                           "recall": _seeds_with([r[name]["recall"] for r in same])}
                    for name in ("kept", "overwritten")}})
        row["train_seconds"] = seed_summary([m["train_seconds"] for m in members])
        rows.append(row)
    return rows
