"""Populations on tiny random models: the grid, refusals, resume after SIGKILL, Ray vs in-process, the ANOVA,
and the trained-GRU baseline."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from killing import kill_after_records
from tiny_models import tiny_model, tiny_tokenizer

from ran.cli import main
from ran.engine.backends import split_address
from ran.engine.report import read_results
from ran.engine.store import RecordStore
from ran.errors import ConfigError
from ran.fileio import atomic_write
from ran.model import RanConfig, wrap
from ran.passes import PassFormat, Renderer
from ran.population import Backend, PopulationConfig, member_key, members, run_population
from ran.population.analysis import two_way_anova
from ran.population.grid import parse_hyper, parse_seeds
from ran.population.plot import plot_population
from ran.population.report import build_report, comparable
from ran.recurrence import GRUConfig, GRURecurrence, make_recurrence
from ran.reservoir import Reservoir, ReservoirConfig
from ran.runner import evaluate
from ran.tasks import RecallTask
from ran.training import TrainConfig, train

TOY = RecallTask(keys=("w10", "w11", "w12", "w13"), store_template="w3 w4 {key} w5", recall_template="w6 w7",
                 train_distractors=("w20 w21",), eval_distractors=("w30",))
FORMAT = PassFormat(idle_text="w9")  # the word-level test tokenizer has no newline token
SMALL = RanConfig(n_slots=4, reservoir=ReservoirConfig(units=64, input_scaling=1.0))
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny Llama and its tokenizer saved as a model directory: what a Ray worker can load by name."""
    directory = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama").save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def task_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("task") / "toy.json"
    path.write_text(json.dumps(TOY.to_dict()))
    return path


def population(model: Path, **overrides) -> PopulationConfig:
    settings = dict(model=str(model), task=TOY, ran=SMALL, train=TrainConfig(steps=30, learning_rate=3e-2),
                    format=FORMAT, reservoir_seeds=(0, 1), train_seeds=(0, 1), device="cpu")
    return PopulationConfig(**{**settings, **overrides})


def cli(model: Path, task: Path, out: Path, *extra: str) -> list[str]:
    return ["population", "--model", str(model), "--task-file", str(task), "--idle-text", "w9", "--units", "64",
            "--input-scaling", "1.0", "--slots", "4", "--steps", "40", "--lr", "3e-2", "--device", "cpu",
            "--out", str(out), "--no-progress", *extra]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ----- the grid --------------------------------------------------------------------------------------------
def test_grid_crosses_seeds_hyper_parameters_and_recurrences():
    config = population("m", reservoir_seeds=(0, 1), train_seeds=(3, 4, 5), hyper={"leak_rate": (0.5, 1.0)},
                        recurrences=("reservoir", "gru"))
    everyone = members(config)
    assert config.size == len(everyone) == 2 * 2 * 2 * 3
    assert len({member_key(m) for m in everyone}) == len(everyone)
    for member in everyone:
        assert member["ran"]["reservoir"]["seed"] == member["reservoir_seed"]
        assert member["ran"]["readout_seed"] == member["train"]["seed"] == member["train_seed"]
        assert member["ran"]["reservoir"]["leak_rate"] == member["point"]["leak_rate"]
    assert [member_key(m) for m in members(config)] == [member_key(m) for m in everyone]  # stable keys
    longer = population("m", train=TrainConfig(steps=31, learning_rate=3e-2))
    assert member_key(members(longer)[0]) != member_key(members(population("m"))[0])


def test_seed_and_grid_parsing():
    assert parse_seeds(["0-3", "7"], "reservoir") == (0, 1, 2, 3, 7)
    assert parse_hyper(["units=32,64", "learning_rate=0.1"]) == {"units": (32, 64), "learning_rate": (0.1,)}
    for bad in (["3-1"], ["x"]):
        with pytest.raises(ConfigError):
            parse_seeds(bad, "reservoir")
    for bad in (["units="], ["colour=1"], ["units=1.5"]):
        with pytest.raises(ConfigError):
            parse_hyper(bad)
    with pytest.raises(ConfigError, match="empty"):
        population("m", reservoir_seeds=())
    with pytest.raises(ConfigError, match="repeat"):
        population("m", train_seeds=(1, 1))
    assert split_address("ray://10.0.0.1:10001") == ("10.0.0.1", 10001)
    with pytest.raises(ConfigError):
        split_address("localhost")


def _refused(capsys, argv: list[str]) -> str:
    started = time.perf_counter()
    assert main(argv) == 2
    seconds = time.perf_counter() - started
    error = capsys.readouterr().err.strip()
    assert error.startswith("ran population: error:") and "\n" not in error and "Traceback" not in error
    return error, seconds


def test_bad_populations_are_refused_with_one_line(capsys, tmp_path, task_file):
    model = str(tmp_path / "no-model-needed")  # every refusal comes before anything loads
    error, _ = _refused(capsys, cli(model, task_file, tmp_path, "--grid", "units="))
    assert "empty" in error
    error, _ = _refused(capsys, cli(model, task_file, tmp_path, "--reservoir-seeds", "0-16", "--train-seeds", "0-3"))
    assert "68 runs" in error and "--yes" in error
    error, seconds = _refused(capsys, cli(model, task_file, tmp_path, "--ray-address", f"127.0.0.1:{free_port()}"))
    assert "no Ray cluster answers" in error and seconds < 5
    error, _ = _refused(capsys, cli(model, task_file, tmp_path, "--workers", "2", "--ray-address", "127.0.0.1:1"))
    assert "not both" in error
    error, _ = _refused(capsys, cli(model, task_file, tmp_path, "--task", "recal"))
    assert "did you mean 'recall'" in error
    assert not (tmp_path / "records").exists()


# ----- records on disk ---------------------------------------------------------------------------------------
def test_records_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    atomic_write(target, '{"old": 1}')

    def crash(descriptor):  # the process dies after writing, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr("ran.fileio.os.fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, '{"new": 2}')
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    (tmp_path / ".b.json.123.tmp").write_text('{"torn')
    store = RecordStore(tmp_path)
    assert store.keys() == {"a"}
    assert store.remove_temporaries() == 1


def test_a_killed_population_resumes_without_redoing_finished_runs(capsys, tmp_path, model_dir, task_file):
    interrupted, whole = tmp_path / "interrupted", tmp_path / "whole"
    argv = cli(model_dir, task_file, interrupted, "--reservoir-seeds", "0-2", "--train-seeds", "0-2")
    records = interrupted / "records"
    left = kill_after_records(argv, records, 2, timeout=60, cwd=REPO)
    finished = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in left}
    assert 2 <= len(finished) < 9, "the population should be killed part-way"
    for path in records.glob("*.json"):
        json.loads(path.read_text())  # no torn record

    assert main(argv) == 0
    output = capsys.readouterr().out
    assert f"9 runs, {len(finished)} already finished, {9 - len(finished)} to run" in output
    for name, identity in finished.items():  # finished runs were not redone
        path = records / name
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == identity
    assert main(cli(model_dir, task_file, whole, "--reservoir-seeds", "0-2", "--train-seeds", "0-2",
                    "--track", "tensorboard", "--track-dir", str(tmp_path / "tb"))) == 0
    assert len(list((tmp_path / "tb" / "whole").iterdir())) == 9  # each run logged as it arrived
    resumed = read_results(interrupted / "population.json", "population")  # the shared schema, read back
    uninterrupted = read_results(whole / "population.json", "population")
    assert (resumed["schema"], resumed["experiment"], resumed["model"]) == ("ran.results/1", "population",
                                                                          resumed["config"]["model"])
    assert [row["metrics"] for row in resumed["summary"]] == [group["metrics"] for group in resumed["groups"]]
    assert resumed["runs_found"] == 9 and set(resumed["git"]) == {"commit", "dirty"}
    assert all(set(json.loads(p.read_text())["git"]) == {"commit", "dirty"} for p in records.glob("*.json"))
    assert comparable(resumed) == comparable(uninterrupted)
    assert (interrupted / "population.txt").read_text() == (whole / "population.txt").read_text()
    assert (interrupted / "population.png").stat().st_size > 0


# ----- backends ----------------------------------------------------------------------------------------------
def _records_by_key(directory: Path) -> dict[str, dict]:
    store = RecordStore(directory / "records")
    return {key: {k: store.read(key)[k] for k in ("member", "result")} for key in sorted(store.keys())}


def test_local_ray_workers_give_the_in_process_records(tmp_path, model_dir):
    pytest.importorskip("ray", reason="Ray is not installed (make setup installs the [ray] extra)")
    config = population(model_dir, recurrences=("reservoir", "gru"))
    in_process = run_population(config, tmp_path / "in-process", progress=False, log=lambda line: None)
    on_ray = run_population(config, tmp_path / "ray", Backend(workers=2), progress=False, log=lambda line: None)
    assert on_ray["runs_found"] == in_process["runs_found"] == 8
    assert _records_by_key(tmp_path / "ray") == _records_by_key(tmp_path / "in-process")
    assert comparable(on_ray) == comparable(in_process)


@pytest.mark.slow  # ~50 s: a cluster started by ray start; Ray stays in the default run by the local workers
def test_a_ray_cluster_started_with_ray_start_gives_the_same_records(tmp_path, model_dir, task_file):
    pytest.importorskip("ray", reason="Ray is not installed (make setup installs the [ray] extra)")
    port = free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen([str(ray_cli), "start", "--head", f"--port={port}", "--num-cpus=2", "--block",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert head.poll() is None, "ray start --head exited"
                time.sleep(0.2)
        argv = cli(model_dir, task_file, tmp_path / "cluster", "--train-seeds", "0-1", "--reservoir-seeds", "0-1")
        # timeout: a guard against a hang (on portable kernels with a busy machine the run took over 180 s)
        done = subprocess.run([sys.executable, "-m", "ran", *argv, "--ray-address", f"127.0.0.1:{port}"], cwd=REPO,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        os.killpg(head.pid, signal.SIGINT)  # ray start --block stops its cluster on SIGINT
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
    assert main(cli(model_dir, task_file, tmp_path / "local", "--train-seeds", "0-1", "--reservoir-seeds", "0-1")) == 0
    assert len(_records_by_key(tmp_path / "cluster")) == 4
    assert _records_by_key(tmp_path / "cluster") == _records_by_key(tmp_path / "local")


# ----- statistics --------------------------------------------------------------------------------------------
def synthetic_records(values: dict[tuple[int, int], float], recurrence: str = "reservoir") -> list[dict]:
    """Records in the on-disk layout with the given carried metric per (reservoir seed, training seed)."""
    records = []
    for (reservoir_seed, train_seed), value in values.items():
        score = {"value": value, "among_keys": value, "groups": [{"filler": "distractor", "delay": 0,
                                                                  "recall": value, "among_keys": value}]}
        member = {"recurrence": recurrence, "point": {}, "reservoir_seed": reservoir_seed, "train_seed": train_seed}
        result = {"scores": {"carried": score, "wiped": {**score, "value": 0.0}, "untrained": {**score, "value": 0.0}},
                  "loss_curve": [2.0, 1.0 - value]}
        records.append({"key": f"{recurrence}-{reservoir_seed}-{train_seed}", "member": member, "result": result})
    return records


def test_anova_finds_a_strong_reservoir_effect_and_no_effect_in_noise():
    noise = np.random.default_rng(0)
    strong = {(r, t): 0.1 * r + noise.normal(0, 0.01) for r in range(6) for t in range(4)}
    report = build_report({"model": "synthetic", "task": {"name": "recall"}}, [], synthetic_records(strong))
    (group,) = report["groups"]
    factors = {f["factor"]: f for f in group["anova"]["carried"]["factors"]}
    assert factors["reservoir_seed"]["p"] < 0.01 and factors["reservoir_seed"]["eta_squared"] > 0.9
    assert factors["train_seed"]["p"] > 0.05
    pick = group["recommended_reservoir"]
    assert pick["reservoir_seed"] == 5 and pick["significant"]
    assert pick["ci95"][0] < pick["mean"] < pick["ci95"][1]

    null = {(r, t): noise.normal(0.5, 0.1) for r in range(6) for t in range(4)}
    factors = {f["factor"]: f for f in two_way_anova(build_report({"model": "m", "task": {"name": "recall"}}, [],
               synthetic_records(null))["runs"], "carried")["factors"]}
    assert factors["reservoir_seed"]["p"] > 0.05 and factors["train_seed"]["p"] > 0.05


def test_anova_matches_the_textbook_formulas_and_explains_a_constant_metric():
    table = np.array([[0.2, 0.5, 0.4], [0.6, 0.9, 0.7], [0.1, 0.3, 0.5], [0.8, 0.6, 0.9]])  # reservoir x training
    values = {(r, t): float(table[r, t]) for r in range(4) for t in range(3)}
    rows = build_report({"model": "m", "task": {"name": "recall"}}, [], synthetic_records(values))["runs"]
    anova = two_way_anova(rows, "carried")
    grand = table.mean()
    ss_rows = 3 * ((table.mean(axis=1) - grand) ** 2).sum()
    ss_columns = 4 * ((table.mean(axis=0) - grand) ** 2).sum()
    ss_total = ((table - grand) ** 2).sum()
    ss_residual = ss_total - ss_rows - ss_columns
    factors = {f["factor"]: f for f in anova["factors"]}
    assert factors["reservoir_seed"]["F"] == pytest.approx((ss_rows / 3) / (ss_residual / 6))
    assert factors["train_seed"]["F"] == pytest.approx((ss_columns / 2) / (ss_residual / 6))
    assert factors["reservoir_seed"]["eta_squared"] == pytest.approx(ss_rows / ss_total)

    constant = build_report({"model": "m", "task": {"name": "recall"}}, [],
                            synthetic_records({(r, t): 1.0 for r in range(3) for t in range(2)}))
    assert "no variance" in constant["groups"][0]["anova"]["carried"]["note"]


def test_gru_is_compared_with_the_reservoir_on_the_same_seeds_and_the_figure_reads_the_json(tmp_path):
    seeds = [(r, t) for r in range(3) for t in range(3)]
    records = (synthetic_records({s: 0.5 + 0.01 * i for i, s in enumerate(seeds)}) +
               synthetic_records({s: 0.7 + 0.01 * i for i, s in enumerate(seeds)}, recurrence="gru"))
    report = build_report({"model": "m", "task": {"name": "recall"}}, [], records)
    (comparison,) = report["comparisons"]
    difference = comparison["metrics"]["carried"]["gru_minus_reservoir"]
    assert comparison["n_pairs"] == 9 and difference["mean"] == pytest.approx(0.2)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    assert plot_population(read_results(path, "population"), tmp_path / "population.png").stat().st_size > 0


# ----- the trained-recurrence baseline -------------------------------------------------------------------------
def test_gru_recurrence_has_the_reservoir_interface():
    gru = GRURecurrence(GRUConfig(units=16, seed=3), input_dim=8)
    assert gru.units == 16 and gru.w_in.device.type == "cpu"
    assert gru.fingerprint == GRURecurrence(GRUConfig(units=16, seed=3), 8).fingerprint
    assert gru.fingerprint != GRURecurrence(GRUConfig(units=16, seed=4), 8).fingerprint
    assert torch.equal(gru.w_in, GRURecurrence(GRUConfig(units=16, seed=3), 8).w_in)  # seeded, not global RNG
    state = gru.initial_state(2)
    assert state.shape == (2, 16)
    nxt = gru.step(state, torch.randn(2, 8, dtype=torch.bfloat16))
    assert nxt.shape == (2, 16) and nxt.dtype == torch.float32
    assert all(p.requires_grad for p in gru.parameters())
    assert gru.run(torch.randn(5, 2, 8)).shape == (5, 2, 16)
    assert isinstance(make_recurrence(SMALL, 8), Reservoir)
    made = make_recurrence(SMALL, 8, kind="gru")
    assert isinstance(made, GRURecurrence) and made.units == 64 and made.config.input_scaling == 1.0
    with pytest.raises(ConfigError):
        make_recurrence(SMALL, 8, kind="lstm")


@pytest.fixture
def one_thread():
    """Runs use one CPU thread, as population runs do (and two threads only contend on a 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_gru_baseline_trains_through_the_carried_state(one_thread):
    model = wrap(tiny_model("llama"), SMALL)
    model.reservoir = make_recurrence(model.config, model.geometry.hidden_size, kind="gru")  # until RanConfig has it
    initial = [p.detach().clone() for p in model.reservoir.parameters()]
    renderer = Renderer(FORMAT, tiny_tokenizer())
    result = train(model, renderer, lambda step, generator: TOY.training_episodes(generator),
                   TrainConfig(steps=60, learning_rate=3e-2), progress=False)
    assert result.losses[-1] < 0.5 * result.losses[0]
    assert any(not torch.equal(a, b) for a, b in zip(initial, model.reservoir.parameters(), strict=True))
    carried = evaluate(model, renderer, TOY, carry=True)["value"]
    wiped = evaluate(model, renderer, TOY, carry=False)["value"]
    assert carried > wiped
    model.unwrap()
