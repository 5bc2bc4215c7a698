"""Running a population: expand the grid, skip the runs already on disk, run the rest, write the report.

Layout of a population directory::

    records/<key>.json   one finished run each (see ran.engine.store), written as it finishes
    population.json      the report: config, every run's metrics, ANOVA, recommended reservoir, comparison
    population.txt       the report's tables as printed
    population.png       the figure (drawn from population.json)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ran.engine import Backend, RecordStore, member_key, run_members
from ran.engine.report import read_results
from ran.errors import ConfigError
from ran.fileio import atomic_write
from ran.population.grid import PopulationConfig, check_size, members
from ran.population.report import build_report, format_report
from ran.provenance import environment
from ran.tracking import TrackConfig

RECORDS_DIRECTORY = "records"
REPORT_FILE = "population.json"
TABLE_FILE = "population.txt"
FIGURE_FILE = "population.png"


def run_population(config: PopulationConfig, directory: str | Path, backend: Backend | None = None,
                   threads: int = 1, confirmed: bool = False, progress: bool = True,
                   log: Callable[[str], None] = print, track: TrackConfig | None = None) -> dict[str, Any]:
    """Run every member not yet on disk under ``directory`` (``ran.engine.run_members``) and return the
    population's report; with ``track``, each record is also logged (``ran.tracking``) as it arrives."""
    started = time.perf_counter()
    if not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads per run must be an integer >= 1, got {threads!r}")
    check_size(config, confirmed)
    run_members(members(config), Path(directory) / RECORDS_DIRECTORY, backend, threads, progress,
                log=lambda line: log(f"population: {line}"), track=track)
    return write_report(config, directory, backend, threads, time.perf_counter() - started)


def write_report(config: PopulationConfig, directory: str | Path, backend: Backend | None = None,
                 threads: int = 1, seconds: float | None = None) -> dict[str, Any]:
    """Analyse the records on disk of this population's members; write the report, its tables and figure."""
    from ran.population.plot import plot_population

    directory = Path(directory)
    keys = [member_key(m) for m in members(config)]
    records = RecordStore(directory / RECORDS_DIRECTORY).read_all(keys)
    report = build_report(config.to_dict(), keys, records, environment(), (backend or Backend()).describe(), threads,
                          seconds)
    atomic_write(directory / REPORT_FILE, json.dumps(report, indent=1) + "\n")
    atomic_write(directory / TABLE_FILE, format_report(report))
    if records:
        plot_population(read_results(directory / REPORT_FILE, "population"), directory / FIGURE_FILE)
    return report
