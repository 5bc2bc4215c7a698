"""A population in one batch (ran.batched): every member trains as it would alone with ran.training.train."""

from dataclasses import replace

import pytest
import torch
from numerics import float32_tolerance, pass_depth
from tiny_models import VOCAB, tiny_model, tiny_tokenizer

from ran.batched import Member, batch_shape, train_members
from ran.episodes import Episode, Pass
from ran.errors import ConfigError
from ran.model import WRAPPED_MARK, RanConfig, wrap
from ran.passes import PassFormat, Renderer
from ran.reservoir import ReservoirConfig
from ran.tasks import RecallTask
from ran.training import TrainConfig, cosine_schedule, train

TOY = RecallTask(keys=("w10", "w11", "w12", "w13", "w14", "w15"), store_template="w3 w4 {key} w5",
                 recall_template="w6 w7", train_distractors=("w20 w21 w22", "w23 w24", "w25"),
                 eval_distractors=("w30 w31", "w32 w33 w34"), train_delays=(0, 2))
LONGEST_EPISODE = 4  # passes: store, up to 2 distractors, recall
RENDERER = Renderer(PassFormat(idle_text="w9"), tiny_tokenizer())


def toy_episodes(step: int, generator: torch.Generator) -> list[Episode]:
    return TOY.training_episodes(generator)


def labelled_episodes(step: int, generator: torch.Generator) -> list[Episode]:
    """Recall episodes whose passes also label what to read and when to speak (the gated read, the gate head)."""
    keys = [f"w{10 + int(i)}" for i in torch.randint(0, 6, (4,), generator=generator)]
    return [Episode((Pass(f"w3 w4 {key} w5", speak=False, read=key), Pass("w20 w21", speak=False, read=""),
                     Pass("w6 w7", f" {key}", speak=True))) for key in keys]


def members(mode: str, steps: int, **ran) -> list[Member]:
    """Members that differ in reservoir seed and settings, readout seed, data seed, learning rate and batch size."""
    settings = [  # (reservoir, readout seed, data seed, learning rate, batch size)
        (ReservoirConfig(units=64, input_scaling=1.0, seed=0), 0, 0, 3e-2, 0),
        (ReservoirConfig(units=64, input_scaling=0.5, seed=1, leak_rate=0.5), 1, 0, 3e-2, 4),
        (ReservoirConfig(units=64, input_scaling=1.0, seed=2, leak_rate=0.3, leak_rate_min=0.05), 2, 1, 1e-2, 0),
    ]
    return [Member(RanConfig(mode=mode, n_slots=4, readout_seed=readout, reservoir=reservoir, **ran),
                   TrainConfig(steps=steps, learning_rate=lr, seed=data, batch_size=size), toy_episodes)
            for reservoir, readout, data, lr, size in settings]


def assert_trained_alone_alike(trained, terms: int, passes: int, compare_parameters: bool = True) -> None:
    """Each member's losses and parameters equal those of training it alone, up to float32 rounding.

    The two runs compute the same sums in other batch shapes (another bmm, other padding, layer-L inputs
    computed with other sequences), so a step's gradient may differ by the float32 bound of the forward and
    backward chains of its longest episode. A loss is one forward of that chain on parameters that differ by
    what such gradients moved them; Adam moves a coordinate by about the learning rate per step whatever the
    gradient's scale, and a gradient off by a relative delta moves it off by about delta times that, so over
    the run the parameters may differ by delta times the sum of the learning rates (first order, a few steps).
    Measured on an AMD EPYC: losses within 2e-7 relative; parameters within 0.08 of that bound, the worst at
    a coordinate whose gradient is near Adam's epsilon (a slowly leaking unit's readout), where Adam's step
    turns a tiny absolute error into a visible one. ``compare_parameters=False`` compares the losses only.
    """
    delta = float32_tolerance(terms, 2 * pass_depth(layers=4, passes=passes))
    base = tiny_model("llama")
    for index, batched in enumerate(trained):
        member = batched.member
        model = wrap(tiny_model("llama"), member.ran)
        alone = train(model, RENDERER, member.episodes_for_step, member.train, progress=False)
        assert len(batched.result.losses) == len(alone.losses) > 0
        for step, (got, expected) in enumerate(zip(batched.result.losses, alone.losses, strict=True)):
            assert abs(got - expected) <= delta * abs(expected), (index, step, got, expected)
        assert (batched.result.episodes, batched.result.passes) == (alone.episodes, alone.passes)
        rates = sum(member.train.learning_rate * factor for factor in _schedule(member))
        reloaded = batched.wrap(base)  # the trained member as a wrapped model again
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and compare_parameters:
                got = dict(reloaded.named_parameters())[name]
                assert torch.equal(got, batched.parameters[name])
                assert (got - parameter).abs().max() <= delta * rates, (index, name)
                assert (parameter - _initial(member, name)).abs().max() > 10 * delta * rates  # it trained
        reloaded.unwrap()
        model.unwrap()


def _schedule(member: Member) -> list[float]:
    """The learning-rate factor of every optimizer step of the member's run."""
    config = member.train
    updates = -(-len(member.episodes_for_step(0, torch.Generator())) // (config.batch_size or 10**9))
    return [cosine_schedule(step, config.steps, config.warmup_steps) for step in range(config.steps)] * updates


def _initial(member: Member, name: str) -> torch.Tensor:
    model = wrap(tiny_model("llama"), member.ran)
    value = dict(model.named_parameters())[name].detach().clone()
    model.unwrap()
    return value


@pytest.mark.parametrize(("mode", "steps"), [("kv", 4), pytest.param("additive", 6, marks=pytest.mark.slow),
                                             pytest.param("prefix", 2, marks=pytest.mark.slow)])
def test_batched_members_train_as_they_would_alone(mode, steps):
    # Prefix-mode training amplifies any rounding: trained alone, a 1e-7 relative change of its initial readout
    # changes its loss by 1e-2 within 4 steps, and its first Adam step already moves readout coordinates whose
    # gradient is near Adam's epsilon by a third of a step when the gradient's last bits change. So prefix mode
    # compares two steps' losses; kv and additive (whose passes start at layer L) the whole run.
    base = tiny_model("llama")
    trained = train_members(base, members(mode, steps), RENDERER)
    assert not getattr(base, WRAPPED_MARK) and base.config._attn_implementation == "sdpa"  # left as it was
    assert_trained_alone_alike(trained, terms=VOCAB, passes=LONGEST_EPISODE, compare_parameters=mode != "prefix")


@pytest.mark.slow
def test_gated_read_and_gate_head_members_train_as_they_would_alone():
    chosen = [replace(m, episodes_for_step=labelled_episodes) for m in members("kv", 4, summary="gated", gate=True,
                                                                            write="gated")]
    trained = train_members(tiny_model("llama"), chosen, RENDERER)
    assert {"read_gate.weight", "gate_head.weight", "injector.key_readout.weight"} <= set(trained[0].parameters)
    assert_trained_alone_alike(trained, terms=VOCAB, passes=3)


@pytest.mark.parametrize(("change", "named"), [
    ({"ran": RanConfig(mode="kv", n_slots=4, reservoir=ReservoirConfig(units=32))}, "reservoir.units=32"),
    ({"ran": RanConfig(mode="kv", n_slots=2, reservoir=ReservoirConfig(units=64))}, "n_slots=2"),
    ({"ran": RanConfig(mode="additive", n_slots=4, reservoir=ReservoirConfig(units=64))}, "mode='additive'"),
    ({"ran": RanConfig(mode="kv", n_slots=4, layer=1, reservoir=ReservoirConfig(units=64))}, "layer=1"),
    ({"train": TrainConfig(steps=3)}, "train.steps=3"),
])
def test_members_of_another_shape_are_refused_in_one_line(change, named):
    base = tiny_model("llama")
    first = members("kv", 2)[0]
    with pytest.raises(ConfigError, match="share a shape") as refused:
        train_members(base, [first, replace(first, **change)], RENDERER)
    assert named in str(refused.value) and "\n" not in str(refused.value)
    assert not getattr(base, WRAPPED_MARK, False)


def test_members_that_differ_in_what_an_idle_tick_writes_do_not_share_a_batch():
    """The batch runs every row on member 0's model, so its idle_write would hold for all: they differ in shape."""
    gate = RanConfig(summary="gated", write="switched", reservoir=ReservoirConfig(units=64))
    keep = replace(gate, idle_write="keep")
    assert batch_shape(gate, TrainConfig()) != batch_shape(keep, TrainConfig())
    first = replace(members("kv", 2)[0], ran=gate)
    with pytest.raises(ConfigError, match="member 1 has idle_write='keep', member 0 has 'gate'"):
        train_members(tiny_model("llama"), [first, replace(first, ran=keep)], RENDERER)


@pytest.mark.parametrize(("ran", "named"), [
    (RanConfig(lora_rank=2, reservoir=ReservoirConfig(units=64)), "lora_rank 2"),
    (RanConfig(recurrence="gru", reservoir=ReservoirConfig(units=64)), "recurrence 'gru'"),
    (RanConfig(summary="attention", reservoir=ReservoirConfig(units=64)), "summary 'attention'"),
    (RanConfig(summary="gated", gate_context="pass", reservoir=ReservoirConfig(units=64)), "gate_context 'pass'"),
])
def test_members_whose_parameters_cannot_be_stacked_are_refused(ran, named):
    with pytest.raises(ConfigError, match=named):
        train_members(tiny_model("llama"), [Member(ran, TrainConfig(steps=1), toy_episodes)], RENDERER)
    with pytest.raises(ConfigError, match="no members"):
        train_members(tiny_model("llama"), [], RENDERER)


def test_the_engine_batches_only_runs_of_one_shape_and_at_most_n_per_batch():
    from ran.engine import Backend, batch_groups, member_of
    from ran.runner import RunSpec
    from ran.tasks import RecallTask

    def member(seed: int, units: int = 32, steps: int = 3, lora_rank: int = 0, summary: str = "last"):
        ran_config = RanConfig(mode="kv", summary=summary, lora_rank=lora_rank,
                               reservoir=ReservoirConfig(units=units, seed=seed))
        return member_of(RunSpec("tiny", ran_config, RecallTask(), TrainConfig(steps=steps, seed=seed)))

    members = [member(0), member(1), member(2, units=64), member(3), member(4, lora_rank=2), member(5, steps=4),
               member(6), member(7, summary="attention")]
    assert batch_groups(list(range(8)), members, 1) == [[i] for i in range(8)]
    assert batch_groups(list(range(8)), members, 3) == [[0, 1, 3], [2], [4], [5], [6], [7]]
    assert batch_groups(list(range(8)), members, 2) == [[0, 1], [2], [3, 6], [4], [5], [7]]
    assert batch_groups([1, 3], members, 8) == [[1, 3]]  # a resumed run batches only what is left
    with pytest.raises(ConfigError, match="batch must be an integer >= 1"):
        Backend(batch=0)
