"""Tasks a user writes as data: a JSONL file of episodes, one episode a line, registered under the file's name.

    {"group": "recall", "passes": [{"text": "Tomorrow I must call Ada."},
                                   {"text": "Who must I call tomorrow? I must call", "target": " Ada"}]}
    {"heldout": true, "passes": [{"text": "In 2 turns, remind me to call Ben."},
                                 {"idle": true, "wipe": true, "speak": false},
                                 {"idle": true, "target": " Ben", "speak": true}]}

An episode (one line, a JSON object) has ``passes`` (a list), ``heldout`` (true: evaluation uses it; false,
the default: training draws from it) and an optional ``group`` (scores are also reported per group). A pass
has the fields of :class:`ran.episodes.Pass`:

- ``text``: the input; required unless the pass is an idle tick;
- ``idle``: true for an idle tick (it reads the pass format's idle text, so it has no ``text``);
- ``wipe``: the context is wiped before the pass (default: true for an input, false for an idle tick);
- ``target``: what the model must say right after the pass (``"<silent>"``: nothing), or absent;
- ``speak``: the gate head's label after the pass (true: speak, false: stay silent), or absent;
- ``read``: read labels for the gated read (``--summary gated``): the part of ``text`` to take in (``""``:
  nothing), or absent (no label); ``running_read``: the same for the running units' own read (``--running-read``).
  An idle tick reads nothing, so it takes only ``""``, and where an episode labels a read on any pass its
  unlabelled idle ticks read nothing too (as the timed task's ticks do).

A target on an idle tick (but ``"<silent>"``) is only allowed where the tick is labelled ``"speak": true`` (a
tick says something only when the gate speaks); a pass labelled ``"speak": false`` takes no target but
``"<silent>"``, and one labelled ``"speak": true`` not that one. Every
episode must have a scored pass (a target or a speak label); the file needs training and held-out episodes.
Every line is checked before anything runs, and a bad one is refused in one line naming the line and the field.

The task is named after the file (``appointments.jsonl`` -> ``appointments``). Its metric, ``episode right``, is
the share of held-out episodes in which every target is said exactly and every speak label is met; it also
reports the share of targets right and of speak labels met.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from ran.episodes import READ_LABELS, SILENT, Episode, Pass
from ran.errors import ConfigError, TaskFileError
from ran.fileio import read_small_text
from ran.passes import Renderer
from ran.schema import check_fields
from ran.tasks.base import TASKS, Prediction, Task, register
from ran.tasks.common import exact, gate_counts, mean

SUFFIX = ".jsonl"
MAX_FILE_BYTES = 64 * 2**20
MAX_PASSES = 256  # passes in one episode (the deferred task's longest delay)
NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")  # a task name, from the file's stem


@dataclass(frozen=True)
class PassLine:
    """A pass as a task file writes it (see the module docstring)."""

    text: str | None = None
    target: str | None = None
    idle: bool = False
    wipe: bool | None = None
    speak: bool | None = None
    read: str | None = None
    running_read: str | None = None


@dataclass(frozen=True)
class EpisodeLine:
    """An episode as a task file writes it: one line."""

    passes: tuple[dict, ...] = ()
    heldout: bool = False
    group: str = ""


def task_name(path: str | Path) -> str:
    """The task's name: the file's stem, which must be a plain lower-case name and not a built-in task's."""
    path = Path(path)
    if path.suffix != SUFFIX:
        raise TaskFileError(f"task file {path} must end in {SUFFIX} (one JSON episode a line)")
    name = path.stem
    if not NAME.fullmatch(name):
        raise TaskFileError(f"task file {path}: its name {name!r} names the task, so it must be lower-case letters, "
                            "digits, '_' or '-', starting with a letter (e.g. appointments.jsonl)")
    if name in TASKS and not issubclass(TASKS[name], EpisodeFileTask):
        raise TaskFileError(f"task file {path} would be named '{name}', which is a built-in task: rename the file")
    return name


def read_lines(path: Path) -> tuple[list[str], str]:
    """The file's lines and its SHA-256; a missing, oversized, binary or unreadable file is one clear error."""
    text = read_small_text(path, "task file", MAX_FILE_BYTES, f"a {SUFFIX} file", "a task file", TaskFileError)
    return text.splitlines(), hashlib.sha256(text.encode("utf-8")).hexdigest()  # UTF-8 round-trips: the file's bytes


def fields_of(cls: type, data: Any, where: str) -> dict[str, Any]:
    """:func:`ran.schema.check_fields`, its errors as :class:`TaskFileError`."""
    try:
        return check_fields(cls, data, where)
    except ConfigError as error:
        raise TaskFileError(str(error)) from None


def parse_pass(data: Any, where: str) -> Pass:
    """One pass of a line, checked field by field; ``where`` names it ("task file F, line 3: passes[1]")."""
    line = PassLine(**fields_of(PassLine, data, where))
    if line.idle and line.text is not None:
        raise TaskFileError(f"{where}.text: an idle tick has no text (it reads the pass format's idle text): "
                            "remove \"text\" or \"idle\"")
    if not line.idle and line.text is None:
        raise TaskFileError(f"{where}: missing field 'text' (an input pass needs its text; an idle tick says "
                            "\"idle\": true)")
    if not line.idle and not line.text:
        raise TaskFileError(f"{where}.text is empty: give the input, or make the pass an idle tick")
    if line.target == "":
        raise TaskFileError(f"{where}.target is empty: give what the model must say, \"<silent>\", or no target")
    if line.target is not None and line.target != SILENT and line.speak is False:
        raise TaskFileError(f"{where}.target {line.target!r} on a pass labelled \"speak\": false: a silent pass takes "
                            "no target but \"<silent>\"")
    if line.target == SILENT and line.speak is True:
        raise TaskFileError(f"{where}.target \"{SILENT}\" on a pass labelled \"speak\": true: say what it speaks, or "
                            "label it \"speak\": false")
    if line.idle and line.target not in (None, SILENT) and line.speak is not True:
        raise TaskFileError(f"{where}.target {line.target!r} on an idle tick not labelled \"speak\": true: a tick "
                            "says something only when the gate speaks")
    for name in READ_LABELS:
        part = getattr(line, name)
        if part and line.idle:
            raise TaskFileError(f"{where}.{name} {part!r} on an idle tick: a tick reads nothing of its own, so it "
                                "takes only \"\" or no label")
        if part and part not in (line.text or ""):
            raise TaskFileError(f"{where}.{name} {part!r} is not part of the text {line.text!r}: a pass can only read "
                                "what it says (\"\": nothing)")
    wipe = (not line.idle) if line.wipe is None else line.wipe
    return Pass(text=line.text or "", target=line.target, idle=line.idle, wipe=wipe, speak=line.speak,
                read=line.read, running_read=line.running_read)


def label_idle_reads(passes: list[Pass]) -> list[Pass]:
    """Where any pass of an episode labels a read, its idle ticks without that label read nothing (labels of 0),
    rather than having no label (-1)."""
    labelled = [name for name in READ_LABELS if any(getattr(p, name) is not None for p in passes)]
    return [dataclasses.replace(p, **{name: "" for name in labelled if getattr(p, name) is None}) if p.idle else p
            for p in passes]


def parse_episode(text: str, path: Path, number: int) -> tuple[Episode, bool]:
    """Line ``number`` of the file: (the episode, whether it is held out)."""
    where = f"task file {path}, line {number}"
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        reason = (f"{error.msg} at column {error.colno}" if isinstance(error, json.JSONDecodeError)
                  else "nested too deeply")
        raise TaskFileError(f"{where}: not valid JSON ({reason})") from None
    if not isinstance(data, dict):
        raise TaskFileError(f"{where}: an episode is a JSON object {{\"passes\": [...]}}, not {type(data).__name__}")
    if "passes" not in data:
        raise TaskFileError(f"{where}: missing field 'passes' (an episode is {{\"passes\": [...], \"heldout\": ..., "
                            "\"group\": ...}})")
    line = EpisodeLine(**fields_of(EpisodeLine, data, where))
    if not line.passes:
        raise TaskFileError(f"{where}: passes is empty: an episode needs at least one pass")
    if len(line.passes) > MAX_PASSES:
        raise TaskFileError(f"{where}: passes has {len(line.passes)} passes, more than the {MAX_PASSES} an episode "
                            "may have")
    passes = label_idle_reads([parse_pass(item, f"{where}: passes[{index}]") for index, item in enumerate(line.passes)])
    if not any(p.target is not None or p.speak is not None for p in passes):
        raise TaskFileError(f"{where}: passes: no pass has a \"target\" or a \"speak\" label, so there is nothing to "
                            "train or score")
    return Episode(tuple(passes), label=f"line {number}", group=line.group, info={"line": number}), line.heldout


def parse_episodes(path: Path) -> tuple[list[Episode], list[Episode], str]:
    """(training episodes, held-out episodes, the file's SHA-256); every line checked, blank lines skipped."""
    lines, digest = read_lines(path)
    training, heldout = [], []
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        episode, held = parse_episode(text, path, number)
        (heldout if held else training).append(episode)
    if not training and not heldout:
        raise TaskFileError(f"task file {path} has no episodes: write one JSON episode a line")
    if not heldout:
        raise TaskFileError(f"task file {path}: no episode has \"heldout\": true: mark the episodes evaluation uses")
    if not training:
        raise TaskFileError(f"task file {path}: every episode has \"heldout\": true: leave some for training")
    return training, heldout, digest


@dataclass(frozen=True)
class EpisodeFileTask(Task):
    """A task read from a JSONL file of episodes (see the module docstring). Not registered itself: each file
    registers a subclass named after it (:func:`task_from_file`)."""

    name: ClassVar[str] = "episodes"
    metric: ClassVar[str] = "episode right"

    path: str = ""
    per_step: int = 8  # training episodes per step, drawn with replacement from the training episodes
    sha256: str = ""  # the file's content hash; when given, the file must still have it

    def __post_init__(self) -> None:
        if self.per_step < 1:
            raise ConfigError(f"per_step must be >= 1, got {self.per_step}")
        training, heldout, digest = parse_episodes(Path(self.path))
        if self.sha256 and self.sha256 != digest:
            raise TaskFileError(f"task file {self.path} has changed since it was used (SHA-256 {digest[:12]}..., "
                                f"expected {self.sha256[:12]}...)")
        object.__setattr__(self, "sha256", digest)
        object.__setattr__(self, "_training", tuple(training))
        object.__setattr__(self, "_heldout", tuple(heldout))

    def check(self, renderer: Renderer) -> None:
        """Every input, read label and target must encode to tokens (refused naming the line and the field)."""
        for episode in (*self._training, *self._heldout):
            for index, step in enumerate(episode.passes):
                where = f"task file {self.path}, line {episode.info['line']}: passes[{index}]"
                try:
                    if not step.idle:
                        renderer.turn(step.text)
                        for name in READ_LABELS:
                            if getattr(step, name):
                                renderer.turn_labels(step.text, getattr(step, name))
                    if step.target is not None:
                        renderer.target(step.target)
                except ConfigError as error:
                    raise TaskFileError(f"{where}: {error}") from None
        if any(step.idle for episode in (*self._training, *self._heldout) for step in episode.passes):
            renderer.idle_tokens  # noqa: B018  (refuses an idle text without tokens)

    def training_episodes(self, generator: torch.Generator, scaffold: float = 0.0) -> list[Episode]:
        drawn = torch.randint(len(self._training), (self.per_step,), generator=generator).tolist()
        return [self._training[index] for index in drawn]

    def evaluation_episodes(self) -> list[Episode]:
        return list(self._heldout)

    def score(self, episodes: list[Episode], predictions: list[list[Prediction]],
              renderer: Renderer) -> dict[str, Any]:
        right, targets, speaks, details = [], [], [], []
        by_group: dict[str, list[float]] = {}
        for episode, predicted in zip(episodes, predictions, strict=True):
            scored = [p for p in episode.passes if p.target is not None or p.speak is not None]
            said, spoke, checks = [], [], []
            for step, prediction in zip(scored, predicted, strict=True):
                if step.target is not None:
                    hit = exact(prediction, renderer, step.target)
                    targets.append(hit)
                    checks.append(hit)
                    said.append(renderer.tokenizer.decode(prediction.tokens))
                if step.speak is not None:
                    spoke_now = prediction.speak is not None and prediction.speak >= 0.5
                    met = float(spoke_now == step.speak)
                    speaks.append(met)
                    checks.append(met)
                    spoke.append(spoke_now)
            value = float(all(checks))
            right.append(value)
            if episode.group:
                by_group.setdefault(episode.group, []).append(value)
            details.append({"line": episode.info["line"], "said": said, "speaks": spoke, "right": bool(value)})
        return {"value": mean(right), "targets_right": mean(targets), "speak_right": mean(speaks),
                "groups": [{"group": group, "n": len(values), "right": mean(values)}
                           for group, values in sorted(by_group.items())],
                "gate": gate_counts(episodes, predictions), "predictions": details}


def task_from_file(path: str | Path, settings: dict[str, Any] | None = None) -> EpisodeFileTask:
    """The task of a JSONL file of episodes, registered under the file's name like a built-in task (so the runner
    and the battery's summary find it by name); ``settings`` (e.g. ``{"per_step": 4}``) as ``--set`` gives them.
    Every line is checked before the task is registered."""
    name = task_name(path)
    cls = type(f"EpisodeFileTask_{name.replace('-', '_')}", (EpisodeFileTask,),
               {"name": name, "__doc__": f"The task of the episode file {path}.", "__module__": __name__})
    fields = check_fields(cls, {**(settings or {}), "path": str(path)}, f"task file {path}")
    try:
        task = cls(**fields)
    except TaskFileError:
        raise
    except ConfigError as error:  # a setting out of range
        raise ConfigError(f"task file {path}: {error}") from None
    register(cls)
    return task
