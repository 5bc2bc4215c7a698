"""Ctrl-C (SIGINT) ends ``ran run`` promptly, exit status 130, with its transcript written up to the last
completed pass and the session saved at that pass."""

import json
import signal
import subprocess
import sys
import time

from tiny_models import tiny_session_model_dir

from ran.runtime.persistence import SessionStore


def _as_from_a_terminal() -> None:
    """The child starts as a command typed in a terminal does: SIGINT neither ignored nor blocked. Both are
    inherited through exec, and in the full suite something in this process (a library's thread or handler)
    can leave SIGINT ignored or blocked, which a child would keep: Ctrl-C would then never reach it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_sigint_ends_a_run_with_the_transcript_up_to_the_last_pass(tmp_path):
    model = tiny_session_model_dir(tmp_path / "model")
    script = tmp_path / "script.txt"
    script.write_text("w5 w6 w7\n" + "/tick 1000\n" * 20)
    out, sessions = tmp_path / "out", tmp_path / "sessions"
    process = subprocess.Popen(
        [sys.executable, "-m", "ran", "run", "--session", "s", "--model", str(model), "--units", "32",
         "--max-new-tokens", "2", "--script", str(script), "--out", str(out), "--sessions-dir", str(sessions),
         "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_terminal)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        journals = list(out.glob("run-s-*.jsonl")) if out.is_dir() else []
        if journals and len(journals[0].read_text().splitlines()) > 10:  # the header and 10 passes, as they go
            break
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()  # never leave it running behind the suite
        raise
    seconds = time.monotonic() - sent
    print(f"\nSIGINT to exit: {seconds:.2f}s")
    assert process.returncode == 130 and stderr.strip().endswith("ran run: interrupted"), stderr
    assert seconds < 30  # about a second on an idle machine; generous for a loaded one
    (path,) = out.glob("run-s-*.json")
    assert not list(out.glob("*.jsonl"))  # the journal became the transcript
    transcript = json.loads(path.read_text())
    ticks = [event["tick"] for event in transcript["events"] if event["kind"] in ("prompt", "idle")]
    assert transcript["status"] == "interrupted" and ticks == list(range(1, len(ticks) + 1)) and len(ticks) >= 10
    assert transcript["end"]["tick"] == ticks[-1] == SessionStore("s", sessions).load().tick  # nothing lost
