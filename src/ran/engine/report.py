"""One results schema for every experiment: the envelope every report shares, and the reader of old and new files.

A results file of ``ran crosspass``, ``ran battery``, ``ran remember`` or ``ran population`` is one JSON object,
schema :data:`RESULTS_SCHEMA`, laid out as::

    schema      "ran.results/1"
    experiment  "crosspass" | "battery" | "memory" | "population"
    versions, machine, created, git     where and when it ran (ran.provenance.environment)
    model       the base model
    config      the settings shared by every run
    ...         the experiment's own fields (crosspass: kind, varied; battery: varied; memory: varied, arms;
                population: backend, threads, runs_expected, runs_found, missing, groups, comparisons)
    runs        one entry per run, the experiment's layout, each with ``git``: the commit of the code that ran it
    summary     rows over seeds (ran.stats.seed_summary); a population's are its groups' metrics
    seconds     wall time of the experiment (null for a population report written apart from its runs)

Files written before it (:data:`LEGACY_SCHEMAS`) hold the same fields under a schema per experiment and no
``experiment``; :func:`read_results` reads both, so the files committed under ``results/`` stay readable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ran.errors import ConfigError
from ran.provenance import environment

RESULTS_SCHEMA = "ran.results/1"
EXPERIMENTS = ("crosspass", "battery", "memory", "population")
PROVENANCE = ("versions", "machine", "created", "git")  # of ran.provenance.environment()
LEGACY_SCHEMAS = {"ran.crosspass/1": "crosspass", "ran.crosspass/2": "crosspass", "ran.battery/1": "battery",
                  "ran.memory/1": "memory", "ran.population/1": "population"}  # older schema -> its experiment


def results_document(experiment: str, model: str, config: dict[str, Any], runs: list[dict[str, Any]],
                     summary: list[dict[str, Any]], seconds: float | None, provenance: dict[str, Any] | None = None,
                     **fields: Any) -> dict[str, Any]:
    """An experiment's results in the shared envelope, with its own ``fields`` between the config and the runs.

    ``provenance``: :func:`ran.provenance.environment` taken when the experiment started (default: now).
    """
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}: one of {', '.join(EXPERIMENTS)}")
    clash = sorted(set(fields) & {"schema", *PROVENANCE})  # the other envelope fields are parameters
    if clash:
        raise ValueError(f"{', '.join(clash)} belong to the envelope, not to the experiment's own fields")
    provenance = environment() if provenance is None else provenance
    return {"schema": RESULTS_SCHEMA, "experiment": experiment,
            **{k: provenance[k] for k in PROVENANCE},
            "model": model, "config": config, **fields, "runs": runs, "summary": summary,
            "seconds": None if seconds is None else round(seconds, 1)}


def experiment_of(document: Any, where: str = "results") -> str:
    """Which experiment a results document (new schema or old) holds; anything else is one clear error."""
    schema = document.get("schema") if isinstance(document, dict) else None
    if schema == RESULTS_SCHEMA and document.get("experiment") in EXPERIMENTS:
        return document["experiment"]
    if schema in LEGACY_SCHEMAS:
        return LEGACY_SCHEMAS[schema]
    if schema == RESULTS_SCHEMA:
        raise ConfigError(f"{where} has experiment {document.get('experiment')!r}: expected one of "
                          f"{', '.join(EXPERIMENTS)}")
    raise ConfigError(f"{where} has schema {schema!r}, which is not a results file this version reads "
                      f"({', '.join([RESULTS_SCHEMA, *LEGACY_SCHEMAS])})")


def read_results(path: str | Path, experiment: str | None = None) -> dict[str, Any]:
    """A results file of any schema :func:`experiment_of` knows; with ``experiment``, it must be that one's."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"results file {path} cannot be read: {error}") from None
    found = experiment_of(document, f"results file {path}")
    if experiment is not None and found != experiment:
        raise ConfigError(f"results file {path} holds a {found} experiment, not {experiment}")
    return document
