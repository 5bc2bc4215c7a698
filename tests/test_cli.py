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
