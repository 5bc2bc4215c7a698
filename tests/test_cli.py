"""The command line: one clear error line and a non-zero exit for bad input, never a traceback."""

import subprocess
import sys

import pytest


def ran(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ran", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["check", "--model", "/no/such/dir/model.gguf"], "GGUF file not found"),
    (["check", "--model", "./definitely-not-a-model-dir/"], "unknown model"),
    (["check", "--units", "0"], "units must be an integer >= 1"),
    (["check", "--spectral-radius", "0"], "--spectral-radius must be a number in (0, 100]"),
    (["check", "--leak-rate", "1.5"], "--leak-rate must be a number in (0, 1]"),
    (["check", "--device", "tpu"], "unknown device 'tpu'"),
    (["check", "--device", "cuda:7"], "cuda:7"),  # no CUDA here: "has no CUDA GPU"; one GPU: "does not exist"
    (["crosspass", "--dtype", "float16", "--device", "cpu"], "float16 on the CPU is refused"),
])
def test_bad_input_gives_one_line_and_nonzero_exit(args, message):
    result = ran(*args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_mode_is_refused_by_the_parser():
    result = ran("check", "--mode", "sideways")
    assert result.returncode == 2 and "invalid choice: 'sideways'" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_hub_id_fails_fast_without_network():
    result = ran("check", "--model", "no-such-org/no-such-model", timeout=60)
    assert result.returncode == 2 and "unknown model 'no-such-org/no-such-model'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.smollm
def test_ran_check_passes_on_the_embedded_model(smollm2):
    result = ran("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    assert "PASS  non-destruction" in result.stdout
