"""Kill a ``ran`` command with SIGKILL once it has left some records on the engine (ran.engine)."""

import signal
import subprocess
import sys
import time
from pathlib import Path

from ran.engine import RecordStore


def kill_after_records(argv: list[str], records: Path, at_least: int, timeout: float = 240,
                       cwd: Path | None = None) -> list[Path]:
    """Run ``python -m ran *argv``, SIGKILL it once ``records`` holds ``at_least`` finished records (or it ended,
    or ``timeout`` passed); returns the record files left."""
    process = subprocess.Popen([sys.executable, "-m", "ran", *argv], cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while len(RecordStore(records).keys()) < at_least and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return sorted(records.glob("*.json"))
