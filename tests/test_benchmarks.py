"""The benchmark harness on tiny sizes: the reservoir benchmark runs and writes its JSON and table."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ sits beside src/, not in it

from benchmarks import bench_reservoir  # noqa: E402
from benchmarks.common import SCHEMA, interleave, ratio, write_result  # noqa: E402
from benchmarks.run import summary_markdown  # noqa: E402


def test_interleave_rotates_order_and_ratio_is_ratio_of_medians():
    calls = []
    candidates = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    seconds = interleave(candidates, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert [len(v) for v in seconds.values()] == [3, 3]
    value = ratio([2.0, 4.0, 6.0], [1.0, 1.0, 2.0])
    assert value == {"median": 4.0, "min": 2.0, "max": 4.0}


def test_quick_reservoir_benchmark_writes_its_json(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_reservoir, "reservoirpy_available", lambda: False)
    outcome = bench_reservoir.run(quick=True, sizes=[64, 600], batches=[1, 4], fresh_processes=False)
    path = write_result(outcome["name"], outcome["config"], outcome["results"], outcome["summary"],
                        outcome["started"], outcome["load_before"], tmp_path, outcome["notes"])
    document = json.loads(path.read_text())
    assert document["schema"] == SCHEMA and document["benchmark"] == "reservoir"
    assert {"cores", "cpu_model", "load_average", "device"} <= set(document["machine"])
    assert {"ran", "torch", "numpy", "scipy"} <= set(document["versions"])
    commit = document["git"]["commit"]  # None outside a git checkout
    assert commit is None or len(commit) == 40
    assert any("reservoirpy is not importable" in note for note in document["notes"])
    builds = document["results"]["builds"]
    assert [b["units"] for b in builds] == [64, 600]
    for build in builds:
        seconds = build["seconds"]["ran"]
        assert 0 < seconds["min"] <= seconds["median"] <= seconds["max"] and seconds["n"] == 3
    updates = document["results"]["updates"]
    assert [(u["units"], u["batch"]) for u in updates] == [(64, 1), (64, 4), (600, 1), (600, 4)]
    assert all(u["updates_per_second"]["ran"]["median"] > 0 for u in updates)
    rows = {(r["benchmark"], r["case"]) for r in document["summary"]}
    assert ("reservoir build", "K=600, connectivity 0.1") in rows
    table = summary_markdown([document])
    assert "| reservoir build | cpu | K=600, connectivity 0.1 |" in table and "CPU only" in table
    assert document["machine"]["cpu_model"] in table and f"commit {(commit or 'unknown')[:10]}" in table
    # benchmarks from two machines: the header names each one's CPU, date and commit, no single machine
    other = json.loads(json.dumps(document))
    other["benchmark"], other["machine"]["cpu_model"], other["git"]["commit"] = "training", "Other CPU", "f" * 40
    mixed = summary_markdown([document, other]).splitlines()[0]
    assert "reservoir: " in mixed and "training: " in mixed and "Other CPU" in mixed and "ffffffffff" in mixed
    assert "torch thread(s)" not in mixed
    other["git"] = {"commit": None, "dirty": None}  # written outside a git checkout
    assert "commit unknown" in summary_markdown([document, other]).splitlines()[0]


@pytest.mark.skipif(not bench_reservoir.reservoirpy_available(), reason="reservoirpy not installed")
def test_reservoirpy_runs_the_same_function():
    outcome = bench_reservoir.run(quick=True, sizes=[64], batches=[3], fresh_processes=False)
    (case,) = outcome["results"]["updates"]
    assert case["max_abs_state_difference"] < 1e-4


def test_gpu_check_plans_its_steps_and_reads_their_results(tmp_path):
    from benchmarks import gpu_check

    plan = dict(gpu_check.steps("cuda:0", tmp_path))
    assert "--device" in plan["headline"] and "cuda:0" in plan["benchmarks"]
    assert gpu_check.pytest_counts("== 12 passed, 3 skipped, 1 failed in 4.2s ==") == {
        "passed": 12, "failed": 1, "skipped": 3, "errors": 0}
    (tmp_path / "headline").mkdir()
    (tmp_path / "headline" / "crosspass.json").write_text(json.dumps({
        "schema": "ran.results/1", "experiment": "crosspass",
        "summary": [{"recall": {c: {"mean": v} for c, v in (("carried", 1.0), ("wiped", 0.0), ("untrained", 0.0))},
                     "seeds": [0, 1, 2]}],
        "seconds": 9.5, "runs": [{"train_seconds": 3.0, "device": "cuda:0", "dtype": "bfloat16"}] * 3,
        "machine": {}, "versions": {}}))
    (tmp_path / "retention").mkdir()
    (tmp_path / "retention" / "crosspass.json").write_text(json.dumps({
        "schema": "ran.results/1", "experiment": "crosspass", "seconds": 140.0, "machine": {}, "versions": {},
        "summary": [{"seeds": [0, 1], "retention": [
            {"split": split, "filler": "distractor", "delay": delay,
             "recall": {"carried": {"mean": carried}, "wiped": {"mean": 0.0}}}
            for split, delay, carried in (("trained", 0, 1.0), ("trained", 32, 0.5), ("heldout", 0, 0.25))]}],
        "runs": [{"train_seconds": seconds, "device": "cuda:0", "dtype": "bfloat16"} for seconds in (4.0, 6.0)]}))
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "forward.json").write_text(json.dumps({
        "machine": {"gpu": "NVIDIA H100"}, "summary": [{"case": "kv K=2048 short", "ran": "1 ms", "baseline": "1 ms",
                                                         "ratio": {"median": 1.02}, "target": "<= 1.05x",
                                                         "met": True}]}))
    (tmp_path / "benchmarks" / "members.json").write_text(json.dumps({"results": {"cases": [
        {"members": n, "seconds": {"batched": {"median": seconds}}, "same_losses": True}
        for n, seconds in ((1, 2.0), (32, 5.0))]}}))
    (tmp_path / "benchmarks" / "members-bfloat16.json").write_text(json.dumps({"results": {"cases": [
        {"members": n, "dtype": "bfloat16", "seconds": {"batched": {"median": seconds}}, "time_ratio": 0.25,
         "same_losses": n == 1} for n, seconds in ((1, 1.0), (32, 1.5))]}}))
    summary = gpu_check.summarise(tmp_path, {"tests": 1.0}, {"passed": 12}, "cuda:0")
    assert summary["gpu"] == "NVIDIA H100" and summary["headline"]["recall"]["carried"] == 1.0
    kept = summary["retention"]  # the slower seed misses the 5 s aim; held-out rows are not the recipe's delays
    assert (kept["train_seconds"], kept["met"]) == ([4.0, 6.0], False) and "--train-delays" in plan["retention"]
    assert kept["recall_by_delay"] == {"distractor 0": {"carried": 1.0, "wiped": 0.0},
                                       "distractor 32": {"carried": 0.5, "wiped": 0.0}}
    assert summary["benchmarks"][0]["ratio"]["median"] == 1.02 and set(summary["git"]) == {"commit", "dirty"}
    assert "--members" in plan["members"] and "cuda:0" in plan["members"]
    assert summary["members"]["cost_ratio"] == 2.5 and summary["members"]["met"] is False  # 32 members: 2.5x one
    assert "bfloat16" in plan["members-bfloat16"]
    bf16 = summary["members_bfloat16"]
    assert (bf16["dtype"], bf16["cost_ratio"], bf16["met"], bf16["loop_over_batch"], bf16["same_losses"]) == (
        "bfloat16", 1.5, True, 4.0, False)


def test_gpu_check_without_a_gpu_is_one_clear_line(tmp_path):
    import subprocess

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out", str(tmp_path)],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "has no CUDA GPU" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "gpu-check.json").exists()


def test_the_training_profile_counts_per_step_and_shares_of_self_time():
    from types import SimpleNamespace

    from benchmarks import profile_training

    def event(key, count, self_cpu=0.0, device=0.0, total=0.0):
        return SimpleNamespace(key=key, count=count, self_cpu_time_total=self_cpu, self_device_time_total=device,
                               cpu_time_total=total)

    events = [event("aten::mm", 40, 600.0, 300.0), event("aten::add", 20, 200.0, 100.0),
              event("aten::_local_scalar_dense", 8, 200.0), event("cudaLaunchKernel", 120),
              event("cudaStreamSynchronize", 4), event("Optimizer.step#AdamW.step", 2, total=500_000.0)]
    on_cpu = profile_training.summarise(events, steps=2, seconds=4.0, on_gpu=False)
    assert (on_cpu["operator_calls_per_step"], on_cpu["scalar_reads_per_step"]) == (34, 4)
    assert on_cpu["host_syncs_per_step"] is None and on_cpu["kernel_launches_per_step"] is None
    assert [row["op"] for row in on_cpu["top"][:2]] == ["aten::mm", "aten::add"]
    assert on_cpu["top"][0]["share"] == pytest.approx(0.6) and on_cpu["optimizer_share_of_wall"] == pytest.approx(0.125)
    on_gpu = profile_training.summarise(events, steps=2, seconds=4.0, on_gpu=True)
    assert (on_gpu["kernel_launches_per_step"], on_gpu["host_syncs_per_step"]) == (60, 2)
    assert on_gpu["top"][0]["share"] == pytest.approx(0.75)  # of the device's self time
    text = profile_training.markdown("t", {"config": {"recipe": "r", "steps": 2, "device": "cuda:0",
                                                      "dtype": "bfloat16", "threads": 1}, "cases": {"one": on_gpu}},
                                     "abc1234")
    assert "2 waits for the GPU, 60 kernel launches per step" in text and "| `aten::mm` | 20 | 75.0% |" in text


def test_gpu_check_runs_the_steps_asked_for_and_refuses_an_unknown_one(capsys):
    from benchmarks import gpu_check

    assert gpu_check.main(["--dry-run", "--only", "members", "profile"]) == 0
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()] == ["members", "profile"]
    assert gpu_check.main(["--dry-run", "--only", "retention", "bogus"]) == 2
    assert "unknown step 'bogus'" in capsys.readouterr().err


def test_the_readmes_host_cost_rows_are_what_the_profiles_give():
    """The README's operator counts of the retention recipe's profile, before and after the host-side batching,
    are the committed profiles' (rounded as printed)."""
    import re

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    results = root / "benchmarks" / "results"
    before, after = (json.loads((results / f"profile-cpu-host-{label}.json").read_text())["results"]
                     for label in ("before", "after"))
    for row_start, case in (("| `benchmarks/profile_training.py`, the retention recipe (SmolLM2, K=2048), one run |",
                             "one run alone"), ("| the same, 8 runs in one batch |", "8 runs in one batch")):
        row = next(line for line in readme.splitlines() if line.startswith(row_start))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        printed = [int(re.sub(r"[^0-9]", "", cell)) for cell in cells[1:3]]
        assert printed == [round(before[case]["operator_calls_per_step"]),
                           round(after[case]["operator_calls_per_step"])], row
