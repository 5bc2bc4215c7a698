"""Benchmarks of ran against its baselines (the bare model, the original study's loops, reservoirpy).

Run them all with ``python -m benchmarks`` (or ``python benchmarks/run.py``, ``make bench``); each
writes a JSON file into ``benchmarks/results/`` and the runner writes ``SUMMARY.md`` from those files.
"""
