"""The reservoir alone: build time (spectral radius included) and state-update throughput, vs reservoirpy.

reservoirpy is not a dependency: install it apart (e.g. ``pip install --target /tmp/rpy reservoirpy``)
and point ``RAN_BENCH_RESERVOIRPY`` at that folder; without it the comparison is skipped with a note.
Builds run in fresh subprocesses (with a time limit) so neither library's build warms the other.
Throughput runs both on the *same* matrices (reservoirpy is handed ran's W and W_in, so both compute
the same function; their final states are compared) and the same input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from functools import partial
from typing import Any

import numpy as np

from benchmarks.common import ROOT, fmt_ratio, interleave, load_average, ratio, row, stats

NAME = "reservoir"
INPUT_DIM = 576  # SmolLM2-135M's hidden size
BUILD_TARGET_SECONDS = 5.0  # for K=16384
SPECTRAL_RADIUS, LEAK_RATE, INPUT_SCALING, SEED = 0.95, 1.0, 0.5, 0


def reservoirpy_available() -> bool:
    extra = os.environ.get("RAN_BENCH_RESERVOIRPY")
    if extra and extra not in sys.path:
        sys.path.append(extra)  # appended: the project's numpy/scipy stay first
    try:
        import reservoirpy  # noqa: F401
    except ImportError:
        return False
    return True


def connectivity_for(units: int) -> float:
    """0.1 as configured by default; 0.01 at 65536 units (0.1 would be 430M nonzeros, ~5 GB)."""
    return 0.01 if units >= 65536 else 0.1


def _config(units: int, connectivity: float):
    from ran.reservoir import ReservoirConfig

    return ReservoirConfig(units=units, spectral_radius=SPECTRAL_RADIUS, leak_rate=LEAK_RATE,
                           input_scaling=INPUT_SCALING, connectivity=connectivity, seed=SEED)


def build_seconds(library: str, units: int, connectivity: float) -> float:
    """Build one reservoir (W, its spectral radius, W_in) in this process; seconds (imports not counted)."""
    if library == "ran":
        from ran.reservoir import Reservoir

        started = time.perf_counter()
        Reservoir(_config(units, connectivity), INPUT_DIM)
    else:
        from reservoirpy import mat_gen
        from reservoirpy.nodes import Reservoir

        started = time.perf_counter()
        node = Reservoir(units, lr=LEAK_RATE, sr=SPECTRAL_RADIUS, input_scaling=INPUT_SCALING,
                         rc_connectivity=connectivity, input_connectivity=1.0, W=mat_gen.normal,
                         Win=mat_gen.uniform, input_dim=INPUT_DIM, dtype=np.float32, seed=SEED)
        node.initialize(np.zeros((1, INPUT_DIM), dtype=np.float32))
    return time.perf_counter() - started


def build_in_subprocess(library: str, units: int, connectivity: float, limit: float,
                        fresh_process: bool = True) -> float | None:
    """Seconds of a build in a fresh process, or None when it ran past ``limit`` seconds."""
    if not fresh_process:  # tiny sizes in tests: no process start-up, no time limit
        return build_seconds(library, units, connectivity)
    command = [sys.executable, "-m", "benchmarks.bench_reservoir", "build", library, str(units),
               str(connectivity)]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=limit, check=True)
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"{library} build of {units} units failed:\n{error.stderr[-2000:]}") from None
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def throughput(units: int, connectivity: float, batches: list[int], steps: int, repeats: int,
               with_reservoirpy: bool) -> list[dict[str, Any]]:
    import torch

    from ran.reservoir import Reservoir

    reservoir = Reservoir(_config(units, connectivity), INPUT_DIM)
    node = None
    if with_reservoirpy:
        from reservoirpy.nodes import Reservoir as RpyReservoir

        node = RpyReservoir(units, lr=LEAK_RATE, W=reservoir.recurrent_matrix(), Win=reservoir.w_in.numpy(),
                            bias=0.0, input_dim=INPUT_DIM, dtype=np.float32)
        node.initialize(np.zeros((1, INPUT_DIM), dtype=np.float32))
    cases = []
    for batch in batches:
        inputs = np.random.default_rng(batch).standard_normal((steps, batch, INPUT_DIM)).astype(np.float32)
        outputs: dict[str, np.ndarray] = {}
        candidates = {"ran": partial(_ran_run, reservoir, torch.from_numpy(inputs), outputs)}
        if node is not None:
            candidates["reservoirpy"] = partial(_reservoirpy_run, node, inputs, outputs)
        seconds = interleave(candidates, repeats)
        rates = {name: [steps * batch / s for s in values] for name, values in seconds.items()}
        case: dict[str, Any] = {"units": units, "connectivity": connectivity, "batch": batch, "steps": steps,
                                "updates_per_second": {name: stats(v) for name, v in rates.items()}}
        if node is not None:
            case["ratio"] = ratio(rates["ran"], rates["reservoirpy"])
            case["max_abs_state_difference"] = float(np.abs(outputs["ran"] - outputs["reservoirpy"]).max())
            print(f"  reservoir K={units:<6} B={batch:<3} updates/s vs reservoirpy: "
                  f"{fmt_ratio(case['ratio'])}", flush=True)
        cases.append(case)
    return cases


def _ran_run(reservoir, inputs, outputs: dict) -> None:
    import torch

    with torch.no_grad():
        outputs["ran"] = reservoir.run(inputs)[-1].numpy()  # (B, K) final states


def _reservoirpy_run(node, inputs: np.ndarray, outputs: dict) -> None:
    batch = inputs.shape[1]
    series = np.ascontiguousarray(inputs.transpose(1, 0, 2))  # (B, T, d): reservoirpy's multi-series layout
    node.reset()
    result = np.asarray(node.run(series if batch > 1 else series[0]))  # (B, T, K) or (T, K)
    outputs["reservoirpy"] = result[..., -1, :].reshape(batch, -1)


def run(quick: bool, sizes: list[int] | None = None, batches: list[int] | None = None,
        fresh_processes: bool = True) -> dict[str, Any]:
    started, load_before = time.perf_counter(), load_average()
    sizes = sizes or ([512, 2048, 16384] if quick else [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536])
    batches = batches or ([1, 64] if quick else [1, 8, 64])
    build_limit = 60.0 if quick else 120.0
    with_rpy = reservoirpy_available()
    notes = ["build = W (random sparse, scaled to the spectral radius) + W_in, in a fresh subprocess",
             "throughput = state updates (rows x steps) per second; reservoirpy runs ran's own W and W_in "
             "(float32) on the same input, one series per batch row, as its multi-series run does",
             "connectivity 0.01 at 65536 units: 0.1 would be 430M nonzeros (~5 GB) per matrix"]
    if not with_rpy:
        notes.append("reservoirpy is not importable: comparison skipped "
                     "(set RAN_BENCH_RESERVOIRPY to the folder it is installed in)")
    config = {"sizes": sizes, "batches": batches, "input_dim": INPUT_DIM, "spectral_radius": SPECTRAL_RADIUS,
              "leak_rate": LEAK_RATE, "input_scaling": INPUT_SCALING, "seed": SEED,
              "connectivity": {str(k): connectivity_for(k) for k in sizes},
              "build_limit_seconds": build_limit, "reservoirpy": with_rpy}
    builds, updates, summary = [], [], []
    rpy_stopped_at: int | None = None  # the size at which reservoirpy's build ran past the limit
    for units in sizes:
        connectivity = connectivity_for(units)
        repeats = 3 if units <= 16384 else 1
        times: dict[str, list[float | None]] = {"ran": [], "reservoirpy": []}
        libraries = ["ran", "reservoirpy"] if with_rpy and rpy_stopped_at is None else ["ran"]
        for index in range(repeats):
            for library in libraries if index % 2 == 0 else libraries[::-1]:
                if library == "reservoirpy" and times["reservoirpy"] and times["reservoirpy"][-1] is None:
                    times[library].append(None)  # it already ran past the limit at this size
                    continue
                times[library].append(build_in_subprocess(library, units, connectivity, build_limit,
                                                          fresh_processes))
        build: dict[str, Any] = {"units": units, "connectivity": connectivity, "repeats": repeats,
                                 "seconds": {name: stats([t for t in v if t is not None]) if all(
                                     t is not None for t in v) else {"timeout_over": build_limit}
                                     for name, v in times.items() if v}}
        ran_seconds = build["seconds"]["ran"]
        rpy_seconds = build["seconds"].get("reservoirpy")
        if rpy_seconds and "median" in rpy_seconds:
            build["ratio"] = ratio(times["reservoirpy"], times["ran"])  # speed-up: reservoirpy s / ran s
        elif rpy_seconds:
            rpy_stopped_at = units
        elif with_rpy:  # a smaller size already ran past the limit: larger ones are not tried
            build["seconds"]["reservoirpy"] = {"timeout_over": build_limit, "not_run_after": rpy_stopped_at}
            rpy_seconds = build["seconds"]["reservoirpy"]
        builds.append(build)
        print(f"  reservoir build K={units:<6}: ran {ran_seconds.get('median', float('nan')):.2f}s, "
              f"reservoirpy {rpy_seconds}", flush=True)
        steps = 16 if units <= 4096 else (4 if units <= 16384 else 2)
        repeats = 2 if quick or units > 16384 else 3
        updates += throughput(units, connectivity, batches, steps, repeats, with_rpy)

    for build in builds:
        units, ran_seconds = build["units"], build["seconds"]["ran"]
        rpy = build["seconds"].get("reservoirpy")
        if rpy is None:
            baseline, met = "reservoirpy not installed", None
        elif "median" in rpy:
            baseline, met = f"reservoirpy {rpy['median']:.2f} s", build["ratio"]["median"] > 1
        elif "not_run_after" in rpy:
            baseline = f"reservoirpy not run (> {rpy['timeout_over']:.0f} s at K={rpy['not_run_after']})"
            met = ran_seconds["median"] < rpy["timeout_over"]
        else:
            baseline = f"reservoirpy > {rpy['timeout_over']:.0f} s (stopped)"
            met = ran_seconds["median"] < rpy["timeout_over"]
        target = "faster than reservoirpy" + (f", < {BUILD_TARGET_SECONDS:.0f} s" if units == 16384 else "")
        if units == 16384:
            met = (met is not False) and ran_seconds["median"] < BUILD_TARGET_SECONDS
        summary.append(row("reservoir build", f"K={units}, connectivity {build['connectivity']}",
                           f"{ran_seconds['median']:.2f} s", baseline, build.get("ratio"),
                           "speed-up (reservoirpy s / ran s)", target, met))
    for case in updates:
        if "ratio" not in case:
            continue
        rates = case["updates_per_second"]
        summary.append(row("reservoir update", f"K={case['units']}, batch {case['batch']}",
                           f"{rates['ran']['median']:.3g} upd/s",
                           f"reservoirpy {rates['reservoirpy']['median']:.3g} upd/s",
                           case["ratio"], "speed-up (updates/s ratio)", "> 1x", case["ratio"]["median"] > 1))
    return {"name": NAME, "config": config, "results": {"builds": builds, "updates": updates},
            "summary": summary, "started": started, "load_before": load_before, "notes": notes}


if __name__ == "__main__":  # python -m benchmarks.bench_reservoir build ran|reservoirpy UNITS CONNECTIVITY
    _, _, library, units, connectivity = sys.argv
    if library == "reservoirpy" and not reservoirpy_available():
        raise SystemExit("reservoirpy is not importable")
    print(json.dumps({"seconds": build_seconds(library, int(units), float(connectivity))}))
