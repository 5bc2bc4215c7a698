"""Where a result came from: the source commit (and a dirty tree) in every results file, and the one summary
over seeds (sample std, Student-t interval) that every results file uses."""

import json
import math
import shutil
import subprocess

import pytest
from scipy import stats

from ran.provenance import PACKAGE_DIRECTORY, environment, source
from ran.stats import format_interval, seed_summary

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(directory, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=directory,
                          capture_output=True, text=True, check=True).stdout.strip()


@needs_git
def test_source_names_the_commit_and_a_dirty_tree(tmp_path):
    package = tmp_path / "src" / "ran"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    head = git(tmp_path, "rev-parse", "HEAD")
    assert source(package) == {"commit": head, "dirty": False}
    (tmp_path / "notes.txt").write_text("untracked files do not make the tree dirty\n")
    assert source(package) == {"commit": head, "dirty": False}
    (package / "__init__.py").write_text("x = 2\n")
    assert source(package) == {"commit": head, "dirty": True}


@needs_git
def test_source_is_null_outside_a_checkout_that_tracks_the_package(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "ran"  # an installed copy inside someone else's repository
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    (tmp_path / ".gitignore").write_text("site-packages/\n")
    (tmp_path / "README").write_text("another project\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "theirs")
    assert source(package) == {"commit": None, "dirty": None}
    loose = tmp_path.parent / f"{tmp_path.name}-loose" / "ran"  # no repository at all
    loose.mkdir(parents=True)
    (loose / "__init__.py").write_text("x = 1\n")
    assert source(loose) == {"commit": None, "dirty": None}
    monkeypatch.setenv("PATH", "")  # git itself is missing
    assert source(PACKAGE_DIRECTORY) == {"commit": None, "dirty": None}


def test_every_environment_records_the_source():
    recorded = environment()
    assert recorded["git"] == source()
    assert set(recorded) >= {"versions", "machine", "created", "git"}
    json.dumps(recorded)  # plain JSON, null where unknown
    if recorded["git"]["commit"] is not None:
        assert len(recorded["git"]["commit"]) == 40 and isinstance(recorded["git"]["dirty"], bool)


def test_seed_summary_is_the_sample_std_and_a_t_interval():
    values = [1.0, 1.0, 5 / 6]
    summary = seed_summary(values)
    mean = sum(values) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)  # ddof = 1
    half = stats.t.ppf(0.975, 2) * std / math.sqrt(3)  # t(0.975, 2) = 4.303
    assert summary["mean"] == pytest.approx(mean) and summary["std"] == pytest.approx(std)
    assert summary["ci95"] == pytest.approx([mean - half, mean + half])
    assert summary["ci95"] == pytest.approx([0.7054, 1.1835], abs=1e-4)
    assert (summary["min"], summary["max"], summary["n"], summary["values"]) == (5 / 6, 1.0, 3, values)
    assert format_interval(summary) == "[0.71, 1.18]"
    assert format_interval(summary, bounds=(0.0, 1.0)) == "[0.71, 1.00]"  # a rate's interval, as README prints it
    assert seed_summary([0.5, 0.5]) == {"mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5, "n": 2,
                                        "ci95": [0.5, 0.5], "values": [0.5, 0.5]}
    one = seed_summary([0.25])
    assert one["std"] == 0.0 and one["ci95"] is None and format_interval(one) == "-"
    assert format_interval({"mean": 1.0, "std": 0.0, "min": 1.0, "max": 1.0, "values": [1.0]}) == "-"  # older file
    with pytest.raises(ValueError):
        seed_summary([])


def test_the_crosspass_battery_and_population_summaries_use_it():
    from ran.battery import summarise as battery_summary
    from ran.crosspass import summarise as crosspass_summary
    from ran.population.analysis import seed_summary as population_summary

    runs = [{"mode": "kv", "seed": s, "recall": {"carried": v, "wiped": 0.0, "untrained": 0.0},
             "among_keys": {"carried": v, "wiped": 0.2, "untrained": 0.2}} for s, v in enumerate([1.0, 0.5, 0.75])]
    (row,) = crosspass_summary(runs, ("mode",))
    assert row["recall"]["carried"] == seed_summary([1.0, 0.5, 0.75])
    assert population_summary is seed_summary
    task = {"carried": {"value": 0.0}, "wiped": {"value": 0.0}, "stateless": {"value": 0.0}}
    battery_runs = [{"recipe": "readout", "seed": s,
                     "tasks": {"recall": {**task, "carried": {"value": c}, "stateless": {"value": 0.5}}}}
                    for s, c in enumerate([0.9, 0.7, 0.8])]
    (battery_row,) = battery_summary(battery_runs)
    assert battery_row["carried"] == seed_summary([0.9, 0.7, 0.8])
    # carried 0.8 - 0.1 (the sample std) > stateless 0.5 + 0: reservoir-driven
    assert battery_row["reservoir_driven"] is True
    for run in battery_runs:  # 0.8 - 0.1 < 0.71; the population std (0.082) would have called it driven
        run["tasks"]["recall"]["stateless"]["value"] = 0.71
    (battery_row,) = battery_summary(battery_runs)
    assert battery_row["reservoir_driven"] is False


def test_results_written_before_the_seed_summary_still_plot_and_print(tmp_path, capsys):
    """Committed files of ran.crosspass/1 and /2 and ran.battery/1 carry the population std, no n and no interval."""
    from pathlib import Path

    from ran.cli.battery import print_table as print_battery
    from ran.cli.crosspass import print_table as print_crosspass
    from ran.plots import plot_battery, plot_crosspass, plot_retention

    results = Path(__file__).resolve().parents[1] / "results"
    one_hop = json.loads((results / "crosspass.json").read_text())
    retention = json.loads((results / "retention-units.json").read_text())  # 512 units, written before the summary
    battery = json.loads((results / "battery.json").read_text())
    assert "ci95" not in retention["summary"][0]["retention"][0]["recall"]["carried"]  # an older file
    assert plot_crosspass(one_hop, tmp_path / "one-hop.png").stat().st_size > 0
    assert plot_retention(retention, tmp_path / "retention.png").stat().st_size > 0
    assert plot_battery(battery, tmp_path / "battery.png").stat().st_size > 0
    print_crosspass(retention)
    print_battery(battery)
    out = capsys.readouterr().out
    assert "carried 95% CI" in out and "0.67 [0.50]" in out  # D = 32: mean [min]; no interval in the file: "-"
