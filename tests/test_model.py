"""The wrapped model on tiny GPT-2, Qwen2 and Llama models, in each injection mode."""

import pytest
import torch
from conftest import ARCHITECTURES, MODES
from numerics import TINY_WIDTH, assert_float32_close, pass_depth
from tiny_models import VOCAB, tiny_model

from ran.errors import ArtifactError, ConfigError
from ran.integrity import seal
from ran.model import RanConfig, ReservoirModel, wrap
from ran.reservoir import ReservoirConfig
from ran.runtime.persistence import load_state, save_state

SMALL = ReservoirConfig(units=64, input_scaling=0.5)


def _randomise_readout(model: ReservoirModel, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.injector.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def _ids(batch=2, length=7, seed=0):
    return torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_off_is_identity_on_changes_logits_and_state(architecture, mode):
    base = tiny_model(architecture)
    ids = _ids()
    bare = base(ids).logits
    model = wrap(base, RanConfig(mode=mode, reservoir=SMALL))
    _randomise_readout(model)
    with model.injection_disabled():
        torch.testing.assert_close(model(ids).logits, bare, atol=1e-5, rtol=0)
    model.reset_state()
    first = model(ids)
    second = model(ids)  # the carried state is now nonzero for every mode
    assert (second.logits - bare).abs().max() > 1e-3
    assert (second.state - first.state).abs().max() > 1e-4
    assert first.logits.shape == bare.shape


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_gradients_reach_readout_through_frozen_model_and_state(architecture, mode):
    model = wrap(tiny_model(architecture), RanConfig(mode=mode, reservoir=SMALL))
    _randomise_readout(model)
    ids = _ids()
    state = model(ids, state=model.reservoir.initial_state(2)).state  # pass 1: writes the state
    loss = model(ids, state=state).logits[:, -1].logsumexp(-1).sum()  # pass 2 reads it
    loss.backward()
    grads = [p.grad for p in model.injector.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in model.base.parameters())


def test_eager_attention_matches_sdpa_in_kv_mode():
    ids = _ids()
    outputs = []
    for implementation in ("sdpa", "eager"):
        model = wrap(tiny_model("llama", attn_implementation=implementation), RanConfig(reservoir=SMALL))
        _randomise_readout(model)
        model(ids)
        outputs.append(model(ids).logits)
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_cached_and_uncached_generation_agree_with_left_padding(architecture):
    model = wrap(tiny_model(architecture), RanConfig(mode="kv", reservoir=SMALL))
    _randomise_readout(model)
    ids = torch.tensor([[0, 0, 0, 5, 9, 17], [11, 4, 8, 30, 2, 7]])  # example 0 is left-padded
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    model(ids, attention_mask=mask)  # give each example its own nonzero state
    start = model.get_state()
    assert (start[0] - start[1]).abs().max() > 1e-3
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    cached = model.generate(ids, attention_mask=mask, state=start, use_cache=True, **kwargs)
    after_cached = model.get_state()
    uncached = model.generate(ids, attention_mask=mask, state=start, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
    torch.testing.assert_close(model.get_state(), after_cached)  # one tick per pass, whatever the cache
    # Each example's state is its own: running example 0 alone gives the same tokens and state row.
    alone = model.generate(ids[:1, 3:], state=start[:1], **kwargs)
    assert torch.equal(alone[0, -6:], cached[0, -6:])
    # Batch 1 instead of 2 (other kernels): equal up to float32 rounding of one pass read at layer 2 of 4.
    assert_float32_close(model.get_state()[0], after_cached[0], TINY_WIDTH, pass_depth(layers=3))


@pytest.mark.parametrize("mode", ["prefix", "additive"])
def test_generate_with_cache_in_other_modes(mode):
    model = wrap(tiny_model("llama"), RanConfig(mode=mode, reservoir=SMALL))
    _randomise_readout(model)
    ids = _ids(2, 5)
    model(ids)
    start = model.get_state()
    kwargs = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    cached = model.generate(ids, state=start, use_cache=True, **kwargs)
    uncached = model.generate(ids, state=start, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached) and cached.shape == (2, 10)
    assert torch.equal(cached[:, :5], ids)


def test_generation_reads_the_state_written_before_the_pass():
    model = wrap(tiny_model("llama"), RanConfig(reservoir=SMALL))
    _randomise_readout(model)
    ids = _ids(1, 5)
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    zero = model.generate(ids, state=model.reservoir.initial_state(1), **kwargs)
    other = model.generate(ids, state=torch.ones(1, 64) * 0.9, **kwargs)
    assert not torch.equal(zero, other)


def test_num_return_sequences_expands_per_example_slots():
    model = wrap(tiny_model("llama"), RanConfig(reservoir=SMALL))
    _randomise_readout(model)
    ids = _ids(2, 4)
    out = model.generate(ids, max_new_tokens=3, do_sample=False, num_beams=2, num_return_sequences=2, pad_token_id=0)
    assert out.shape[0] == 4 and model.get_state().shape == (2, 64)


def test_save_load_round_trip_reproduces_logits(tmp_path):
    for mode in MODES:
        model = wrap(tiny_model("qwen2"), RanConfig(mode=mode, reservoir=SMALL, lora_rank=2))
        _randomise_readout(model)
        with torch.no_grad():
            for name, parameter in model.base.named_parameters():
                if "lora_B" in name:
                    parameter.normal_()
        ids = _ids()
        state = model(ids).state
        expected = model(ids, state=state).logits
        model.save_pretrained(tmp_path / mode)
        loaded = ReservoirModel.from_pretrained(tiny_model("qwen2"), tmp_path / mode)
        assert loaded.reservoir.fingerprint == model.reservoir.fingerprint
        assert torch.equal(loaded(ids, state=state).logits, expected)


def test_loading_onto_another_base_model_fails(tmp_path):
    model = wrap(tiny_model("llama", seed=0), RanConfig(reservoir=SMALL))
    model.save_pretrained(tmp_path)
    with pytest.raises(ArtifactError, match="different base model"):
        ReservoirModel.from_pretrained(tiny_model("llama", seed=1), tmp_path)
    with pytest.raises(ArtifactError, match="different base model"):
        ReservoirModel.from_pretrained(tiny_model("gpt2"), tmp_path)


def test_tampered_reservoir_config_fails(tmp_path):
    import json

    wrap(tiny_model("llama"), RanConfig(reservoir=SMALL)).save_pretrained(tmp_path)
    description = json.loads((tmp_path / "ran_config.json").read_text())
    description["config"]["reservoir"]["spectral_radius"] = 0.5
    (tmp_path / "ran_config.json").write_text(json.dumps(description))
    with pytest.raises(ArtifactError, match="was edited after it was saved"):  # its own checksum
        ReservoirModel.from_pretrained(tiny_model("llama"), tmp_path)
    (tmp_path / "ran_config.json").write_text(json.dumps(seal(description)))  # edited and re-sealed
    with pytest.raises(ArtifactError, match="fingerprint mismatch"):
        ReservoirModel.from_pretrained(tiny_model("llama"), tmp_path)


def test_corrupt_or_missing_artifact_files_fail_clearly(tmp_path):
    base = tiny_model("llama")
    with pytest.raises(ArtifactError, match="not found"):
        ReservoirModel.from_pretrained(base, tmp_path / "nope")
    with pytest.raises(ArtifactError, match="no ran_config.json"):
        ReservoirModel.from_pretrained(base, tmp_path)
    wrap(tiny_model("llama"), RanConfig(reservoir=SMALL)).save_pretrained(tmp_path)
    (tmp_path / "readout.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(ArtifactError, match="corrupt"):
        ReservoirModel.from_pretrained(tiny_model("llama"), tmp_path)
    (tmp_path / "ran_config.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        ReservoirModel.from_pretrained(tiny_model("llama"), tmp_path)


def test_state_file_round_trip_and_refusals(tmp_path):
    model = wrap(tiny_model("llama"), RanConfig(reservoir=SMALL))
    model(_ids())
    path = tmp_path / "state.safetensors"
    save_state(model, path)
    saved = model.get_state()
    model.reset_state()
    assert torch.equal(load_state(model, path), saved)
    other = wrap(tiny_model("llama"), RanConfig(reservoir=ReservoirConfig(units=64, seed=1)))
    with pytest.raises(ArtifactError, match="different reservoir"):
        load_state(other, path)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ArtifactError, match="corrupt"):
        load_state(model, truncated)
    with pytest.raises(ArtifactError, match="not found"):
        load_state(model, tmp_path / "missing.safetensors")
    assert torch.equal(model.get_state(), saved)  # a refused load leaves the carried state alone


def test_state_api_and_batch_mismatch():
    model = wrap(tiny_model("llama"), RanConfig(reservoir=SMALL))
    assert model.get_state() is None
    model(_ids(2))
    assert model.get_state().shape == (2, 64)
    with pytest.raises(ConfigError, match="2 rows but this batch has 3"):
        model(_ids(3))
    model.reset_state(3)
    assert torch.equal(model.get_state(), torch.zeros(3, 64))
    out = model(_ids(3))
    assert out.state.requires_grad is False or out.state.grad_fn is not None
    model.detach_state()
    assert model.state.grad_fn is None
    with pytest.raises(ConfigError, match="shape"):
        model.set_state(torch.zeros(2, 5))


def test_padding_aware_read_uses_the_last_real_token():
    model = wrap(tiny_model("llama"), RanConfig(reservoir=SMALL))
    ids = _ids(1, 5)
    alone = model(ids, state=model.reservoir.initial_state(1)).state
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    left = model(padded, attention_mask=mask, position_ids=position_ids, state=model.reservoir.initial_state(1)).state
    assert_float32_close(left, alone, TINY_WIDTH, pass_depth(layers=3))  # another length: other kernels
    right = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    right_state = model(right, attention_mask=mask.flip(1), state=model.reservoir.initial_state(1)).state
    assert_float32_close(right_state, alone, TINY_WIDTH, pass_depth(layers=3))


def test_unwrap_restores_the_base_model():
    base = tiny_model("gpt2")
    ids = _ids()
    bare = base(ids).logits
    model = wrap(base, RanConfig(reservoir=SMALL))
    _randomise_readout(model)
    model(ids)
    restored = model.unwrap()
    assert restored.config._attn_implementation == "sdpa"
    torch.testing.assert_close(restored(ids).logits, bare, atol=0, rtol=0)


@pytest.mark.parametrize("bad, message", [
    (dict(layer=4), "layer 4 out of range"),
    (dict(mode="sideways"), "unknown mode 'sideways'"),
    (dict(n_slots=0), "n_slots"),
    (dict(summary="max"), "unknown summary"),
])
def test_bad_wrap_config_is_refused(bad, message):
    with pytest.raises(ConfigError, match=message):
        wrap(tiny_model("llama"), RanConfig(reservoir=SMALL), **bad)


def test_gradient_checkpointing_is_refused():
    base = tiny_model("llama")
    base.gradient_checkpointing_enable()
    with pytest.raises(ConfigError, match="gradient checkpointing"):
        wrap(base, RanConfig(reservoir=SMALL))


def test_unsupported_architecture_and_attention_are_refused():
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    neox = AutoModelForCausalLM.from_config(GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                          intermediate_size=64, vocab_size=VOCAB))
    with pytest.raises(ConfigError, match="unsupported architecture 'gpt_neox'"):
        wrap(neox, RanConfig(reservoir=SMALL))
    flex = tiny_model("llama")
    flex.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ConfigError, match="flash_attention_2"):
        wrap(flex, RanConfig(reservoir=SMALL))


@pytest.mark.parametrize("mode", MODES)
def test_read_only_pass_gives_the_same_next_state_without_logits(mode):
    model = wrap(tiny_model("qwen2"), RanConfig(mode=mode, reservoir=SMALL))
    _randomise_readout(model)
    ids, start = _ids(), torch.rand(2, 64) - 0.5
    full = model(ids, state=start)
    quick = model(ids, state=start, read_only=True)
    assert quick.logits is None
    torch.testing.assert_close(quick.state, full.state, atol=0, rtol=0)
    torch.testing.assert_close(model.get_state(), full.state, atol=0, rtol=0)
    # The next pass runs normally: the read hook is re-armed.
    assert model(ids).logits.shape == full.logits.shape


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_kept_positions_logits_are_one_matmul_not_a_batched_one(architecture):
    # transformers slices the logits_to_keep positions before the LM head; on that non-contiguous slice F.linear
    # runs a batched matmul against the vocabulary matrix expanded per example (~7x slower on a CPU for SmolLM2).
    model = wrap(tiny_model(architecture), RanConfig(reservoir=SMALL))
    _randomise_readout(model)
    ids, start = _ids(batch=3), torch.rand(3, 64) - 0.5
    with torch.profiler.profile(record_shapes=True) as profiled:
        kept = model(ids, state=start, logits_to_keep=1).logits
    head = [event.name for event in profiled.events() if event.name in ("aten::mm", "aten::addmm", "aten::bmm")
            and any(shape and shape[-1] == VOCAB for shape in event.input_shapes)]
    assert head and "aten::bmm" not in head, head
    full = model(ids, state=start).logits
    assert_float32_close(kept[:, -1], full[:, -1], terms=TINY_WIDTH, depth=pass_depth(layers=4))
    base = model.unwrap()
    assert not base.get_output_embeddings()._forward_pre_hooks  # unwrap removes the hook


@pytest.mark.parametrize("bias", [False, True])
def test_a_readout_accumulates_its_gradient_in_place_as_autograd_would_sum_it(bias):
    """The readout's in-place gradient (ran.injection.base.Readout, as the trainers use it) equals nn.Linear's summed
    over every use, and its reused tensor starts from zero after zero_grad."""
    from ran.injection.base import Readout, readout_gradients_in_place

    torch.manual_seed(0)
    readout, reference = Readout(16, 12, bias=bias), torch.nn.Linear(16, 12, bias=bias)
    reference.load_state_dict(readout.state_dict())
    inputs = [torch.randn(5, 16), torch.randn(3, 4, 16), torch.randn(2, 16)]
    weights = torch.randn(12)
    reused = None
    for step in range(2):
        for module in (readout, reference):
            module.zero_grad(set_to_none=True)
            with readout_gradients_in_place(module):
                sum((module(x * (step + 1)) * weights).sum() for x in inputs).backward()
        assert_float32_close(readout.weight.grad, reference.weight.grad, terms=12, depth=2)
        if bias:
            assert_float32_close(readout.bias.grad, reference.bias.grad, terms=12, depth=2)
        reused = reused if reused is not None else readout.weight.grad
        assert readout.weight.grad is reused  # one gradient tensor, zeroed and refilled
    grads_of_input = []
    for module in (readout, reference):
        x = inputs[1].clone().requires_grad_(True)
        with readout_gradients_in_place(module):
            (module(x) * weights).sum().backward()
        grads_of_input.append(x.grad)
    assert_float32_close(*grads_of_input, terms=12, depth=1)
    assert not readout.in_place  # outside the context, an nn.Linear: torch.autograd.grad reaches the weight
    (gradient,) = torch.autograd.grad((readout(inputs[0]) * weights).sum(), [readout.weight])
    (expected,) = torch.autograd.grad((reference(inputs[0]) * weights).sum(), [reference.weight])
    assert torch.equal(gradient, expected)
    with torch.no_grad():
        assert torch.equal(readout(inputs[0]), reference(inputs[0]))
