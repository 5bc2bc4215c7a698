"""``ran crosspass`` and ``ran eval`` end to end on a tiny local model directory."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from killing import kill_after_records
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny_models import tiny_model, tiny_tokenizer

from ran.engine.report import read_results


def ran(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "ran", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama").save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("task") / "task.json"
    path.write_text(json.dumps({"keys": ["w10", "w11", "w12", "w13"], "store_template": "w3 w4 {key} w5",
                                "recall_template": "w6 w7", "train_distractors": ["w20 w21", "w22"],
                                "eval_distractors": ["w30 w31"]}))
    return path


def test_crosspass_writes_results_and_eval_reproduces(tiny_dir, task_file, tmp_path):
    out, saved = tmp_path / "results", tmp_path / "artifacts"
    result = ran("crosspass", "--model", str(tiny_dir), "--task", str(task_file), "--units", "128",
                 "--input-scaling", "1.0", "--slots", "4", "--steps", "120", "--lr", "0.03", "--seeds", "0", "1",
                 "--eval-delays", "0", "1", "3", "--out", str(out), "--save", str(saved), "--no-progress",
                 "--track", "tensorboard", "--track-dir", str(tmp_path / "tb"))
    assert result.returncode == 0, result.stderr
    results = read_results(out / "crosspass.json", "crosspass")  # the shared schema, read back by its reader
    assert (results["schema"], results["experiment"]) == ("ran.results/1", "crosspass")
    assert results["kind"] == "recall" and results["varied"] == ["mode"] and results["model"] == str(tiny_dir)
    assert (out / "crosspass.png").stat().st_size > 0
    assert set(results["git"]) == {"commit", "dirty"}  # the code that made the figures
    assert (out / "crosspass-retention.png").stat().st_size > 0
    assert [run["seed"] for run in results["runs"]] == [0, 1]
    for run in results["runs"]:
        assert set(run["recall"]) == {"carried", "wiped", "untrained"}
        assert len(run["predictions"]) == 4 * 3 and len(run["loss_curve"]) == 120
        assert run["recall"]["carried"] == 1.0 and run["recall"]["wiped"] <= 0.25
        assert [(p["filler"], p["delay"]) for p in run["retention"]] == [("distractor", d) for d in (0, 1, 3)]
        assert all(p["recall"]["wiped"] <= 0.25 for p in run["retention"])
    summary = results["summary"][0]["recall"]
    assert summary["carried"]["values"] == [r["recall"]["carried"] for r in results["runs"]]
    assert summary["carried"]["n"] == 2 and len(summary["carried"]["ci95"]) == 2  # ran.stats.seed_summary
    tracked = [Path(run["tracked"]) for run in results["runs"]]  # one TensorBoard run per seed
    assert sorted(tracked) == sorted((tmp_path / "tb" / "crosspass").iterdir())
    events = EventAccumulator(str(tracked[1]))
    events.Reload()
    curve = events.Scalars("carried/by_delay/split=trained/filler=distractor/recall")
    assert [e.step for e in curve] == [0, 1, 3] and len(events.Scalars("loss/train")) == 120
    artifact = saved / "kv-keys4-scaling1-seed1"
    evaluated = ran("eval", str(artifact))
    assert evaluated.returncode == 0, evaluated.stderr
    assert "reproduced the saved recall" in evaluated.stdout


@pytest.mark.smollm
def test_recall_on_the_embedded_model(smollm2):
    """One seed of the headline result, in the default run (the README reports three)."""
    from ran.crosspass import specs_for
    from ran.model import RanConfig
    from ran.reservoir import ReservoirConfig
    from ran.runner import run_one
    from ran.tasks import RecallTask
    from ran.training import TrainConfig

    base, tokenizer = smollm2
    (spec,) = specs_for("smollm2-135m", RanConfig(reservoir=ReservoirConfig(units=512, input_scaling=0.5)),
                        RecallTask(), TrainConfig(), [0])
    record = run_one(spec, base, tokenizer, progress=False)
    assert record["scores"]["carried"]["value"] >= 0.95
    assert record["scores"]["wiped"]["value"] <= 0.34


def test_eval_reads_artifacts_saved_before_retention(tiny_dir, task_file, tmp_path):
    """An artifact of ran.crosspass/1 (crosspass.json, one hop, no pass format) is still scored by ran eval."""
    saved = tmp_path / "artifacts"
    assert ran("crosspass", "--model", str(tiny_dir), "--task", str(task_file), "--units", "32", "--steps", "2",
               "--seeds", "0", "--eval-delays", "0", "--out", str(tmp_path), "--save", str(saved),
               "--no-progress").returncode == 0
    artifact = next(saved.iterdir())
    run = json.loads((artifact / "run.json").read_text())
    legacy = {"schema": "ran.crosspass-artifact/1", "model": run["model"],
              "task": {"keys": run["task"]["keys"], "store_template": "w3 w4 {key} w5",
                       "recall_template": "w6 w7", "key_prefix": " "},
              "train": run["train"], "recall": {c: run["scores"][c]["value"] for c in ("carried", "wiped")}}
    (artifact / "run.json").unlink()
    (artifact / "crosspass.json").write_text(json.dumps(legacy))
    description = json.loads((artifact / "ran_config.json").read_text())
    for key in ("pass_format", "files", "checksum"):  # none of these existed then
        del description[key]
    (artifact / "ran_config.json").write_text(json.dumps(description))
    result = ran("eval", str(artifact))
    assert result.returncode == 0, result.stderr
    assert "reproduced the saved recall" in result.stdout


def test_eval_scores_an_artifact_on_keys_it_never_trained_on(tiny_dir, task_file, tmp_path):
    saved = tmp_path / "artifacts"
    assert ran("crosspass", "--model", str(tiny_dir), "--task", str(task_file), "--units", "32", "--steps", "2",
               "--seeds", "0", "--eval-delays", "0", "--out", str(tmp_path), "--save", str(saved),
               "--no-progress").returncode == 0
    result = ran("eval", str(next(saved.iterdir())), "--key-list", "w40,w41,w42", "--eval-delays", "0", "2",
                 "--json", str(tmp_path / "eval.json"))
    assert result.returncode == 0, result.stderr
    assert "heldout  distractor      2" in result.stdout
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["switches"] is None and f"carried: {written['scores']['carried']['value']:.2f}" in result.stdout


def test_template_flags_set_the_task_and_a_task_file_still_wins(tiny_dir, task_file, tmp_path):
    common = ["crosspass", "--model", str(tiny_dir), "--units", "32", "--steps", "2", "--seeds", "0",
              "--eval-delays", "0", "--key-list", "w10,w11", "--no-progress"]
    flags = ran(*common, "--store-template", "w3 {key}", "--recall-template", "w6", "--out", str(tmp_path / "a"))
    assert flags.returncode == 0, flags.stderr
    task = json.loads((tmp_path / "a" / "crosspass.json").read_text())["config"]["task"]
    assert (task["store_template"], task["recall_template"]) == ("w3 {key}", "w6")
    from_file = ran(*common, "--store-template", "w3 {key}", "--task", str(task_file), "--out", str(tmp_path / "b"))
    assert from_file.returncode == 0, from_file.stderr
    task = json.loads((tmp_path / "b" / "crosspass.json").read_text())["config"]["task"]
    assert task["store_template"] == "w3 w4 {key} w5"


def test_held_out_keys_get_their_own_retention_table(tiny_dir, tmp_path):
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"keys": ["w10", "w11"], "heldout_keys": ["w12"], "store_template": "w3 {key}",
                                "recall_template": "w6", "train_distractors": ["w20"], "eval_distractors": ["w30"]}))
    result = ran("crosspass", "--model", str(tiny_dir), "--task", str(task), "--units", "32", "--steps", "2",
                 "--seeds", "0", "--eval-delays", "0", "2", "--out", str(tmp_path), "--no-progress")
    assert result.returncode == 0, result.stderr
    tables = result.stdout.split("\nretention (")[1:]
    assert [t.split(")")[0] for t in tables] == ["kv", "kv, held-out keys"]
    for table in tables:
        rows = [line.split() for line in table.splitlines() if line.strip().startswith("distractor")]
        assert [row[1] for row in rows] == ["0", "2"]


def _crosspass(tiny_dir, task_file, out, *extra):
    return ["crosspass", "--model", str(tiny_dir), "--task", str(task_file), "--units", "32", "--steps", "30",
            "--seeds", "0", "1", "2", "--out", str(out), "--no-progress", "--threads", "1", *extra]


def _comparable(results):
    """A results file without what measures the machine or the moment."""
    runs = [{k: v for k, v in run.items()
             if k not in ("train_seconds", "episodes_per_second", "passes_per_second", "git")}
            for run in results["runs"]]
    return runs, results["summary"]


def test_a_killed_crosspass_resumes_on_the_engine(tiny_dir, task_file, tmp_path):
    interrupted, whole = tmp_path / "interrupted", tmp_path / "whole"
    records = interrupted / "crosspass.records"
    left = kill_after_records(_crosspass(tiny_dir, task_file, interrupted), records, 1)
    finished = {p.name: p.stat().st_mtime_ns for p in left}
    assert 1 <= len(finished) < 3, "the run should be killed part-way"
    assert not (interrupted / "crosspass.json").exists()
    older = records / sorted(finished)[0]  # as if an older commit had run it: its run must keep that commit
    record = json.loads(older.read_text())
    record["git"] = {"commit": "f" * 40, "dirty": False}
    older.write_text(json.dumps(record))
    finished[older.name] = older.stat().st_mtime_ns

    resumed = ran(*_crosspass(tiny_dir, task_file, interrupted))
    assert resumed.returncode == 0, resumed.stderr
    assert f"3 runs, {len(finished)} already finished, {3 - len(finished)} to run" in resumed.stdout
    assert {name: (records / name).stat().st_mtime_ns for name in finished} == finished  # not redone
    report = json.loads((interrupted / "crosspass.json").read_text())
    commits = [run["git"]["commit"] for run in report["runs"]]
    assert commits.count("f" * 40) == 1 and commits.count(report["git"]["commit"]) == 2
    assert ran(*_crosspass(tiny_dir, task_file, whole)).returncode == 0
    assert _comparable(json.loads((interrupted / "crosspass.json").read_text())) == \
        _comparable(json.loads((whole / "crosspass.json").read_text()))
    again = ran(*_crosspass(tiny_dir, task_file, interrupted))  # finished: replaced only when asked
    assert again.returncode == 2 and "--overwrite" in again.stderr
    fresh = ran(*_crosspass(tiny_dir, task_file, interrupted, "--overwrite"))
    assert fresh.returncode == 0 and "3 runs, 0 already finished, 3 to run" in fresh.stdout


@pytest.mark.slow  # Ray's start and three workers importing torch: minutes on 2 busy cores
def test_crosspass_on_local_ray_workers_gives_the_in_process_results(tiny_dir, task_file, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (make setup installs the [ray] extra)")
    on_ray = ran(*_crosspass(tiny_dir, task_file, tmp_path / "ray", "--workers", "2"))
    assert on_ray.returncode == 0, on_ray.stderr
    assert "2 local Ray workers" in on_ray.stdout
    in_process = ran(*_crosspass(tiny_dir, task_file, tmp_path / "here"))
    assert in_process.returncode == 0, in_process.stderr
    assert _comparable(json.loads((tmp_path / "ray" / "crosspass.json").read_text())) == \
        _comparable(json.loads((tmp_path / "here" / "crosspass.json").read_text()))


def test_runs_trained_in_one_batch_give_the_records_of_runs_trained_alone(tiny_dir, task_file, tmp_path):
    alone = ran(*_crosspass(tiny_dir, task_file, tmp_path / "alone"))
    assert alone.returncode == 0, alone.stderr
    batched = ran(*_crosspass(tiny_dir, task_file, tmp_path / "batched", "--batch-runs", "3"))
    assert batched.returncode == 0, batched.stderr
    assert "trained in 1 batch of 3 runs (--batch-runs 3)" in batched.stdout
    (runs_alone, summary_alone), (runs_batched, summary_batched) = (
        _comparable(json.loads((tmp_path / name / "crosspass.json").read_text())) for name in ("alone", "batched"))
    assert summary_batched == summary_alone  # every score, carried / wiped / untrained, per delay
    for one, other in zip(runs_batched, runs_alone, strict=True):
        # float32 sums in other batch shapes: ~1e-6 relative over 30 steps (tests/test_batched.py)
        assert one.pop("loss_curve") == pytest.approx(other.pop("loss_curve"), rel=1e-4)
        assert one == other  # predictions, configs, fingerprints
    records = [json.loads(path.read_text()) for path in (tmp_path / "batched" / "crosspass.records").glob("*.json")]
    assert sorted(record["timing"]["batch"] for record in records) == [3, 3, 3]


def test_the_number_of_keys_is_a_grid_axis_and_capacity_is_that_axis(tiny_dir, task_file, tmp_path):
    common = ["crosspass", "--model", str(tiny_dir), "--task", str(task_file), "--units", "32", "--steps", "2",
              "--seeds", "0", "--eval-delays", "0", "--no-progress", "--threads", "1"]
    grid = ran(*common, "--grid", "keys=2,3", "leak_rate=0.5,1.0", "--out", str(tmp_path / "grid"))
    assert grid.returncode == 0, grid.stderr
    results = json.loads((tmp_path / "grid" / "grid-keys-leak_rate.json").read_text())
    points = [(run["n_keys"], run["ran_config"]["reservoir"]["leak_rate"]) for run in results["runs"]]
    assert sorted(points) == [(2, 0.5), (2, 1.0), (3, 0.5), (3, 1.0)]
    assert results["varied"] == ["n_keys", "leak_rate"]
    capacity = ran(*common, "--capacity", "2", "3", "--out", str(tmp_path / "capacity"))
    assert capacity.returncode == 0, capacity.stderr
    sized = json.loads((tmp_path / "capacity" / "capacity-kv.json").read_text())
    assert sized["kind"] == "capacity" and [run["n_keys"] for run in sized["runs"]] == [2, 3]
    assert [sorted({p["key"] for p in run["predictions"]}) for run in sized["runs"]] == [
        ["w10", "w11"], ["w10", "w11", "w12"]]  # the first N of the task file's keys (not the built-in pool's)
    too_many = ran(*common, "--capacity", "5", "--out", str(tmp_path / "too-many"))  # the file gives 4 keys
    assert too_many.returncode == 2 and "choose 1..4 (the keys given)" in too_many.stderr
