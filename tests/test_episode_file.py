"""Tasks written as data: a JSONL file of episodes, checked line by line, trained and scored by the one runner."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_model, tiny_text_model_dir, tiny_tokenizer

from ran.episodes import Prediction
from ran.errors import RanError, TaskFileError
from ran.model import RanConfig
from ran.passes import PassFormat, Renderer
from ran.reservoir import ReservoirConfig
from ran.runner import RunSpec, run_one
from ran.tasks import TASKS, task_class
from ran.tasks.episode_file import EpisodeFileTask, task_from_file
from ran.tasks.mix import TaskMix
from ran.training import TrainConfig

EXAMPLE = Path(__file__).parent.parent / "docs" / "tasks" / "appointments.jsonl"


def write(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def recall_line(key: int, heldout: bool = False) -> dict:
    """A cross-pass recall episode in the tiny vocabulary: store wKEY, wipe, ask for it."""
    return {"heldout": heldout, "group": f"key w{key}",
            "passes": [{"text": f"w3 w4 w{key} w5"}, {"text": "w6 w7", "target": f" w{key}"}]}


def test_the_example_loads_as_a_registered_task():
    task = task_from_file(EXAMPLE)
    assert task.name == "appointments" and task_class("appointments") is type(task)
    assert isinstance(task, EpisodeFileTask) and TASKS["appointments"].metric == "episode right"
    held = task.evaluation_episodes()
    assert len(held) == 4 and all(e.info["line"] >= 13 for e in held)  # the last four lines are marked held out
    drawn = task.training_episodes(torch.Generator().manual_seed(0))
    assert len(drawn) == task.per_step and not {e.info["line"] for e in drawn} & {e.info["line"] for e in held}
    appointment = held[0]  # "In 3 turns, remind me to call Ben.", then four ticks, the first from a wiped context
    assert [p.idle for p in appointment.passes] == [False, True, True, True, True]
    assert [p.wipe for p in appointment.passes] == [True, True, False, False, False]
    assert [p.speak for p in appointment.passes] == [None, False, False, True, False]
    assert appointment.passes[3].target == " Ben"
    assert task.to_dict()["sha256"] and task.to_dict()["path"] == str(EXAMPLE)


def texts_of(path: Path) -> list[str]:
    return [value for line in path.read_text().splitlines() for step in json.loads(line)["passes"]
            for key, value in step.items() if key in ("text", "target")]


def test_the_example_runs_through_the_runner_on_a_tiny_model(tmp_path):
    from ran.loading import load_model

    base, tokenizer = load_model(str(tiny_text_model_dir(tmp_path / "model", texts_of(EXAMPLE))))
    task = task_from_file(EXAMPLE)
    mix = TaskMix(tasks=(task,), weights=(1.0,), episodes_per_step=8)
    ran = RanConfig(n_slots=4, gate=True, reservoir=ReservoirConfig(units=64))
    spec = RunSpec("tiny", ran, mix, TrainConfig(steps=2, seed=0), PassFormat())
    record = run_one(spec, base, tokenizer, progress=False, stateless=True)
    for condition in ("carried", "wiped", "stateless"):
        score = record["scores"][condition]["tasks"]["appointments"]
        assert 0.0 <= score["value"] <= score["targets_right"] <= 1.0  # one target an episode: right needs it
        assert [row["group"] for row in score["groups"]] == ["appointment in 1", "appointment in 2",
                                                             "appointment in 3", "who to call"]
        assert sum(row["n"] for row in score["groups"]) == 4 and len(score["predictions"]) == 4
        # Three appointments: each has one speaking tick and 1-3 silent ones, all labelled.
        gate = score["gate"]
        assert gate["true_speak"] + gate["missed"] == 3
        assert gate["false_speak"] + gate["true_silent"] == 3 + 2 + 1


def test_a_file_task_is_learned_through_the_carried_state(tmp_path):
    """Recall written as data: the key is on the first pass only, the context is wiped before the second, so the
    models without the state can only guess: the second pass reads the same tokens in every episode, so they say
    the same word in all four and are right at most once (0.25)."""
    path = write(tmp_path / "toyrecall.jsonl", [recall_line(k) for k in (10, 11, 12, 13)]
                 + [recall_line(k, heldout=True) for k in (10, 11, 12, 13)])
    task = task_from_file(path)
    mix = TaskMix(tasks=(task,), weights=(1.0,), episodes_per_step=8)
    ran = RanConfig(n_slots=4, gate=True, reservoir=ReservoirConfig(units=128, input_scaling=1.0, leak_rate=0.5))
    spec = RunSpec("tiny", ran, mix, TrainConfig(steps=100, learning_rate=3e-2, seed=0), PassFormat(idle_text="w9"))
    record = run_one(spec, tiny_model("llama"), tiny_tokenizer(), progress=False, stateless=True)
    scores = {c: record["scores"][c]["tasks"]["toyrecall"]["value"] for c in ("carried", "wiped", "stateless")}
    assert scores["carried"] >= 0.75, scores  # measured 1.00 (wiped 0.00, stateless 0.25)
    assert scores["stateless"] <= 0.25 and scores["wiped"] <= 0.25, scores


def test_perfect_and_wrong_predictions(tmp_path):
    task = task_from_file(EXAMPLE)
    renderer = Renderer(PassFormat(), tiny_tokenizer())
    episodes = task.evaluation_episodes()

    def predictions(speak_early: bool):
        out = []
        for episode in episodes:
            scored = [p for p in episode.passes if p.target is not None or p.speak is not None]
            out.append([Prediction(renderer.target(p.target) if p.target else [], None,
                                   None if p.speak is None else float(p.speak or speak_early)) for p in scored])
        return out

    assert task.score(episodes, predictions(False), renderer)["value"] == 1.0
    wrong = task.score(episodes, predictions(True), renderer)  # the gate speaks on every tick
    assert wrong["value"] == 0.25 and wrong["targets_right"] == 1.0  # only the recall episode has no silent tick
    assert wrong["speak_right"] == pytest.approx(3 / 9)


GOOD = {"heldout": True, "passes": [{"text": "w3 w10"}, {"idle": True, "wipe": True, "speak": False},
                                     {"idle": True, "target": " w10", "speak": True}]}


@pytest.mark.parametrize("bad_line, message", [
    ('{"passes": [{"text": "w3 w10"}, {"text": "w6", "target": " w10"}', "line 2: not valid JSON"),
    ({"passes": [{"target": " w10"}]}, "line 2: passes[0]: missing field 'text'"),
    ({"passes": [{"text": "w3"}, {"idle": True, "target": " w10"}]},
     "line 2: passes[1].target ' w10' on an idle tick not labelled \"speak\": true"),
    ({"passes": [{"text": "w3", "target": " w10", "speak": False}]}, "line 2: passes[0].target ' w10' on a pass "
     "labelled \"speak\": false"),
    ({"passes": [{"text": "w3"}, {"idle": True, "target": "<silent>", "speak": True}]},
     "line 2: passes[1].target \"<silent>\" on a pass labelled \"speak\": true"),
    ({"passes": [{"text": "w3", "spek": True}]}, "line 2: passes[0]: unknown field 'spek'"),
    ({"passes": [{"text": "w3", "speak": "yes"}]}, "line 2: passes[0]: speak = 'yes' is not valid"),
    ({"passes": "w3"}, "line 2: passes = 'w3' is not valid: expected a list of objects"),
    ({"passes": []}, "line 2: passes is empty"),
    ({"passes": [{"text": "w3"}]}, "line 2: passes: no pass has a \"target\" or a \"speak\" label"),
    ({"heldout": "yes", "passes": [{"text": "w3", "target": " w4"}]}, "line 2: heldout = 'yes' is not valid"),
    ({"passes": [{"idle": True, "text": "w3", "speak": False}]}, "line 2: passes[0].text: an idle tick has no text"),
    ([1, 2], "line 2: an episode is a JSON object"),
    ({"pases": []}, "line 2: missing field 'passes'"),
    ({"passes": [{"text": "w3 w10", "read": "w11"}, {"text": "w6", "target": " w10"}]},
     "line 2: passes[0].read 'w11' is not part of the text 'w3 w10'"),
    ({"passes": [{"text": "w3 w10"}, {"idle": True, "running_read": "w10", "target": " w10", "speak": True}]},
     "line 2: passes[1].running_read 'w10' on an idle tick"),
    ({"passes": [{"text": "w3 w10", "read": 10}, {"text": "w6", "target": " w10"}]},
     "line 2: passes[0]: read = 10 is not valid"),
])
def test_a_malformed_line_is_refused_naming_the_line_and_the_field(tmp_path, bad_line, message):
    path = write(tmp_path / "bad.jsonl", [GOOD, bad_line, {**GOOD, "heldout": False}])
    with pytest.raises(TaskFileError) as error:
        task_from_file(path)
    assert str(error.value) == str(error.value).strip() and "\n" not in str(error.value)
    assert f"task file {path}, {message}" in str(error.value)
    assert isinstance(error.value, RanError) and "bad" not in TASKS


@pytest.mark.parametrize("lines, name, message", [
    ([GOOD], "onlyheld", "leave some for training"),
    ([{**GOOD, "heldout": False}], "nothingheld", "no episode has \"heldout\": true"),
    (["", "  "], "blank", "has no episodes"),
    ([GOOD, {**GOOD, "heldout": False}], "recall", "which is a built-in task: rename the file"),
    ([GOOD, {**GOOD, "heldout": False}], "My Task", "must be lower-case letters"),
])
def test_a_malformed_file_is_refused(tmp_path, lines, name, message):
    with pytest.raises(TaskFileError, match=message.replace("(", r"\(")):
        task_from_file(write(tmp_path / f"{name}.jsonl", lines))


def test_a_silent_tick_may_be_trained_to_say_nothing(tmp_path):
    silent = {"passes": [{"text": "w3"}, {"idle": True, "wipe": True, "target": "<silent>", "speak": False}]}
    task = task_from_file(write(tmp_path / "quiet.jsonl", [silent, {**silent, "heldout": True}]))
    assert task.evaluation_episodes()[0].passes[1].target == "<silent>"


def test_read_labels_label_the_part_of_the_text_and_idle_ticks_read_nothing(tmp_path):
    """A labelled read takes in its part of the text; the episode's unlabelled ticks read nothing (0, not -1), and
    an episode that labels no read has no labels at all."""
    from ran.episodes import render

    labelled = {"passes": [{"text": "w3 w4 w10 w5", "read": "w10", "running_read": ""},
                           {"idle": True, "wipe": True, "speak": False},
                           {"idle": True, "target": " w10", "speak": True}]}
    task = task_from_file(write(tmp_path / "reads.jsonl", [labelled, {**GOOD, "heldout": True}]))
    episode = task.training_episodes(torch.Generator().manual_seed(0))[0]
    assert [(p.read, p.running_read) for p in episode.passes] == [("w10", ""), ("", ""), ("", "")]
    assert [(p.read, p.running_read) for p in task.evaluation_episodes()[0].passes] == [(None, None)] * 3
    renderer = Renderer(PassFormat(idle_text="w9"), tiny_tokenizer())
    task.check(renderer)
    first, _, tick = render(episode, renderer)  # the second tick continues the first's context
    marked = [token for token, label in zip(first.prompt, first.read, strict=True) if label == 1]
    assert renderer.tokenizer.decode(marked).strip() == "w10" and set(first.running_read) == {0}
    assert tick.read and set(tick.read[-len(renderer.idle_tokens):]) == {0}  # its own turn reads nothing
    assert set(tick.read[:-len(renderer.idle_tokens)]) == {-1}  # the context keeps no labels


def test_the_read_labelled_example_holds_out_its_words_and_labels_every_pass():
    """docs/tasks/appointments-read.jsonl (docs/tasks/make_appointments_read.py): the timed appointments as data."""
    task = task_from_file(EXAMPLE.with_name("appointments-read.jsonl"))
    training, held = task._training, task.evaluation_episodes()
    assert len(training) == 1200 and len(held) == 96
    said = {p.target for e in training for p in e.passes if p.target}
    assert len(said) == 1000 and not said & {p.target for e in held for p in e.passes if p.target}
    for episode in (*training, *held):
        for step in episode.passes:
            assert (step.read, step.running_read) == ("", "") if step.idle else step.read.strip() in step.text
        if episode.group != "quiet":  # one due tick, speaking its target; three silent ticks after it
            speaks = [p.speak for p in episode.passes[1:]]
            assert speaks.count(True) == 1 and speaks[-3:] == [False] * 3 and episode.passes[1].wipe
    assert sum(e.group == "quiet" for e in training) == 200
    assert {e.group for e in held} == {f"N={n}" for n in range(1, 9)} | {"held-out phrasing"}


def test_targets_that_do_not_encode_are_refused_naming_the_line(tmp_path):
    renderer = Renderer(PassFormat(idle_text="w9"), tiny_tokenizer())
    path = write(tmp_path / "blanks.jsonl", [GOOD, {"passes": [{"text": "w3"}, {"text": "w4", "target": " "}]}])
    with pytest.raises(TaskFileError, match=r"blanks.jsonl, line 2: passes\[1\]: target ' ' encodes to no tokens"):
        task_from_file(path).check(renderer)


def test_the_battery_cli_trains_and_scores_a_task_file(tmp_path):
    model = tiny_text_model_dir(tmp_path / "model", texts_of(EXAMPLE))
    result = subprocess.run([sys.executable, "-m", "ran", "battery", "--model", str(model), "--episode-file",
                             str(EXAMPLE), "--units", "32", "--steps", "2", "--seeds", "0", "--episodes-per-step", "4",
                             "--out", str(tmp_path / "out"), "--no-progress"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "out" / "battery.json").read_text())
    (row,) = results["summary"]  # the file's task alone: no built-in task unless --tasks names some
    assert row["task"] == "appointments" and row["metric"] == "episode right"
    assert {"carried", "wiped", "stateless"} <= set(row)
    assert results["config"]["mix"]["tasks"][0]["sha256"] == task_from_file(EXAMPLE).sha256
    assert "appointments" in result.stdout


def test_an_episode_file_task_is_rebuilt_from_a_member_where_the_file_was_never_read():
    """A Ray worker gets the task as its member's settings: the file is read, checked and registered there."""
    from ran.engine import member_of, spec_of

    task = task_from_file(EXAMPLE)
    mix = TaskMix(tasks=(task,), weights=(1.0,), episodes_per_step=4)
    member = member_of(RunSpec("tiny", RanConfig(), mix, TrainConfig(steps=1)))
    del TASKS[task.name]  # as in a fresh process
    rebuilt = spec_of(member).task.tasks[0]
    assert rebuilt.name == task.name and rebuilt.to_dict() == task.to_dict()
    assert rebuilt.evaluation_episodes() == task.evaluation_episodes()
