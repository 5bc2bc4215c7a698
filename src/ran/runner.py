"""One runner for every experiment: wrap, train through the carried state, evaluate under each condition.

A *run* is (model, RAN config, pass format, task, training config). It wraps the model, scores the
untrained model, trains the readout (and LoRA) on the task's episodes, and scores the same trained
parameters twice: with the state carried between passes, and with it reset before every pass (the
wiped-state control). The experiment engine (``ran.engine``) runs it once per member.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ran.artifact import read_artifact_description
from ran.episodes import render
from ran.errors import ArtifactError, ConfigError
from ran.fileio import atomic_write
from ran.loading import load_model
from ran.model import RanConfig, ReservoirModel, wrap
from ran.passes import PassFormat, Renderer
from ran.provenance import source
from ran.reading import DECODED_VALUE_READS, WRITTEN_VALUE_READS
from ran.tasks import Task
from ran.tasks.mix import TaskMix
from ran.tracking import TrackConfig, log_run
from ran.training import LayerInputCache, TrainConfig, TrainResult, predict, run_episodes, train

CONDITIONS = ("carried", "wiped", "untrained")


@dataclass(frozen=True)
class RunSpec:
    model: str
    ran: RanConfig
    task: Task | TaskMix  # what it trains on; a mix is scored task by task
    train: TrainConfig
    format: PassFormat = PassFormat()
    device: str = "auto"  # see ran.devices
    dtype: str = "auto"
    untrained: bool = True  # also score the untrained model (a baseline every run can skip when it is known)


def evaluate(model: ReservoirModel, renderer: Renderer, task: Task | TaskMix, carry: bool,
             cache: LayerInputCache | None = None, progress: bool = False) -> dict[str, Any]:
    """The task's score of the model on its evaluation episodes, with the state carried or wiped; a
    :class:`TaskMix` is scored task by task (:meth:`TaskMix.combine`). ``progress`` shows a bar."""
    if isinstance(task, TaskMix):  # a mix has no episodes of its own
        return task.combine({t.name: evaluate(model, renderer, t, carry, cache, progress) for t in task.tasks})
    episodes = task.evaluation_episodes()
    predictions = predict(model, renderer, episodes, carry=carry, candidates=task.candidates(renderer), cache=cache,
                          progress=progress, description=f"scoring {task.name} {'carried' if carry else 'wiped'}",
                          **task.decoding(renderer))
    return task.score(episodes, predictions, renderer)


def episode_source(spec: RunSpec):
    """The spec's training episodes as ``(step, generator) -> episodes``, its curriculum's scaffold fading out."""
    curriculum = spec.train.curriculum_steps

    def episodes_for_step(step: int, generator: torch.Generator):
        scaffold = 1.0 - step / curriculum if curriculum and step < curriculum else 0.0
        return spec.task.training_episodes(generator, scaffold=scaffold)

    return episodes_for_step


def fit_decoder(model: ReservoirModel, task: Task | TaskMix, renderer: Renderer) -> None:
    """Fit ``value_read`` decoded / residual / logits's decoder on the values the task stores in training, each as
    its store phrasings tokenise it (``stored_forms`` where the task has them: after a space, and without one where a
    phrasing opens with the value and the task answers it so; else after a space), the written reads' with the
    reply's stop at the place after the value (so the state says where the reply ends); the fit's report, with the
    share of each kind's held-out values the decoder alone names whole, is kept as ``model.decoder_fit``."""
    values = getattr(task, "training_values", None)
    if values is None:
        raise ConfigError(f"value_read '{model.config.value_read}' is fit on the values a task stores: task "
                          f"'{task.name}' has no training values (ran remember's memory task has)")
    end = renderer.silence if model.config.value_read in WRITTEN_VALUE_READS else None

    def encoded(items, space: str = " ") -> list[list[int]]:
        return [renderer.tokenizer.encode(f"{space}{value}", add_special_tokens=False) for value in items]

    # Each kind's held-out values, scored by the decoder alone: the ceiling of what the trained read can return;
    # "<kind> opening": as a store that opens with the value says them (no leading space), where the task answers
    # such a value as stored (the memory task's ``answer_as_stored``).
    heldout = {kind: encoded(task.heldout_values[kind]) for kind in getattr(task, "kinds", ())
               if getattr(task, "heldout_values", {}).get(kind)}
    forms = getattr(task, "stored_forms", None)
    if forms is not None:
        heldout.update({f"{kind} opening": encoded(task.heldout_values[kind], "") for kind in task.opening_kinds()
                        if task.heldout_values.get(kind)})
    fitted = encoded(forms(), "") if forms is not None else encoded(values())
    model.decoder_fit = model.fit_value_decoder(fitted, end=end, heldout=heldout)


WHITEN_STATES = 2048  # states the whitening is fit on (at least this many, the answers of whole steps of episodes)
WHITEN_SEED = 7919  # the episodes' own stream, apart from training's


def fit_whitening(model: ReservoirModel, spec: RunSpec, renderer: Renderer, cache: LayerInputCache | None,
                  progress: bool = False) -> None:
    """Fit ``RanConfig.whiten``'s map on the states the spec's training episodes carry into their scored passes
    (the ones with a target), run as training runs them but without gradients, from the model as wrapped; the fit's
    report is kept as ``model.whitening_fit``. A model that never carries its state (the stateless ablation) keeps
    the identity: its state is a constant."""
    if not getattr(model.reservoir, "carries_state", True):
        return
    started = time.perf_counter()
    source, generator = episode_source(spec), torch.Generator().manual_seed(WHITEN_SEED + spec.train.seed)
    states: list[torch.Tensor] = []
    step = 0
    with torch.no_grad(), tqdm(total=WHITEN_STATES, desc="whitening: states", disable=not progress, leave=False,
                               dynamic_ncols=True) as bar:
        while len(states) < WHITEN_STATES:
            episodes = [render(episode, renderer) for episode in source(step, generator)]
            outputs = run_episodes(model, episodes, cache=cache, keep=True, teach_switches=True)
            before = len(states)
            for scored in outputs.scored:
                states += [each.state for each in scored if each.logits is not None]
            bar.update(min(len(states), WHITEN_STATES) - min(before, WHITEN_STATES))
            step += 1
            if not states and step >= 8:
                raise ConfigError(f"whiten is fit on the states of the passes a task answers: task '{spec.task.name}'"
                                  " drew none in 8 training steps")
    model.whitening_fit = model.fit_whitening(torch.stack(states).float().cpu())
    model.whitening_fit["seconds"] = round(time.perf_counter() - started, 3)


def _wrapped(spec: RunSpec, base, renderer: Renderer, progress: bool, carry: bool = True,
             ran: RanConfig | None = None) -> tuple[ReservoirModel, LayerInputCache | None, dict[str, Any]]:
    """Wrap ``base``, fit what its config fits before training (a decoder, a whitening), score it untrained if the
    spec asks; returns (model, cache, scores)."""
    model = wrap(base, ran or spec.ran)
    try:
        if model.config.value_read in DECODED_VALUE_READS:
            fit_decoder(model, spec.task, renderer)
        cache = LayerInputCache(model) if model.can_start_at_layer else None
        if model.config.whiten:
            fit_whitening(model, spec, renderer, cache, progress)
        scores = ({"untrained": evaluate(model, renderer, spec.task, carry=carry, cache=cache)} if spec.untrained
                  else {})
    except BaseException:
        model.unwrap()
        raise
    return model, cache, scores


def _trained(spec: RunSpec, base, renderer: Renderer, progress: bool, carry: bool = True,
             ran: RanConfig | None = None) -> tuple[ReservoirModel, LayerInputCache | None, Any, dict[str, Any]]:
    """Wrap ``base``, score it untrained, train it on the spec's task; returns (model, cache, result, scores)."""
    model, cache, scores = _wrapped(spec, base, renderer, progress, carry, ran)
    label = f"{model.config.mode} {model.config.recurrence} seed {spec.train.seed}"
    try:
        trained = train(model, renderer, episode_source(spec), spec.train, progress=progress, description=label,
                        cache=cache, carry=carry)
    except BaseException:
        model.unwrap()
        raise
    return model, cache, trained, scores


def run_one(spec: RunSpec, base=None, tokenizer=None, progress: bool = True,
            save_to: Path | None = None, stateless: bool = False,
            after: Callable[[ReservoirModel, Renderer], dict[str, Any]] | None = None,
            track: TrackConfig | None = None, label: str = "") -> dict[str, Any]:
    """Train and evaluate one run; returns its record. Loads the model unless ``base`` is given.

    ``save_to`` already holding this very run's finished artifact (:func:`saved_run_of`: a process stopped after
    saving it, before the record) resumes it: the artifact is loaded and scored instead of trained again, its
    training's figures read back from its ``run.json`` (a decoder's or whitening's fit report is not kept there, so
    such a record has none), and the record says so under ``resumed_from``.
    ``stateless=True`` also trains the stateless ablation (the same model with every pass starting from
    a trained constant state, ``RanConfig(recurrence="none")``) and scores it as ``stateless``.
    ``after(model, renderer)`` measures the trained model further (e.g. ``ran.harm``); its entries join
    the record. ``track`` logs the finished record (``ran.tracking``; ``label`` names the run, e.g. its
    grid arm) and records where as ``tracked``.
    """
    if base is None or spec.ran.lora_rank:  # LoRA changes the backbone: every run gets a fresh one
        base, tokenizer = load_model(spec.model, device=spec.device, dtype=spec.dtype)
    renderer = Renderer(spec.format, tokenizer)
    spec.task.check(renderer)
    saved = saved_run_of(spec, save_to)
    if saved is None:
        model, cache, trained, scores = _trained(spec, base, renderer, progress)
        record = _scored(spec, model, cache, training_summary(trained), scores, renderer, save_to, after, progress)
    else:  # trained and saved by an earlier process that stopped before its record: scored, not trained again
        model, cache, scores = _reloaded(spec, base, renderer, save_to)
        record = _scored(spec, model, cache, saved_training(saved), scores, renderer, None, after, progress)
        record["resumed_from"] = {"artifact": str(save_to), "git": saved.get("git")}
    if stateless:
        if spec.ran.lora_rank:
            base, tokenizer = load_model(spec.model, device=spec.device, dtype=spec.dtype)
        _add_stateless(record, spec, base, renderer, progress)
    if track is not None:
        record["tracked"] = str(log_run(track, record, label, save_to))
    return record


def run_together(specs: list[RunSpec], base, tokenizer, progress: bool = True,
                 saves: list[Path | None] | None = None, stateless: list[bool] | None = None,
                 afters: list[Callable[[ReservoirModel, Renderer], dict[str, Any]] | None] | None = None,
                 ) -> list[dict[str, Any]]:
    """:func:`run_one` for runs that share a shape, trained in one batch on ``base`` (:mod:`ran.batched`).

    Each run is scored untrained, carried and wiped, measured by its ``after`` and saved exactly as
    :func:`run_one` does; only its training ran beside the others', so its record equals its solo record up
    to float rounding (``train_seconds`` is the whole batch's). Stateless ablations train alone.
    """
    from ran.batched import Member, train_members

    saves, stateless, afters = (saves or [None] * len(specs), stateless or [False] * len(specs),
                                afters or [None] * len(specs))
    formats = {spec.format for spec in specs}
    if len(formats) != 1:
        raise ConfigError(f"runs trained in one batch share one pass format, got {len(formats)}")
    renderer = Renderer(specs[0].format, tokenizer)
    untrained: list[dict[str, Any]] = []
    for spec in specs:
        spec.task.check(renderer)
        scores = {}
        if spec.untrained:
            model = wrap(base, spec.ran)
            try:
                cache = LayerInputCache(model) if model.can_start_at_layer else None
                scores["untrained"] = evaluate(model, renderer, spec.task, carry=True, cache=cache)
            finally:
                model.unwrap()
        untrained.append(scores)
    members = [Member(spec.ran, spec.train, episode_source(spec)) for spec in specs]
    trained = train_members(base, members, renderer, progress=progress, description=f"{len(specs)} runs")
    records = []
    for spec, done, scores, save_to, ablate, after in zip(specs, trained, untrained, saves, stateless, afters,
                                                           strict=True):
        model = done.wrap(base)
        cache = LayerInputCache(model) if model.can_start_at_layer else None
        record = _scored(spec, model, cache, training_summary(done.result), scores, renderer, save_to, after,
                         progress)
        if ablate:
            _add_stateless(record, spec, base, renderer, progress)
        records.append(record)
    return records


def _scored(spec: RunSpec, model: ReservoirModel, cache: LayerInputCache | None, training: dict[str, Any],
            scores: dict[str, Any], renderer: Renderer, save_to: Path | None,
            after: Callable[[ReservoirModel, Renderer], dict[str, Any]] | None, progress: bool = False
            ) -> dict[str, Any]:
    """A trained run's record (``training``: :func:`training_summary`): scored carried and wiped, measured by
    ``after``, saved; ``model`` unwrapped."""
    try:
        for condition, carry in (("carried", True), ("wiped", False)):
            scores[condition] = evaluate(model, renderer, spec.task, carry=carry, cache=cache, progress=progress)
        base = model.base
        record = {
            "task": spec.task.name,
            "mode": spec.ran.mode,
            "seed": spec.train.seed,
            "reservoir_seed": spec.ran.reservoir.seed,
            "readout_seed": spec.ran.readout_seed,
            "input_scaling": spec.ran.reservoir.input_scaling,
            "format": spec.format.to_dict(),
            "device": str(base.device),
            "dtype": str(base.dtype).removeprefix("torch."),
            "scores": {condition: scores[condition] for condition in CONDITIONS if condition in scores},
            **training,
            "ran_config": model.config.to_dict(),
            "train_config": spec.train.to_dict(),
            "reservoir_fingerprint": model.reservoir.fingerprint,
        }
        if model.decoder_fit is not None:
            record["decoder"] = model.decoder_fit
        if model.whitening_fit is not None:
            record["whitening"] = model.whitening_fit
        if after is not None:
            record.update(after(model, renderer))
        if save_to is not None:
            save_artifact(model, spec, record, save_to)
    finally:
        model.unwrap()
    return record


def _add_stateless(record: dict[str, Any], spec: RunSpec, base, renderer: Renderer, progress: bool) -> None:
    """Train and score the run's stateless ablation into ``record`` (``scores.stateless`` and its curve)."""
    ablation, ablation_cache, ablation_trained, _ = _trained(
        spec, base, renderer, progress, carry=False, ran=replace(spec.ran, recurrence="none"))
    try:
        record["scores"]["stateless"] = evaluate(ablation, renderer, spec.task, carry=False, cache=ablation_cache)
        record["stateless_loss_curve"] = [round(loss, 6) for loss in ablation_trained.losses]
        record["stateless_train_seconds"] = round(ablation_trained.seconds, 3)
    finally:
        ablation.unwrap()


ARTIFACT_RUN_FILE = "run.json"
ARTIFACT_RUN_SCHEMA = "ran.run-artifact/1"
TRAINING_FIELDS = ("loss_curve", "train_seconds", "episodes_per_second", "passes_per_second")


def save_artifact(model: ReservoirModel, spec: RunSpec, record: dict[str, Any], directory: Path) -> None:
    """The wrapped model (with its pass format) plus what ``ran eval`` needs to score it again."""
    model.save_pretrained(directory, pass_format=spec.format)
    saved = {"schema": ARTIFACT_RUN_SCHEMA, "model": spec.model, "task": {"name": spec.task.name,
             **spec.task.to_dict()}, "train": spec.train.to_dict(), "format": spec.format.to_dict(),
             "scores": {c: _without_details(record["scores"][c]) for c in ("carried", "wiped")},
             "training": {name: record[name] for name in TRAINING_FIELDS}, "git": source()}
    atomic_write(directory / ARTIFACT_RUN_FILE, json.dumps(saved, indent=1) + "\n")


def training_summary(trained: TrainResult) -> dict[str, Any]:
    """What a record keeps of a run's training (:data:`TRAINING_FIELDS`)."""
    return {"loss_curve": [round(loss, 6) for loss in trained.losses], "train_seconds": round(trained.seconds, 3),
            "episodes_per_second": round(trained.episodes_per_second, 3),
            "passes_per_second": round(trained.passes / trained.seconds, 3) if trained.seconds else None}


def saved_training(saved: dict[str, Any]) -> dict[str, Any]:
    """:func:`training_summary` as an artifact's ``run.json`` keeps it; None for each figure an artifact saved
    before ``run.json`` kept them lacks."""
    training = saved.get("training") if isinstance(saved.get("training"), dict) else {}
    return {name: training.get(name) for name in TRAINING_FIELDS}


def saved_run_of(spec: RunSpec, directory: Path | None) -> dict[str, Any] | None:
    """The ``run.json`` of the finished artifact of exactly this run under ``directory`` (the same model, task,
    training, pass format and RAN config, its layer resolved as ``wrap`` resolves it), else None: nothing there,
    an unfinished save (``run.json`` is written last), another run's artifact, or one that does not parse."""
    if directory is None or not (directory / ARTIFACT_RUN_FILE).is_file():
        return None
    try:
        description = read_artifact_description(directory)
        saved = json.loads((directory / ARTIFACT_RUN_FILE).read_text())
    except (ArtifactError, json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None
    n_layers = description["base_model"].get("n_layers")
    if not isinstance(saved, dict) or not isinstance(n_layers, int):
        return None
    ran = spec.ran if spec.ran.layer is not None else replace(spec.ran, layer=n_layers // 2)
    expected = {"schema": ARTIFACT_RUN_SCHEMA, "model": spec.model, "task": {"name": spec.task.name,
                **spec.task.to_dict()}, "train": spec.train.to_dict(), "format": spec.format.to_dict()}
    same = (json.loads(json.dumps(expected)) == {name: saved.get(name) for name in expected}
            and json.loads(json.dumps(ran.to_dict())) == description["config"])
    return saved if same else None


def _reloaded(spec: RunSpec, base, renderer: Renderer, directory: Path
              ) -> tuple[ReservoirModel, LayerInputCache | None, dict[str, Any]]:
    """The run's saved artifact loaded on ``base``, after scoring the untrained model as :func:`_trained` does;
    returns (model, cache, scores)."""
    scores = {}
    if spec.untrained:
        untrained, _, scores = _wrapped(spec, base, renderer, progress=False)
        untrained.unwrap()
    model = ReservoirModel.from_pretrained(base, directory)
    return model, LayerInputCache(model) if model.can_start_at_layer else None, scores


def _without_details(score: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in score.items() if key != "predictions"}
