"""Running a population: expand the grid, skip the runs already on disk, run the rest, write the report.

Layout of a population directory::

    records/<key>.json   one finished run each (see ran.population.store), written as it finishes
    population.json      the report: config, every run's metrics, ANOVA, recommended reservoir, comparison
    population.txt       the report's tables as printed
    population.png       the figure (drawn from population.json)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ran.errors import ConfigError
from ran.fileio import atomic_write
from ran.population.backends import Backend, execute
from ran.population.grid import PopulationConfig, check_size, member_key, members
from ran.population.report import build_report, format_report
from ran.population.store import RecordStore
from ran.provenance import environment
from ran.tracking import TrackConfig, log_run

RECORDS_DIRECTORY = "records"
REPORT_FILE = "population.json"
TABLE_FILE = "population.txt"
FIGURE_FILE = "population.png"


def run_population(config: PopulationConfig, directory: str | Path, backend: Backend | None = None,
                   threads: int = 1, confirmed: bool = False, progress: bool = True,
                   log: Callable[[str], None] = print, track: TrackConfig | None = None) -> dict[str, Any]:
    """Run every member not yet on disk under ``directory`` and return the population's report; with ``track``,
    each record is also logged (``ran.tracking``) as it arrives, by this process, wherever the run ran."""
    started = time.perf_counter()
    backend = backend or Backend()
    if not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads per run must be an integer >= 1, got {threads!r}")
    check_size(config, confirmed)
    everyone = members(config)
    backend.check()  # before anything loads: a cluster that does not answer fails in seconds
    directory = Path(directory)
    store = RecordStore(directory / RECORDS_DIRECTORY)
    store.remove_temporaries()
    finished = store.keys()
    todo = [m for m in everyone if member_key(m) not in finished]
    log(f"population: {len(everyone)} runs, {len(everyone) - len(todo)} already finished, {len(todo)} to run "
        f"({backend.describe()}, {threads} thread{'s' if threads > 1 else ''} per run)")
    if todo:
        with tqdm(total=len(todo), desc="population", disable=not progress, dynamic_ncols=True) as bar:
            with closing(execute(todo, backend, threads)) as finished_runs:  # closing stops Ray at once on error
                for record in finished_runs:
                    store.write(record)
                    if track is not None:
                        log_run(track, record["result"], label=record["key"])
                    bar.update()
    return write_report(config, directory, backend, threads, time.perf_counter() - started)


def write_report(config: PopulationConfig, directory: str | Path, backend: Backend | None = None,
                 threads: int = 1, seconds: float | None = None) -> dict[str, Any]:
    """Analyse the records on disk of this population's members; write the report, its tables and figure."""
    from ran.population.plot import plot_population

    directory = Path(directory)
    keys = [member_key(m) for m in members(config)]
    records = RecordStore(directory / RECORDS_DIRECTORY).read_all(keys)
    provenance = {**environment(), "backend": (backend or Backend()).describe(), "threads": threads,
                  "seconds": None if seconds is None else round(seconds, 1)}
    report = build_report(config.to_dict(), keys, records, provenance)
    atomic_write(directory / REPORT_FILE, json.dumps(report, indent=1) + "\n")
    atomic_write(directory / TABLE_FILE, format_report(report))
    if records:
        plot_population(json.loads((directory / REPORT_FILE).read_text()), directory / FIGURE_FILE)
    return report
