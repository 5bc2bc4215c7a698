"""Cross-pass training on tiny random models: the carried state learns what the wiped control cannot."""

import pytest
import torch
from tiny_models import tiny_model, tiny_tokenizer

from ran.crosspass import evaluate
from ran.episodes import Episode, Pass, collate
from ran.errors import ConfigError
from ran.model import RanConfig, wrap
from ran.recall import RecallTask
from ran.reservoir import ReservoirConfig
from ran.training import TrainConfig, predict, run_passes, train

TOY = RecallTask(keys=("w10", "w11", "w12", "w13", "w14", "w15"), store_template="w3 w4 {key} w5",
                 recall_template="w6 w7")
CONFIG = RanConfig(mode="kv", n_slots=4, reservoir=ReservoirConfig(units=128, input_scaling=1.0))


def _trained(seed=0, steps=150, mode="kv"):
    tokenizer = tiny_tokenizer()
    model = wrap(tiny_model("llama"), RanConfig(mode=mode, n_slots=4, readout_seed=seed,
                                                 reservoir=ReservoirConfig(units=128, input_scaling=1.0, seed=seed)))
    episodes = TOY.episodes()
    result = train(model, tokenizer, lambda step, generator: episodes,
                   TrainConfig(steps=steps, learning_rate=3e-2, seed=seed), progress=False)
    return model, tokenizer, result


def test_carried_state_learns_recall_that_the_wiped_control_cannot():
    model, tokenizer, result = _trained()
    measured = evaluate(model, tokenizer, TOY)
    assert result.losses[-1] < 0.25 * result.losses[0]
    assert measured["recall"]["carried"] == 1.0
    # Without the state, the recall pass is the same text for every key: at most one key can be right.
    assert measured["recall"]["wiped"] <= 1 / 6
    assert measured["among_keys"]["wiped"] <= 1 / 6


def test_seeded_runs_are_bit_identical():
    first_model, tokenizer, first = _trained(seed=3, steps=20)
    second_model, _, second = _trained(seed=3, steps=20)
    assert first.losses == second.losses
    for a, b in zip(first_model.injector.parameters(), second_model.injector.parameters(), strict=True):
        assert torch.equal(a, b)
    episodes = TOY.episodes()
    assert predict(first_model, tokenizer, episodes, True) == predict(second_model, tokenizer, episodes, True)
    _, _, other = _trained(seed=4, steps=20)
    assert other.losses != first.losses


def test_batched_gradients_equal_one_example_at_a_time():
    tokenizer = tiny_tokenizer()
    model = wrap(tiny_model("qwen2"), CONFIG)
    with torch.no_grad():
        model.injector.value_readout.weight.normal_(0, 0.1)
    # Episodes of different lengths, so the batch is left-padded.
    episodes = [Episode((Pass("w3 w4 w10 w5"), Pass("w6 w7", "w10"))),
                Episode((Pass("w20 w11"), Pass("w6 w7 w8 w9", "w11"))),
                Episode((Pass("w3 w4 w5 w30 w31 w12"), Pass("w6", "w12")))]
    params = model.trainable_parameters()
    loss, _ = run_passes(model, collate(episodes, tokenizer))
    batched = torch.autograd.grad(loss, params)
    singles = [torch.autograd.grad(run_passes(model, collate([e], tokenizer))[0], params) for e in episodes]
    for index, gradient in enumerate(batched):
        expected = sum(s[index] for s in singles) / len(episodes)
        assert gradient.abs().max() > 0
        torch.testing.assert_close(gradient, expected, atol=1e-5, rtol=1e-4)


def test_loss_flows_back_through_the_carried_state():
    tokenizer = tiny_tokenizer()
    model = wrap(tiny_model("llama"), CONFIG)
    batches = collate(TOY.episodes()[:2], tokenizer)
    state = model.reservoir.initial_state(2).requires_grad_()
    first = model(batches[0].input_ids, attention_mask=batches[0].attention_mask, state=state)
    second = model(batches[1].input_ids, attention_mask=batches[1].attention_mask, state=first.state)
    (grad,) = torch.autograd.grad(second.logits[:, -1].sum(), state)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("task_kwargs, message", [
    (dict(keys=()), "key list is empty"),
    (dict(store_template="no key here"), "does not contain {key}"),
    (dict(recall_template="it was {key}"), "must not contain the key"),
    (dict(keys=("a", "a")), "duplicates"),
])
def test_bad_tasks_are_refused(task_kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RecallTask(**task_kwargs)


def test_multi_token_key_is_refused():
    tokenizer = tiny_tokenizer()
    with pytest.raises(ConfigError, match="'w10 w11' is not a single token"):
        RecallTask(keys=("w10 w11",)).key_token_ids(tokenizer)


def test_default_key_pool_is_single_tokens_for_smollm2(smollm2):
    from ran.recall import DEFAULT_KEY_POOL

    _, tokenizer = smollm2
    assert len(RecallTask(keys=tuple(DEFAULT_KEY_POOL)).key_token_ids(tokenizer)) == len(DEFAULT_KEY_POOL)


def test_bad_train_config_is_refused():
    with pytest.raises(ConfigError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig(learning_rate=0)


def test_curriculum_shows_the_key_in_the_recall_pass():
    plain, scaffolded = TOY.episodes(), TOY.episodes(show_key_in_recall=[True] + [False] * 5)
    assert scaffolded[0].passes[1].text == "w3 w4 w10 w5 w6 w7" and scaffolded[1] == plain[1]
    assert scaffolded[0].passes[1].target == plain[0].passes[1].target == " w10"


def test_lora_parameters_train_with_the_readout():
    tokenizer = tiny_tokenizer()
    model = wrap(tiny_model("gpt2"), RanConfig(n_slots=4, lora_rank=2, reservoir=ReservoirConfig(units=64)))
    lora = {n: p.detach().clone() for n, p in model.base.named_parameters() if "lora_B" in n}
    assert lora and all(n.startswith("transformer.h.2.") or n.startswith("transformer.h.3.") for n in lora)
    episodes = TOY.episodes()
    train(model, tokenizer, lambda step, generator: episodes, TrainConfig(steps=3, learning_rate=1e-2), progress=False)
    changed = [n for n, p in model.base.named_parameters() if n in lora and not torch.equal(p, lora[n])]
    assert changed
