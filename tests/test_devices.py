"""Devices and dtypes: the choice is checked, and the core paths run on every available device.

On a machine without CUDA the CUDA cases are skipped with a reason; with a GPU, ``make test`` runs
them there (non-destruction, cached == uncached generation, a training step, artifacts, a session pass).
"""

import pytest
import torch
from tiny_models import VOCAB, tiny_model, tiny_tokenizer

from ran.devices import available_devices, resolve
from ran.errors import ConfigError
from ran.model import RanConfig, ReservoirModel, wrap
from ran.passes import PassFormat, Renderer
from ran.reservoir import ReservoirConfig
from ran.tasks import RecallTask
from ran.training import TrainConfig, predict, train

DEVICES = [pytest.param(d, marks=pytest.mark.skipif(d == "cuda" and not torch.cuda.is_available(),
                                                      reason="no CUDA GPU on this machine")) for d in ("cpu", "cuda")]
TOY = RecallTask(keys=("w10", "w11", "w12"), store_template="w3 {key}", recall_template="w6",
                 train_distractors=("w20 w21",), eval_distractors=("w30",), eval_delays=(0, 1))


def test_auto_picks_the_gpu_when_there_is_one():
    placement = resolve("auto", "auto")
    if torch.cuda.is_available():
        assert placement.device.type == "cuda" and placement.dtype == torch.bfloat16
    else:
        assert placement.device.type == "cpu" and placement.dtype == torch.float32
    assert available_devices()[0] == "cpu"


@pytest.mark.parametrize("device, dtype, message", [
    ("tpu", "auto", "unknown device 'tpu'"),
    ("cuda:x", "auto", "unknown device"),
    ("cpu", "float8", "unknown dtype 'float8'"),
    ("cpu", "float16", "float16 on the CPU is refused"),
])
def test_bad_devices_and_dtypes_are_refused(device, dtype, message):
    with pytest.raises(ConfigError, match=message):
        resolve(device, dtype)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_clear_error():
    with pytest.raises(ConfigError, match="has no CUDA GPU"):
        resolve("cuda")


def test_a_gpu_index_that_does_not_exist_is_refused():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: the index check needs one")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(f"cuda:{torch.cuda.device_count()}")


def _wrapped(device: str, mode: str = "kv") -> ReservoirModel:
    base = tiny_model("llama").to(device)
    model = wrap(base, RanConfig(mode=mode, n_slots=4, reservoir=ReservoirConfig(units=64)))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.trainable_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["kv", "prefix", "additive"])
def test_core_paths_on_the_device(device, mode):
    model = _wrapped(device, mode)
    assert model.reservoir.w_in.device.type == device  # wrap() follows the base model's device
    ids = torch.tensor([[3, 4, 5, 6]], device=device)
    with torch.no_grad():
        bare = model.base(ids).logits
        with model.injection_disabled():
            off = model(ids).logits
        assert (off - bare).abs().max().item() <= 1e-5
        state = model(ids, state=model.reservoir.initial_state(1)).state
        assert state.device.type == device and state.dtype == torch.float32
        kwargs = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
        cached = model.generate(ids, state=state, use_cache=True, **kwargs)
        uncached = model.generate(ids, state=state, use_cache=False, **kwargs)
        assert torch.equal(cached, uncached)


@pytest.mark.parametrize("device", DEVICES)
def test_training_step_artifact_and_session_on_the_device(device, tmp_path):
    from ran.runtime import EntropyGate, Session, SessionConfig

    model = _wrapped(device)
    renderer = Renderer(PassFormat(idle_text="w9"), tiny_tokenizer())
    result = train(model, renderer, lambda step, generator: TOY.training_episodes(generator),
                   TrainConfig(steps=2), progress=False)
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    before = predict(model, renderer, TOY.evaluation_episodes(), carry=True)
    model.save_pretrained(tmp_path)
    model.unwrap()
    again = ReservoirModel.from_pretrained(model.base, tmp_path)
    after = predict(again, renderer, TOY.evaluation_episodes(), carry=True)
    assert [[p.tokens for p in e] for e in before] == [[p.tokens for p in e] for e in after]
    session = Session(again, SessionConfig.for_renderer(renderer, max_new_tokens=2), gate=EntropyGate(100.0))
    record = session.prompt(renderer.turn("w3 w10"))
    assert record.tick == 1 and session.state.device.type == device


@pytest.mark.parametrize("device", DEVICES)
def test_a_population_in_one_batch_on_the_device(device):
    # Members with a leak below 1 step through the stacked leak and keep buffers, which must be on the members'
    # device. The first step's losses (the same parameters) equal each member trained alone on that device;
    # later steps are compared on the CPU (tests/test_batched.py), since a GPU rounds other batch shapes
    # differently and Adam amplifies that (benchmarks/members.py says how much).
    from numerics import float32_tolerance, pass_depth

    from ran.batched import Member, train_members

    settings = [(ReservoirConfig(units=64, seed=0), 0), (ReservoirConfig(units=64, seed=1, leak_rate=0.5), 1),
                (ReservoirConfig(units=64, seed=2, leak_rate=0.3, leak_rate_min=0.05), 2)]
    members = [Member(RanConfig(mode="kv", n_slots=4, readout_seed=readout, reservoir=reservoir),
                      TrainConfig(steps=2, seed=readout), lambda step, generator: TOY.training_episodes(generator))
               for reservoir, readout in settings]
    renderer = Renderer(PassFormat(), tiny_tokenizer())
    trained = train_members(tiny_model("llama").to(device), members, renderer)
    delta = float32_tolerance(VOCAB, 2 * pass_depth(layers=4, passes=4))
    for batched in trained:
        model = wrap(tiny_model("llama").to(device), batched.member.ran)
        alone = train(model, renderer, batched.member.episodes_for_step, batched.member.train, progress=False)
        model.unwrap()
        assert len(batched.result.losses) == len(alone.losses) == 2
        assert abs(batched.result.losses[0] - alone.losses[0]) <= delta * abs(alone.losses[0])
        assert all(parameter.device.type == device for parameter in batched.parameters.values())
