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
    assert len(document["git"]["commit"]) in (40, len("unknown"))
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
    assert "| reservoir build | K=600, connectivity 0.1 |" in table and "CPU only" in table


@pytest.mark.skipif(not bench_reservoir.reservoirpy_available(), reason="reservoirpy not installed")
def test_reservoirpy_runs_the_same_function():
    outcome = bench_reservoir.run(quick=True, sizes=[64], batches=[3], fresh_processes=False)
    (case,) = outcome["results"]["updates"]
    assert case["max_abs_state_difference"] < 1e-4
