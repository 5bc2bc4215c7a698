"""Probes: known answers (memory of a linear reservoir, stateless baselines, the thread gate), bad input,
activation capture, and the CLI's one-line errors."""

import json

import numpy as np
import pytest
import torch
from tiny_models import tiny_model

from ran.cli import main
from ran.errors import ConfigError
from ran.model import RanConfig, wrap
from ran.probes import PROBES, get_probe
from ran.probes.gate import GateConfig, run_gate, thread_targets
from ran.probes.memory import MemoryConfig, memory_capacity, run_memory
from ran.probes.monitor import MonitorConfig, run_monitor
from ran.probes.order import OrderConfig, item_vectors, run_order
from ran.probes.readout import best_threshold, detection_scores
from ran.probes.sources import ActivationBank, capture_activations, item_texts, passes_since
from ran.probes.sweep import SweepConfig, run_sweep
from ran.reservoir import ReservoirConfig


def test_linear_reservoir_memory_capacity_is_at_most_units():
    units = 16
    config = MemoryConfig(
        reservoir=ReservoirConfig(
            units=units, spectral_radius=0.95, activation="identity", connectivity=1.0, leak_rate=1.0
        ),
        length=6000,
    )
    linear = run_memory(config, [0, 1])
    totals = [run["state"]["total"] for run in linear["per_seed"]]
    assert all(total <= units for total in totals)
    assert all(total > 0.5 * units for total in totals)  # a linear reservoir comes close to K
    tanh = run_memory(
        MemoryConfig(
            reservoir=ReservoirConfig(units=units, spectral_radius=0.95, connectivity=1.0, input_scaling=2.0),
            length=6000,
        ),
        [0],
    )
    assert tanh["per_seed"][0]["state"]["total"] < min(totals)  # saturation costs memory


def test_stateless_memory_baseline_is_zero_on_iid_input():
    rng = np.random.default_rng(0)
    series = rng.uniform(-0.8, 0.8, 5000)
    capacities = memory_capacity(series[:, None], series, max_delay=40)
    test_rows = round(0.2 * len(series))
    assert capacities.shape == (40,)
    assert capacities.mean() < 3 / test_rows  # a squared correlation of independent series is ~1/N
    assert capacities.max() < 15 / test_rows


def test_memory_capacity_recovers_a_delay_line():
    """Features that hold u(t-1) and u(t-3) exactly: MC_1 = MC_3 = 1, the other delays ~0."""
    series = np.random.default_rng(0).uniform(-1, 1, 3000)
    features = np.stack([np.roll(series, 1), np.roll(series, 3)], axis=1)
    capacities = memory_capacity(features, series, max_delay=5)
    np.testing.assert_allclose(capacities[[0, 2]], 1.0, atol=1e-6)
    assert capacities[[1, 3, 4]].max() < 0.01


def test_delay_larger_than_the_series_is_a_clear_error():
    series = np.zeros(100)
    with pytest.raises(ConfigError, match="max delay 500 must be smaller than the series length 100"):
        memory_capacity(series[:, None], series, max_delay=500)
    with pytest.raises(ConfigError, match="max delay"):
        MemoryConfig(max_delay=2000, length=1000)
    with pytest.raises(ConfigError, match="training"):
        MemoryConfig(max_delay=90, length=100)


def test_thread_targets_and_passes_since():
    trigger = np.array([0, 1, 0, 0, 0, 0, 0, 1, 0], dtype=bool)
    np.testing.assert_array_equal(passes_since(trigger), [-1, 0, 1, 2, 3, 4, 5, 0, 1])
    np.testing.assert_array_equal(thread_targets(trigger, 3), [0, 1, 1, 1, 0, 0, 0, 1, 1])


def test_gate_on_state_beats_gate_on_current_input():
    config = GateConfig(reservoir=ReservoirConfig(units=128, spectral_radius=0.9), steps=2000)
    result = run_gate(config, [0, 1])
    for run in result["per_seed"]:
        assert run["state"]["f1"] > run["stateless"]["f1"] + 0.3
    # The current input can only flag the trigger pass itself: recall near 1 / window.
    assert result["summary"]["stateless"]["recall"]["mean"] < 0.4


def test_monitor_state_beats_stateless_probe():
    config = MonitorConfig(reservoir=ReservoirConfig(units=128), steps=1500, drifts=(0.0, 0.4), max_lag=4)
    result = run_monitor(config, [0])
    run = result["per_seed"][0]
    assert run["clock"]["state_r2"] > run["clock"]["stateless_r2"]
    assert run["interrupt"]["state_detectable_passes"] >= 1
    assert run["interrupt"]["stateless_detectable_passes"] == 0
    assert [row["level"] for row in run["drift"]] == [0.0, 0.4]


def test_sweep_finds_the_echo_state_boundary_on_zero_input():
    config = SweepConfig(
        spectral_radii=(0.5, 1.5),
        input_scalings=(0.1,),
        units=(64,),
        sources=("synthetic",),
        steps=200,
        washout=20,
    )
    result = run_sweep(config, [0])
    by_radius = {p["spectral_radius"]: p for p in result["points"]}
    assert by_radius[0.5]["echo_residual_zero_input"] < 1e-6
    assert by_radius[1.5]["echo_residual_zero_input"] > 0.5
    row = result["summary"]["rows"][0]
    assert row["echo_boundary"]["last_radius_forgetting"] == 0.5
    assert row["echo_boundary"]["first_radius_remembering"] == 1.5
    assert len(result["stateless"]) == 1


def test_sweep_saturation_grows_with_input_scaling():
    config = SweepConfig(
        spectral_radii=(0.9,),
        input_scalings=(0.01, 10.0),
        units=(64,),
        sources=("synthetic",),
        steps=120,
        washout=20,
        synthetic_dim=4,
    )
    points = {p["input_scaling"]: p for p in run_sweep(config, [0])["points"]}
    assert points[0.01]["saturation"] == 0.0
    assert points[10.0]["saturation"] > 0.5
    assert points[10.0]["separation"] > points[0.01]["separation"]


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(spectral_radii=()), "grid is empty"),
        (dict(input_scalings=()), "grid is empty"),
        (dict(input_scalings=(0.1, -0.5)), "input scalings must be >= 0"),
        (dict(spectral_radii=(0.0,)), "spectral radii must be > 0"),
        (dict(sources=("nope",)), "sources"),
    ],
)
def test_sweep_config_rejects_bad_grids(bad, match):
    with pytest.raises(ConfigError, match=match):
        SweepConfig(**bad)


def test_negative_input_scaling_is_refused_by_the_reservoir_config():
    with pytest.raises(ConfigError, match="input_scaling must be >= 0"):
        ReservoirConfig(input_scaling=-0.1)


def test_readout_threshold_and_scores():
    scores = np.array([0.9, 0.8, 0.3, 0.2, 0.1])
    labels = np.array([1, 1, 0, 1, 0], dtype=bool)
    assert best_threshold(scores, labels) in (0.8, 0.2)
    assert detection_scores(scores >= 0.8, labels) == pytest.approx((1.0, 2 / 3, 0.8))
    with pytest.raises(ConfigError, match="no positive"):
        best_threshold(scores, np.zeros(5, dtype=bool))


def test_capture_activations_matches_hidden_states_bare_and_wrapped():
    model = tiny_model("llama", seed=0)
    texts = ["hello there", "a much longer piece of text here", "x"]

    class CharTokenizer:  # left padding, as the project's tokenizers use
        def __call__(self, batch, return_tensors, padding):
            ids = [[3 + ord(c) % 100 for c in text] for text in batch]
            width = max(map(len, ids))
            return {
                "input_ids": torch.tensor([[0] * (width - len(i)) + i for i in ids]),
                "attention_mask": torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids]),
            }

    tokenizer = CharTokenizer()
    captured = capture_activations(model, tokenizer, texts, layer=1)
    assert captured.shape == (3, 32)
    for row, text in zip(captured, texts, strict=True):
        ids = tokenizer([text], "pt", True)["input_ids"]
        with torch.no_grad():
            hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[2]  # output of layer 1
        torch.testing.assert_close(row, hidden[0, -1], atol=1e-4, rtol=1e-4)
    wrapped = wrap(model, RanConfig(mode="kv", layer=1, reservoir=ReservoirConfig(units=16)))
    torch.testing.assert_close(capture_activations(wrapped, tokenizer, texts), captured)
    with pytest.raises(ConfigError, match="layer 9 out of range"):
        capture_activations(model, tokenizer, texts, layer=9)


def test_probes_are_registered_by_name():
    assert set(PROBES) == {"sweep", "memory", "gate", "monitor", "order"}
    with pytest.raises(ConfigError, match="did you mean 'memory'"):
        get_probe("memroy")


def test_ran_probe_takes_its_flags_from_the_registry_and_the_old_names_are_the_same_command(tmp_path, capsys):
    from ran.cli import build_parser, leaf_parsers

    parsers = leaf_parsers(build_parser())
    for name, probe in PROBES.items():
        flags = {action.dest for action in parsers[f"probe {name}"]._actions}
        assert {option.field for option in probe.options} <= flags
        if name != "order":  # the four probes older than ran probe keep their names: ran NAME = ran probe NAME
            assert flags == {action.dest for action in parsers[name]._actions}
    assert "order" not in parsers
    argv = ["--source", "synthetic", "--seeds", "0", "1", "--units", "16", "--steps", "300", "--drifts", "0.2"]
    assert main(["probe", "monitor", *argv, "--out", str(tmp_path / "probe")]) == 0
    assert main(["monitor", *argv, "--out", str(tmp_path / "alias")]) == 0
    assert capsys.readouterr().out.count("clock R^2 (no drift)") == 2  # the probe's table, printed by both
    new, old = (json.loads((tmp_path / where / "monitor-synthetic.json").read_text()) for where in ("probe", "alias"))
    assert new["config"]["drifts"] == [0.0, 0.2] and new["config"]["steps"] == 300  # the flags reach the config
    for key in ("config", "seeds", "summary", "per_seed"):
        assert new[key] == old[key]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["sweep", "--source", "synthetic", "--spectral-radii"], "grid is empty"),
        (
            ["sweep", "--source", "synthetic", "--input-scalings", "0.1", "-0.2"],
            "--input-scalings must be a number in [0, 1e+06], got -0.2",
        ),
        (["memory", "--source", "synthetic", "--max-delay", "500", "--length", "100"], "max delay 500"),
        (["gate", "--source", "synthetic", "--input-scaling", "-1"],
         "--input-scaling must be a number in [0, 1e+06], got -1.0"),
        (["monitor", "--source", "synthetic", "--seeds"], "--seeds is empty"),
    ],
)
def test_cli_bad_input_is_one_line_without_traceback(argv, match, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "Traceback" not in error
    assert match in error
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_sweep_writes_json_and_png(tmp_path, capsys):
    argv = [
        "sweep",
        "--source",
        "synthetic",
        "--spectral-radii",
        "0.5",
        "1.5",
        "--input-scalings",
        "0.1",
        "1",
        "--units",
        "32",
        "--steps",
        "80",
        "--washout",
        "10",
        "--seeds",
        "0",
        "1",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    data = json.loads((tmp_path / "sweep-synthetic.json").read_text())
    assert data["seeds"] == [0, 1] and len(data["points"]) == 8 and len(data["stateless"]) == 4
    assert {"ran", "torch", "transformers"} <= set(data["environment"]["versions"])
    assert set(data["environment"]["git"]) == {"commit", "dirty"}
    assert (tmp_path / "sweep-synthetic.png").stat().st_size > 1000
    assert "echo boundary" in capsys.readouterr().out


LINEAR = ReservoirConfig(units=128, activation="identity", leak_rate=1.0, spectral_radius=0.9, input_scaling=0.5)


def test_order_of_lists_of_one_length_reads_both_ways_from_a_linear_reservoir():
    # Every place sits at a fixed delay, and 4 delays x 16 input dimensions fit in 128 units: exact both ways.
    run = run_order(OrderConfig(reservoir=LINEAR, list_length=(4, 4), train_episodes=300, test_episodes=100), [0])
    state = run["per_seed"][0]["state"]
    assert state["read_forward"]["exact"] == state["read_backward"]["exact"] == 1.0
    assert state["forward_place"] == state["backward_place"] == [1.0] * 4


def test_order_of_lists_of_3_to_6_reads_from_the_end_but_not_from_the_start():
    # A linear state is the sum over delays d of W^d W_in x: the k-th item from the end is at delay k - 1 in every
    # list, so backward readouts are exact. The j-th from the start is at delay L - j: one linear map cannot weigh
    # delay 1 above delay 2 (L = 3, j = 2) and delay 2 above delays 1 and 3 (L = 4) at once, so places 2-5 fail.
    run = run_order(OrderConfig(reservoir=LINEAR, train_episodes=800, test_episodes=200), [0])
    seed = run["per_seed"][0]
    assert seed["state"]["backward_place"] == [1.0] * 6 and seed["state"]["read_backward"]["exact"] == 1.0
    assert max(seed["state"]["forward_place"][1:5]) < 0.8 and seed["state"]["read_forward"]["exact"] < 0.5
    # The stateless control, the last item's input, knows the last item and not the first (chance 1/11).
    assert seed["stateless"]["backward_place"][0] == 1.0 and seed["stateless"]["forward_place"][0] < 0.3
    assert run["summary"]["state"]["exact_backward"]["values"] == [1.0]


def test_order_reads_the_model_source_items_the_config_names():
    passes, words = item_texts()
    assert passes[0] == "Item: apple." and words[0] == "Item: apple"  # the sequence task's first item, to the word
    rows = np.arange(12 * 3, dtype=np.float32).reshape(12, 3)
    bank = ActivationBank("m", 1, rows, rows, rows, item_passes=rows, item_words=rows + 100)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(item_vectors(OrderConfig(source="model"), rng, bank), rows)
    np.testing.assert_array_equal(item_vectors(OrderConfig(source="model", read="word", words=6), rng, bank),
                                  rows[:6] + 100)
    with pytest.raises(ConfigError, match="needs captured item activations"):
        item_vectors(OrderConfig(source="model"), rng, ActivationBank("m", 1, rows, rows, rows))
    with pytest.raises(ConfigError, match="words 13: the model source has 12 item passes"):
        item_vectors(OrderConfig(source="model", words=13), rng, bank)


def test_every_committed_probe_file_renders_through_its_probe(tmp_path):
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parent.parent / "results" / "probes").rglob("*.json"))
    assert len(files) >= 12
    for path in files:
        record = json.loads(path.read_text())
        probe = get_probe(record["probe"])
        assert probe.table(record).count("\n") >= 2, path
        probe.plot(record, tmp_path / f"{path.parent.name}-{path.stem}.png")
    # The figures docs/probes.md gives for the order probe: the battery's reservoir, the held-word settings, the band.
    orders = {path.parent.name: json.loads(path.read_text())["summary"]["state"]
              for path in files if path.name == "order-model.json"}
    forward = {name: round(summary["exact_forward"]["mean"], 3) for name, summary in orders.items()}
    assert forward == {"battery": 0.335, "held-word": 0.136, "band-pass": 1.0, "band-word": 1.0,
                       "band-pass-identity": 0.106}
