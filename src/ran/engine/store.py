"""Finished runs on disk: one JSON file per run, named by the member's key, written atomically.

Each record is written with :func:`ran.fileio.atomic_write` (a temporary file in the same directory,
fsync'd, renamed over its final name, the directory fsync'd): a killed experiment leaves every finished
record whole and at most some temporary files (ignored, and removed at the next start). Rerunning reads
which keys exist and runs only the others.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ran.errors import ConfigError
from ran.fileio import TEMP_MARK, atomic_write

RECORD_SCHEMA = "ran.run/1"  # every experiment's runs: member, result (ran.runner's record), timing, git
READABLE_RECORD_SCHEMAS = ("ran.population-run/1", RECORD_SCHEMA)  # the same layout, written by populations before
TEMPORARY_SUFFIX = ".tmp"  # temporaries of earlier versions: ".<name>.<random>.tmp"


class RecordStore:
    """The results records of an experiment: ``<directory>/<key>.json``, one per finished run."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def keys(self) -> set[str]:
        """Keys of every finished run on disk."""
        if not self.directory.is_dir():
            return set()
        return {path.stem for path in self.directory.glob("*.json") if not path.name.startswith(".")}

    def write(self, record: dict[str, Any]) -> Path:
        path = self.path(record["key"])
        atomic_write(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
        return path

    def read(self, key: str) -> dict[str, Any]:
        path = self.path(key)
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path} is not a readable run record ({error}): delete it to run that run "
                              "again") from None
        schema = record.get("schema") if isinstance(record, dict) else None
        if schema not in READABLE_RECORD_SCHEMAS:
            raise ConfigError(f"{path} has record schema {schema!r}, which this version does not read "
                              f"({', '.join(READABLE_RECORD_SCHEMAS)}): delete it to run that run again")
        return record

    def read_all(self, keys: list[str]) -> list[dict[str, Any]]:
        """The records of these keys that are finished, in the order given."""
        present = self.keys()
        return [self.read(key) for key in keys if key in present]

    def remove_temporaries(self) -> int:
        """Delete temporary files left by a killed experiment; returns how many there were."""
        if not self.directory.is_dir():
            return 0
        stale = [p for pattern in (f".*{TEMPORARY_SUFFIX}", f".*{TEMP_MARK}*") for p in self.directory.glob(pattern)
                 if p.is_file()]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)
