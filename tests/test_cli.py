"""The command line as a user runs it (``python -m ran``, a new process): exit status 2 and one error line, no
traceback, for bad input (the table of bad inputs runs in-process: tests/test_bad_input.py); ``ran check``."""

import subprocess
import sys

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
