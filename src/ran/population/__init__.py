"""Populations: many reservoirs and seeds, their statistics, and the trained-recurrence baseline.

``run_population(PopulationConfig(...), directory)`` runs a grid of reservoir seeds x training seeds
(x hyper-parameter lists x recurrences) on the experiment engine (``ran.engine``: in-process or on Ray,
one record per run on disk, resumable) and writes a report with a two-way ANOVA and the recommended
reservoir. ``ran population`` is the CLI.
"""

from ran.engine import Backend, member_key, run_member
from ran.population.grid import LARGE_POPULATION, PopulationConfig, members
from ran.population.runs import run_population, write_report

__all__ = ["LARGE_POPULATION", "Backend", "PopulationConfig", "member_key", "members", "run_member",
           "run_population", "write_report"]
