"""``python -m ran.reproduce`` on fake commands (no training): the table, the verdicts, the refusals, and the
committed spec against the committed results."""

import json
import sys
from pathlib import Path

import pytest

from ran.engine.report import read_results
from ran.reproduce import argv_of, load_spec, lookup, main

REPO = Path(__file__).resolve().parents[1]
# A fake experiment: writes a results file {"schema": ..., "summary": [{"retention": [{"delay": D, "recall": R},
# ...]}]} to argv[1].
WRITER = ("import json, sys; rows = [{'delay': d, 'recall': r} for d, r in ((8, 1.0), (16, 0.9), (32, 0.5))]; "
          "json.dump({'schema': 'ran.results/1', 'experiment': 'crosspass', 'summary': [{'retention': rows}]}, "
          "open(sys.argv[1], 'w'))")


def figure(name, delay, interval):
    return {"figure": name, "value": ["summary", 0, "retention", {"delay": delay}, "recall"], "interval": interval}


def write_spec(root: Path, runs: list[dict]) -> Path:
    path = root / "spec.json"
    path.write_text(json.dumps({"schema": "ran.reproduce/1", "runs": runs}))
    return path


def reproduce(root: Path, *extra: str) -> int:
    return main(["--spec", "spec.json", "--root", str(root), "--out", "runs/reproduce", *extra])


def test_figures_inside_and_outside_their_intervals(tmp_path, capsys):
    results = "runs/fake/out.json"
    (tmp_path / "runs" / "fake").mkdir(parents=True)
    write_spec(tmp_path, [{"name": "fake", "budget": "instant", "command": ["python", "-c", WRITER, results],
                           "results": results,
                           "figures": [figure("D=8", 8, [0.9, 1.0]), figure("D=16", 16, [0.85, 1.0]),
                                       figure("D=32", 32, [0.7, 1.0]),
                                       figure("D=64", 64, [0.0, 1.0])]}])
    assert reproduce(tmp_path) == 1  # one figure outside, one missing: the run fails
    out = capsys.readouterr().out
    lines = {line.split("  ")[0]: line for line in out.splitlines()}
    assert "1.000" in lines["D=8"] and lines["D=8"].split()[-1] == "pass"
    assert "0.900" in lines["D=16"] and "pass" in lines["D=16"]
    assert "0.500" in lines["D=32"] and "FAIL" in lines["D=32"]  # 0.5 is below 0.7
    assert "FAIL" in lines["D=64"] and 'not in the results: {"delay": 64} matches 0 elements' in lines["D=64"]
    assert "2 of 4 figures inside their intervals" in out and "fake: 0 min" in out and "(instant)" in out
    report = json.loads((tmp_path / "runs" / "reproduce" / "reproduce.json").read_text())
    assert report["passed"] is False and report["runs"][0]["returncode"] == 0
    assert [f["passed"] for f in report["runs"][0]["figures"]] == [True, True, False, False]
    assert {"commit", "dirty"} <= set(report["git"]) and "versions" in report

    write_spec(tmp_path, [{"name": "fake", "command": ["python", "-c", WRITER, results], "results": results,
                           "figures": [figure("D=16", 16, [0.9, 0.9]), figure("D=32", 32, [0.0, 0.5])]}])
    assert reproduce(tmp_path) == 0  # the bounds are inclusive
    assert "2 of 2 figures inside their intervals" in capsys.readouterr().out


def test_a_failed_command_never_passes_on_a_stale_results_file(tmp_path, capsys):
    results = tmp_path / "runs" / "out.json"
    results.parent.mkdir(parents=True)
    results.write_text(json.dumps({"summary": [{"retention": [{"delay": 8, "recall": 1.0}]}]}))  # would pass
    write_spec(tmp_path, [{"name": "broken", "command": ["python", "-c", "import sys; print('boom'); sys.exit(3)"],
                           "results": "runs/out.json", "figures": [figure("D=8", 8, [0.0, 1.0])]}])
    assert reproduce(tmp_path) == 1
    out = capsys.readouterr().out
    assert "command failed (exit 3)" in out and "FAIL" in out
    assert not results.exists()  # the stale file was removed before the command ran
    assert "boom" in (tmp_path / "runs" / "reproduce" / "broken.log").read_text()

    write_spec(tmp_path, [{"name": "silent", "command": ["python", "-c", "pass"], "results": "runs/out.json",
                           "figures": [figure("D=8", 8, [0.0, 1.0])]}])
    assert reproduce(tmp_path) == 1
    assert "the command wrote no runs/out.json" in capsys.readouterr().out

    unknown = ("import json, sys; json.dump({'summary': [{'retention': [{'delay': 8, 'recall': 1.0}]}]}, "
               "open(sys.argv[1], 'w'))")
    write_spec(tmp_path, [{"name": "unknown", "command": ["python", "-c", unknown, "runs/out.json"],
                           "results": "runs/out.json", "figures": [figure("D=8", 8, [0.0, 1.0])]}])
    assert reproduce(tmp_path) == 1  # a file of no results schema is not read, though its figure would pass
    assert "has schema None, which is not a results file this version reads" in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    ({"results": "results/crosspass.json"}, "must be a JSON path under runs/"),
    ({"results": "runs/../results/x.json"}, "must be a JSON path under runs/"),
    ({"command": []}, "'command' must be a non-empty list"),
    ({"figures": [{"figure": "x", "value": ["a"], "interval": [1.0, 0.0]}]}, "low <= high"),
    ({"figures": [{"figure": "x", "value": [], "interval": [0, 1]}]}, "'value' must be a non-empty list"),
    ({"figures": [{"figure": "x", "value": [True], "interval": [0, 1]}]}, "'value' must be a non-empty list"),
])
def test_bad_specs_are_one_line_and_run_nothing(tmp_path, capsys, change, message):
    marker = tmp_path / "ran"
    run = {"name": "r", "command": ["python", "-c", f"open({str(marker)!r}, 'w')"], "results": "runs/r.json",
           "figures": [figure("D=8", 8, [0.0, 1.0])], **change}
    write_spec(tmp_path, [run])
    assert reproduce(tmp_path) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("reproduce: error:") and "\n" not in error and message in error
    assert not marker.exists()


def test_only_picks_runs_by_name_and_dry_run_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "ran"
    runs = [{"name": name, "command": ["python", "-c", f"open({str(marker)!r}, 'w')"], "results": f"runs/{name}.json",
             "figures": [figure("D=8", 8, [0.0, 1.0])]} for name in ("one-hop", "retention")]
    write_spec(tmp_path, runs)
    assert reproduce(tmp_path, "--only", "retention", "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.startswith("retention") and "one-hop" not in out and not marker.exists()
    assert reproduce(tmp_path, "--only", "retentoin") == 2
    assert "did you mean 'retention'" in capsys.readouterr().err


def test_commands_run_with_this_interpreter_and_paths_select_list_elements():
    assert argv_of(("ran", "crosspass")) == [sys.executable, "-m", "ran", "crosspass"]
    assert argv_of(("python", "-c", "pass")) == [sys.executable, "-c", "pass"]
    assert argv_of(("make", "demo")) == ["make", "demo"]
    document = {"rows": [{"split": "trained", "delay": 8, "v": 1}, {"split": "heldout", "delay": 8, "v": 2}]}
    assert lookup(document, ("rows", {"split": "heldout", "delay": 8}, "v")) == 2
    assert lookup(document, ("rows", -1, "v")) == 2
    with pytest.raises(KeyError, match="matches 2 elements"):
        lookup(document, ("rows", {"delay": 8}))


def test_the_committed_spec_holds_the_committed_figures():
    """Every interval in results/reproduce.json contains the figure of the results file it was taken from,
    read by the same path the runner reads from a fresh run."""
    runs = load_spec(REPO / "results" / "reproduce.json", REPO)
    assert {"one-hop", "retention"} <= {run.name for run in runs}
    for run in runs:
        assert run.results.startswith("runs/") and run.command[0] == "ran"
        for figure_ in run.figures:
            committed = read_results(REPO / figure_.committed)
            low, high = figure_.interval
            assert low <= lookup(committed, figure_.value) <= high, figure_.figure
