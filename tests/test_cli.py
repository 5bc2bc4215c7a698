"""The command line as a user runs it (``python -m ran``, a new process): exit status 2 and one error line, no
traceback, for bad input (the table of bad inputs runs in-process: tests/test_bad_input.py); ``ran check``."""

import re
import subprocess
import sys
from pathlib import Path

import pytest


def ran(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ran", *args], capture_output=True, text=True, timeout=timeout)


def test_unknown_hub_id_fails_fast_without_network():
    result = ran("check", "--model", "no-such-org/no-such-model", timeout=60)
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 2 and len(errors) == 1, result.stderr
    assert "unknown model 'no-such-org/no-such-model'" in errors[0] and "Traceback" not in result.stderr


@pytest.mark.smollm
def test_ran_check_passes_on_the_embedded_model(smollm2):
    result = ran("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    assert "PASS  non-destruction" in result.stdout


@pytest.mark.parametrize("command, extra", [
    ("crosspass", {"lora_rank": 4}), ("population", {"lora_rank": 4}),
    ("remember", {"lora_rank": 4, "value_read": "nearest"}), ("battery", {"gate_hidden": 16}),
])
def test_every_training_command_builds_its_config_from_the_shared_flags(command, extra):
    """One function turns the shared model and reservoir flags into a RanConfig; each command adds its own."""
    from ran.cli import build_parser
    from ran.cli.common import ran_config_from

    shared = ["--mode", "kv", "--layer", "3", "--slots", "4", "--summary", "gated", "--write", "switched",
              "--idle-write", "keep", "--running-units", "8", "--running-clock", "isolated", "--recall", "switched",
              "--read-places", "2",
              "--read-from", "embeddings", "--slot-order", "content-reply", "--gate-context", "pass",
              "--units", "64", "--leak-rate", "0.5", "--leak-rate-min", "0.05", "--input-scaling", "0.3"]
    own = {"lora_rank": ["--lora-rank", "4"], "value_read": ["--value-read", "nearest"],
           "gate_hidden": ["--gate-hidden", "16"]}
    argv = [command, *shared, *[flag for field in extra for flag in own[field]]]
    args = build_parser().parse_args(argv)
    config = ran_config_from(args, **{field: getattr(args, field) for field in extra})
    assert (config.mode, config.layer, config.n_slots, config.summary, config.write, config.idle_write) == (
        "kv", 3, 4, "gated", "switched", "keep")
    assert config.running_clock == "isolated"
    if command != "remember":  # remember's recipe fixes its write and reads
        running = build_parser().parse_args([command, "--summary", "gated", "--write", "switched", "--running-units",
                                             "8", "--running-read", "--running-gate-context", "pass", "--units", "64"])
        assert ran_config_from(running).running_gate_context == "pass"
    assert (config.running_units, config.recall, config.read_places, config.read_from, config.slot_order,
            config.gate_context) == (8, "switched", 2, "embeddings", "content-reply", "pass")
    assert (config.reservoir.units, config.reservoir.leak_rate, config.reservoir.leak_rate_min,
            config.reservoir.input_scaling) == (64, 0.5, 0.05, 0.3)
    assert all(getattr(config, field) == value for field, value in extra.items())


@pytest.mark.parametrize("command", ["crosspass", "population", "remember", "battery"])
def test_every_training_command_builds_its_pass_format_from_the_shared_flags(command):
    from ran.cli import build_parser
    from ran.cli.common import pass_format_from
    from ran.passes import PassFormat

    parser = build_parser()
    given = pass_format_from(parser.parse_args([command, "--format", "chat", "--idle-text", "w9", "--tick", "turn"]))
    assert given == PassFormat("chat", idle_text="w9", tick="turn")
    default = pass_format_from(parser.parse_args([command]))
    assert default.tick == "text" and default.idle_text == "\n"
    assert default.kind == ("chat" if command == "remember" else "text")  # remember's recipe is the chat format


RECIPE = Path(__file__).resolve().parent.parent / "docs" / "recipes" / "battery-mix-keep.args"


def _readme_held_word_mix_command() -> list[str]:
    """The held-word mix's command as the README prints it, split as a shell would (without `ran battery`)."""
    import shlex

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"\*\*The mix of eight on the held-word recipe\*\*.*?```bash\n(.*?)```", readme, flags=re.S)
    assert block, "README lost the held-word mix's command"
    words = shlex.split(block.group(1).replace("\\\n", " "))
    assert words[:2] == ["ran", "battery"]
    return words[2:]


def test_the_mix_recipe_file_is_the_readme_mix_with_idle_ticks_kept():
    """docs/recipes/battery-mix-keep.args is what the README says battery-mix-keep ran: the held-word mix's
    command with the changes the README lists (content-reply, then idle ticks kept and the shares raised)."""
    from ran.cli import build_parser, expand_argument_files

    changes = ["--input-scaling", "0.005", "--slot-order", "content-reply", "--reply-places", "12", "--slots", "24",
               "--idle-write", "keep", "--steps", "500", "--episodes-per-step", "72", "--weights", "1", "2", "4", "1",
               "4", "1", "3", "2", "--name", "battery-mix-keep"]
    readme = vars(build_parser().parse_args(["battery", *_readme_held_word_mix_command(), *changes, "--save", "D"]))
    recipe = vars(build_parser().parse_args(expand_argument_files(["battery", f"@{RECIPE}", "--seeds", "0",
                                                                   "--save", "D"])))
    assert readme["settings"] and readme == recipe


def test_an_arguments_file_is_overridden_by_later_flags_and_its_sets_add_up(tmp_path):
    from ran.cli import build_parser, expand_argument_files

    recipe = tmp_path / "my.args"
    recipe.write_text("# a comment line\n--tasks timed silence --steps 5  # two tasks\n"
                      "--set 'timed.instruction=In {turns} turn{s}, say {word}.' timed.eval_count=8\n")
    argv = expand_argument_files(["battery", f"@{recipe}", "--steps", "7", "--set", "timed.eval_count=16"])
    assert argv == ["battery", "--tasks", "timed", "silence", "--steps", "5", "--set",
                    "timed.instruction=In {turns} turn{s}, say {word}.", "timed.eval_count=8", "--steps", "7", "--set",
                    "timed.eval_count=16"]
    args = build_parser().parse_args(argv)
    assert args.steps == 7 and args.tasks == ["timed", "silence"]
    assert args.settings == ["timed.instruction=In {turns} turn{s}, say {word}.", "timed.eval_count=8",
                             "timed.eval_count=16"]
    from ran.cli.battery import parse_settings

    assert parse_settings(args.settings, args.tasks)["timed"]["eval_count"] == 16  # the last value wins
    assert expand_argument_files(["battery", "@"]) == ["battery", "@"]  # a lone @ is an ordinary argument
