"""One results schema (``ran.engine.report``): every committed results file, of every older schema, still loads
and draws through its experiment's readers; the envelope is one function's; anything else is one clear error."""

import json
from pathlib import Path

import pytest

from ran.cli.eval import EVAL_SCHEMA
from ran.engine.report import EXPERIMENTS, LEGACY_SCHEMAS, RESULTS_SCHEMA, experiment_of, read_results, results_document
from ran.errors import ConfigError
from ran.stats import format_interval, seed_summary

RESULTS = Path(__file__).resolve().parents[1] / "results"
README = RESULTS.parent / "README.md"
NOT_EXPERIMENTS = ("probes/", "session/", "reproduce.json",  # probe outputs, session transcripts, the reproduce spec
                   "gpu/gpu-check-h200.json")  # make gpu-check's summary of its steps
BENCHMARK_SCHEMA = "ran.benchmark/1"  # benchmark files (benchmarks/common.py), read by the benchmarks' summary


def committed() -> dict[str, list[Path]]:
    """Every committed results file of an experiment, by experiment; a file elsewhere fails the test."""
    found: dict[str, list[Path]] = {name: [] for name in EXPERIMENTS}
    for path in sorted(RESULTS.rglob("*.json")):
        relative = path.relative_to(RESULTS).as_posix()
        document = json.loads(path.read_text())
        if relative.startswith(NOT_EXPERIMENTS) or document.get("schema") == BENCHMARK_SCHEMA:
            continue
        if document.get("schema") == EVAL_SCHEMA:  # one artifact rescored by ran eval --json: its own layout
            carried = document["scores"]["carried"]  # a battery artifact's come per task, each with its value
            tasks = carried.get("tasks")
            scored = (tasks and all(isinstance(task["value"], float) for task in tasks.values())) or carried["groups"]
            assert document["environment"]["git"]["commit"] and scored, relative
            continue
        found[experiment_of(document, relative)].append(path)
    return found


def draw_and_print(experiment: str, results: dict, out: Path) -> list[Path]:
    """What ``ran crosspass`` / ``battery`` / ``remember`` / ``population`` draw and print from a results file."""
    from ran.cli.battery import print_table as print_battery
    from ran.cli.crosspass import print_table as print_crosspass
    from ran.cli.remember import print_table as print_memory
    from ran.plots import plot_battery, plot_crosspass, plot_heldout, plot_memory, plot_retention
    from ran.population.plot import plot_population
    from ran.population.report import format_report

    if experiment == "crosspass":
        print_crosspass(results)
        figures = [plot_crosspass(results, out / "crosspass.png",
                                  metric="among_keys" if results["kind"] == "capacity" else "recall")]
        if len({p["delay"] for row in results["summary"] for p in row.get("retention", [])}) > 1:
            figures.append(plot_retention(results, out / "retention.png"))
        if any("heldout" in row for row in results["summary"]):
            figures.append(plot_heldout(results, out / "heldout.png"))
        return figures
    if experiment == "battery":
        print_battery(results)
        return [plot_battery(results, out / "battery.png")]
    if experiment == "memory":
        print_memory(results)
        return [plot_memory(results, out / "memory.png")]
    print(format_report(results))
    return [plot_population(results, out / "population.png")]


def test_every_committed_results_file_loads_and_draws_through_its_readers(tmp_path, capsys):
    found = committed()
    assert all(found.values()), {name: len(paths) for name, paths in found.items()}  # each experiment has files
    seen = set()
    for experiment, paths in found.items():
        for path in paths:
            results = read_results(path, experiment)
            seen.add(results["schema"])
            for figure in draw_and_print(experiment, results, tmp_path):
                assert figure.stat().st_size > 0, path
                figure.unlink()
    assert seen == {*LEGACY_SCHEMAS, RESULTS_SCHEMA}  # every older schema, and the current one, is committed
    assert "carried" in capsys.readouterr().out


def test_the_envelope_is_shared_and_the_experiments_fields_follow_the_config():
    provenance = {"versions": {"ran": "x"}, "machine": {"cores": 2}, "created": "2026-11-30T00:00:00+00:00",
                  "git": {"commit": None, "dirty": None}, "load": "not kept"}
    document = results_document("battery", "m", {"steps": 3}, [{"seed": 0}], [{"task": "t"}], 12.345, provenance,
                                note="own")
    assert list(document) == ["schema", "experiment", "versions", "machine", "created", "git", "model", "config",
                              "note", "runs", "summary", "seconds"]
    assert (document["schema"], document["experiment"], document["seconds"]) == (RESULTS_SCHEMA, "battery", 12.3)
    assert experiment_of(json.loads(json.dumps(document))) == "battery"
    with pytest.raises(ValueError, match="git, schema belong to the envelope"):
        results_document("battery", "m", {}, [], [], 1.0, provenance, schema="mine", git=None)
    with pytest.raises(ValueError, match="unknown experiment 'sweep'"):
        results_document("sweep", "m", {}, [], [], 1.0, provenance)


@pytest.mark.parametrize("content, message", [
    ('{"schema": "ran.crosspass/3", "runs": []}', "has schema 'ran.crosspass/3', which is not a results file"),
    ('{"schema": "ran.results/1", "experiment": "sweep"}', "has experiment 'sweep': expected one of crosspass"),
    ('[1, 2]', "has schema None"),
    ('{"torn', "cannot be read"),
    ('{"schema": "ran.battery/1"}', "holds a battery experiment, not crosspass"),
])
def test_a_file_that_is_not_a_readable_results_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "crosspass.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as error:
        read_results(path, "crosspass")
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def _eval_seeds(*names: str) -> str:
    """What docs/tasks/eval_seeds.py prints for these files of results/memory/diagnostics."""
    import subprocess
    import sys

    root = Path(__file__).parents[1]
    files = [str(root / "results/memory/diagnostics" / name) for name in names]
    return subprocess.run([sys.executable, str(root / "docs/tasks/eval_seeds.py"), *files], capture_output=True,
                          text=True, check=True).stdout


def test_the_readmes_table_of_r68_on_the_mended_pool_is_what_its_files_give():
    """README, "The evaluation pool, mended": docs/tasks/eval_seeds.py on the three committed `ran eval` files."""
    out = _eval_seeds(*(f"r68-seed{seed}-pool.json" for seed in range(3)))
    assert "trained phrasings, D =  4: word 0.83 [0.80] | name 0.76 [0.76]" in out
    assert "trained phrasings, D = 32: word 0.89 [0.84]" in out and "heldout phrasings, D =  8: word 0.96 [0.92]" in out
    rows = [line for line in out.splitlines() if "phrasings, D =" in line]
    assert len(rows) == 9 and all(line.endswith("wiped max 0.00") for line in rows)
    assert "replies stop 0.99 [0.98]; agreement with the base model carried 0.97 [0.95]" in out


def test_the_readmes_table_of_the_recipe_r73_is_what_its_file_gives():
    """README, "Where it stands now": docs/tasks/eval_seeds.py on r73's committed results file."""
    out = _eval_seeds("r73-value-opens-veto.json")
    assert "trained phrasings, D =  4: word 0.91 [0.88] | name 0.92 [0.88] | number 0.96 [0.88] | place 1.00" in out
    assert "trained phrasings, D = 32: word 0.97 [0.96]" in out and "heldout phrasings, D =  8: word 0.99 [0.96]" in out
    rows = [line for line in out.splitlines() if "phrasings, D =" in line]
    assert len(rows) == 9 and all(line.endswith("wiped max 0.00") for line in rows)
    assert "replies stop 0.99 [0.99]; agreement with the base model carried 0.97 [0.96]" in out


def _initiative_row(path: Path) -> str:
    """README, "What costs initiative's words": the row that a committed `ran eval` file of one arm gives."""
    document = json.loads(path.read_text())
    config, carried = document["ran_config"], document["scores"]["carried"]["tasks"]["initiative"]
    trained = [group for group in carried["groups"] if group["split"] == "trained"]
    order = {"content": "by content", "reply": f"by the reply's {config['reply_places']} places",
             "content-reply": f"by content, and by the reply's {config['reply_places']} places in it"}
    cells = [config["reservoir"]["input_scaling"], f"{config['n_slots']}, {order[config['slot_order']]}",
             f"{carried['value']:.2f}", f"{carried['heldout_phrasing_on_time']:.2f}",
             f"{sum(g['on_time'] * g['n'] for g in trained) / sum(g['n'] for g in trained):.2f}",
             f"{carried['on_time_gate']:.2f}",
             f"{document['scores']['wiped']['tasks']['initiative']['value']:.2f}"]
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def test_the_readmes_table_of_initiative_on_five_settings_is_what_its_files_give():
    """Each arm's committed `ran eval` file gives its README row, carried beside wiped from the same artifact."""
    files = sorted((RESULTS / "initiative-settings").glob("*.json"))
    readme = README.read_text()
    assert len(files) == 5
    for path in files:
        assert _initiative_row(path) in readme, (path.name, _initiative_row(path))


@pytest.mark.parametrize("name", ["battery-solo-sequence-band-word-creply",
                                  "battery-solo-sequence-band-word-creply-600"])
def test_the_readmes_figure_of_sequence_with_the_prompt_seeing_every_slot_is_what_its_file_gives(name):
    """README, "What costs initiative's words": sequence alone with `content-reply` (150 and 600 steps), beside
    wiped and stateless."""
    results = json.loads((RESULTS / f"{name}.json").read_text())
    (row,) = results["summary"]
    carried = row["carried"]
    assert (row["task"], row["seeds"]) == ("sequence", [0, 1, 2])
    assert max(row["wiped"]["values"]) == max(row["stateless"]["values"]) == 0.0
    figure = f"**{carried['mean']:.2f} ± {carried['std']:.2f} [{carried['min']:.2f}]**"
    assert figure in README.read_text(), figure


def _table_after(readme: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after the paragraph that starts with ``heading``, header and rule
    dropped, each cell stripped."""
    lines = readme[readme.index(heading):].splitlines()
    first = next(index for index, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip("|").split("|")])
    return table[2:]


@pytest.mark.parametrize("heading, path", [
    ("**The same mix on sequence's recipe**", "battery-mix-band-places/eval-seed0.json"),
    ("**The mix with the prompt seeing every slot**", "battery-mix-creply/eval-seed0.json"),
    ("**The mix with idle ticks kept and the shares raised**", "battery-mix-keep/eval-seed0.json"),
])
def test_the_readmes_table_of_a_one_seed_mix_is_what_its_eval_file_gives(heading, path):
    """README, the mixes on the band's scaling: each task's row of the table under ``heading`` has the carried and
    wiped values of the committed `ran eval` file, carried beside wiped from one artifact."""
    scores = json.loads((RESULTS / path).read_text())["scores"]
    rows = {cells[0]: cells for cells in _table_after(README.read_text(), heading)}
    assert set(rows) == set(scores["carried"]["tasks"]) and len(rows) == 8
    for task, carried in scores["carried"]["tasks"].items():
        assert rows[task][1].strip("*").startswith(f"{carried['value']:.2f}"), (task, rows[task][1])
        assert rows[task][2] == f"{scores['wiped']['tasks'][task]['value']:.2f}", (task, rows[task][2])


def _heldout_groups(task: dict) -> str:
    """A timed or initiative task's on-time rate per group of the held-out words, as the README writes it."""
    return " / ".join(f"{group['on_time']:.2f}" for group in task["groups"] if group["split"] == "heldout")


def _rescored(directory: str, idle_writes: dict[str, str]) -> list[dict]:
    """The carried task scores of `ran eval` files of one artifact (file name -> its idle_write), each checked for
    its idle_write, with every task but initiative at the same value in all ("every other task's value the same")."""
    files = [json.loads((RESULTS / directory / name).read_text()) for name in idle_writes]
    assert [result["ran_config"]["idle_write"] for result in files] == list(idle_writes.values())
    tasks = [result["scores"]["carried"]["tasks"] for result in files]
    for task in tasks[0]:
        if task != "initiative":
            assert len({scores[task]["value"] for scores in tasks}) == 1, task
    return tasks


@pytest.mark.parametrize("directory, idle_writes, initiative_figure, timed_figure", [
    # "The mix with the prompt seeing every slot": the gate-trained artifact rescored with idle ticks kept
    ("battery-mix-creply", {"eval-seed0.json": "gate", "eval-keep-seed0.json": "keep"},
     "initiative **{value}** ({by_wipe} by wipe tick;", "silent after the due tick {silent_after}"),
    # "What keeping idle ticks adds at scoring": the keep-trained artifact rescored with idle ticks that write
    ("battery-mix-keep", {"eval-seed0.json": "keep", "eval-gate-seed0.json": "gate"},
     "gives initiative {value} ({by_wipe} by wipe tick:", "(silent after the due tick {silent_after})"),
])
def test_the_readmes_figures_of_a_mix_rescored_with_the_other_idle_write_are_what_its_eval_files_give(
        directory, idle_writes, initiative_figure, timed_figure):
    """The rescored file's initiative (by wipe tick) and timed silence after the due tick, as the README gives them."""
    _, rescored = _rescored(directory, idle_writes)
    readme = " ".join(README.read_text().split())
    initiative, timed = rescored["initiative"], rescored["timed"]
    assert initiative_figure.format(value=f"{initiative['value']:.2f}", by_wipe=_heldout_groups(initiative)) in readme
    assert timed_figure.format(silent_after=f"{timed['silent_after']:.2f}") in readme


def test_the_readmes_figures_of_the_mix_with_idle_ticks_kept_and_shares_raised_are_what_its_eval_file_gives():
    """README, "The mix with idle ticks kept and the shares raised": initiative by wipe tick, timed per N, and the
    battery section's summary line of every task's carried value, from the committed `ran eval` file."""
    result = json.loads((RESULTS / "battery-mix-keep" / "eval-seed0.json").read_text())
    assert result["ran_config"]["idle_write"] == "keep"
    carried = result["scores"]["carried"]["tasks"]
    readme = " ".join(README.read_text().split())
    by_wipe = _heldout_groups(carried["initiative"])
    assert f"**Initiative's fade is gone**: {by_wipe} for the wipe before tick 1" in readme
    assert f"on time per N = 1..8 on held-out words {_heldout_groups(carried['timed'])} (" in readme
    summary = ", ".join(f"{task} {carried[task]['value']:.2f}" for task in ("initiative", "sequence", "timed"))
    assert f"interrupt 1.00, {summary} and silence {carried['silence']['value']:.2f}, every task 0.00 wiped" in readme
    assert all(carried[task]["value"] == 1.0 for task in ("recall", "accumulate", "deferred", "interrupt"))
    assert all(task["value"] == 0.0 for task in result["scores"]["wiped"]["tasks"].values())


def test_the_readmes_table_of_the_kept_mix_over_three_seeds_is_what_its_eval_files_give():
    """README, "Seeds 1 and 2 of the same mix": each task's seeds, their mean ± std, min and 95% interval from the
    three committed `ran eval` files, wiped 0.00 in every seed; each seed's timed per N on held-out words and
    silence's parts; the summary line up top."""
    seeds = [json.loads((RESULTS / "battery-mix-keep" / f"eval-seed{seed}.json").read_text())["scores"]
             for seed in (0, 1, 2)]
    rows = {cells[0]: cells for cells in _table_after(README.read_text(), "**Seeds 1 and 2 of the same mix**")}
    assert all(set(rows) == set(scores["carried"]["tasks"]) for scores in seeds) and len(rows) == 8
    readme = " ".join(README.read_text().split())
    for task, cells in rows.items():
        values = [scores["carried"]["tasks"][task]["value"] for scores in seeds]
        summary = seed_summary(values)
        assert cells[1:7] == [*(f"{value:.2f}" for value in values), f"{summary['mean']:.2f} ± {summary['std']:.2f}",
                              f"{summary['min']:.2f}", format_interval(summary, bounds=(0, 1))], (task, cells)
        assert cells[7] == "0.00" and all(scores["wiped"]["tasks"][task]["value"] == 0 for scores in seeds), task
        if task in ("initiative", "timed", "sequence", "silence"):
            assert f"{task} {summary['mean']:.2f} ± {summary['std']:.2f} (" in readme, task
    timed = [scores["carried"]["tasks"]["timed"] for scores in seeds]
    assert (f"on time per N = 1..8 on held-out words {_heldout_groups(timed[2])} (seed 2), "
            f"{_heldout_groups(timed[1])} (seed 1), {_heldout_groups(timed[0])} (seed 0)") in readme
    silence = [scores["carried"]["tasks"]["silence"] for scores in seeds]
    for part in ("held", "replied", "released"):
        assert f"{part} {' / '.join(f'{each[part]:.2f}' for each in silence)}" in readme, part


def _idle_ticks(name: str) -> list[tuple[bool, str]]:
    """(spoke, reply) of each idle tick of a committed session transcript, in order."""
    events = json.loads((RESULTS / "session" / f"run-{name}.json").read_text())["events"]
    return [(event["gate"]["emit"], event["reply"]) for event in events if event.get("kind") == "idle"]


def test_the_readmes_live_runs_of_the_kept_mix_are_what_its_transcripts_give():
    """README, "Seeds 1 and 2 of the same mix", live (seed 1's artifact): which idle tick speaks and what it says,
    and that every control stays silent."""
    initiative = _idle_ticks("mixK-s1-initiative-ada")
    assert [spoke for spoke, _ in initiative] == [False, False, True, False, False]
    assert initiative[2][1] == " Ada"
    appointment = _idle_ticks("mixK-s1-appointment-ada")
    assert [spoke for spoke, _ in appointment] == [False, False, False, True, False, False]
    assert appointment[3][1] == " AAA"
    unread = _idle_ticks("mixK-s1-appointment-ada-unread")
    assert [spoke for spoke, _ in unread] == [False, False, True, False, False, True] and unread[2][1] == " Ada"
    for control in ("initiative-ada-forget", "appointment-ada-forget", "appointment-ada-unread-forget"):
        assert not any(spoke for spoke, _ in _idle_ticks(f"mixK-s1-{control}")), control
    replies = [event["reply"] for event in json.loads((RESULTS / "session" / "run-mixK-s1-interrupt.json").read_text())[
        "events"] if event.get("kind") == "prompt"]
    assert replies[1:] == [" 51", " rocket"]
    held = [event["gate"]["emit"] for event in json.loads((RESULTS / "session" / "run-mixK-s1-hold.json").read_text())[
        "events"] if event.get("kind") == "prompt"]
    assert held == [False] * 5  # silent through the hold, and after the release too: the release is missed


SILENCE_ARMS = ("alone", "content", "initiative", "timed", "timed-gate256", "timed-phrasings", "timed-text-read")
SILENCE_PASSES = ("hold", "under the hold", "release", "after the release", "first, free", "later, free")


def test_the_readmes_tables_of_where_the_mix_loses_silence_are_what_their_files_give():
    """README, "Where the mix loses silence": each arm's row (in SILENCE_ARMS' order) has its `ran eval` file's
    silence scores, carried beside wiped; each row of the read probe's table has docs/tasks/silence-reads.json's share
    of marked tokens open and of decisions right, per kind of pass."""
    readme = README.read_text()
    heading = "**Where the mix loses silence**"
    rows = _table_after(readme, heading)
    assert len(rows) == len(SILENCE_ARMS)
    for cells, arm in zip(rows, SILENCE_ARMS, strict=True):
        scores = json.loads((RESULTS / "silence-in-the-mix" / f"{arm}.json").read_text())["scores"]
        silence = scores["carried"]["tasks"]["silence"]
        wanted = [silence[name] for name in ("value", "held", "replied", "released", "ticks_silent")]
        assert [cell.strip("*") for cell in cells[2:7]] == [f"{value:.2f}" for value in wanted], arm
        assert cells[7] == f"{scores['wiped']['tasks']['silence']['value']:.2f}", arm
    probe = json.loads((Path(__file__).parents[1] / "docs/tasks/silence-reads.json").read_text())["artifacts"]
    after = readme[readme.index(heading):]
    rows = {cells[0].strip("`"): cells[1:] for cells in _table_after(after, "What the running units read")}
    assert set(rows) == set(probe) and "battery-mix-keep" in rows
    for name, kinds in probe.items():
        assert rows[name] == [f"{kinds[kind]['open_share']:.2f} / {kinds[kind]['decided_right']:.2f}"
                              for kind in SILENCE_PASSES], name
    flat = " ".join(readme.split())
    mix, timed = probe["battery-mix-keep"], probe["timed"]
    assert (f"released {timed['release']['decided_right']:.2f} and the statements after it "
            f"{timed['after the release']['decided_right']:.2f} in the timed arm, {mix['release']['decided_right']:.2f}"
            f" and {mix['after the release']['decided_right']:.2f} in the mix") in flat
    assert (f"later statements ({mix['later, free']['open_share']:.2f}), and the gate replies to "
            f"{mix['later, free']['decided_right']:.2f} of them") in flat


# README, "A running read that sees its turn": each row's eval file (under results/silence-in-the-mix/) and seed.
RUNNING_GATE_ARMS = (("timed", 0), ("timed-no-running-labels", 0), ("timed-running-gate-pass", 0),
                     ("timed-seed1", 1), ("timed-running-gate-pass-seed1", 1))


def test_the_readmes_tables_of_a_running_read_that_sees_its_turn_are_what_their_files_give():
    """Each arm's row has its `ran eval` file's silence scores, carried beside wiped, and timed's gate on time; the
    probe's table has docs/tasks/silence-reads-running-gate.json's share open and decisions right per kind of pass."""
    readme = README.read_text()
    heading = "**A running read that sees its turn**"
    rows = _table_after(readme, heading)
    assert len(rows) == len(RUNNING_GATE_ARMS)
    for cells, (arm, seed) in zip(rows, RUNNING_GATE_ARMS, strict=True):
        scores = json.loads((RESULTS / "silence-in-the-mix" / f"{arm}.json").read_text())["scores"]
        silence = scores["carried"]["tasks"]["silence"]
        wanted = [silence[name] for name in ("value", "held", "replied", "released", "ticks_silent")]
        assert cells[1] == str(seed), arm
        assert [cell.strip("*") for cell in cells[3:8]] == [f"{value:.2f}" for value in wanted], arm
        assert cells[8] == f"{scores['wiped']['tasks']['silence']['value']:.2f}", arm
        assert cells[9] == f"{scores['carried']['tasks']['timed']['on_time_gate']:.2f}", arm
    probe = json.loads((Path(__file__).parents[1] / "docs/tasks/silence-reads-running-gate.json").read_text())
    after = readme[readme.index(heading):]
    rows = {cells[0].strip("`"): cells[1:] for cells in _table_after(after, "What the running units read")}
    assert set(rows) == set(probe["artifacts"])
    for name, kinds in probe["artifacts"].items():
        assert rows[name] == [f"{kinds[kind]['open_share']:.2f} / {kinds[kind]['decided_right']:.2f}"
                              for kind in SILENCE_PASSES], name
