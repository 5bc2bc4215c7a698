"""``memory``: delay-memory capacity, with reservoirpy's definition so the numbers are comparable.

    MC = sum_{k=1..k_max} MC_k,   MC_k = corr^2( y_k(t), u(t - k) )   on held-out data,

where ``y_k`` is a ridge readout trained to output ``u(t - k)``. As in ``reservoirpy.observables.
memory_capacity``: ``u`` is i.i.d. U(-0.8, 0.8), the series is ``10 * k_max`` long, the last 20% of it
is the test set, and ``k_max`` defaults to twice the number of units. The reservoir runs from the start
of the series; the first ``k_max`` steps (whose targets would reach before the series) are its washout.
The stateless control is the same readout on the current input ``u(t)``: ~0 at every delay >= 1.

With the ``model`` source the reservoir reads real activations (one random text of the built-in sample
per pass) and ``u`` is their projection on their first principal component: how far back the state
holds the input's dominant direction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ran import dynamics
from ran.errors import ConfigError
from ran.probes.readout import fit_ridge, squared_correlation
from ran.probes.results import format_table, pm
from ran.probes.sources import SOURCES, ActivationBank
from ran.reservoir import Reservoir, ReservoirConfig
from ran.stats import seed_summary

_DELAY_CHUNK = 512  # delays scored at a time, to bound the memory of the predictions


@dataclass(frozen=True)
class MemoryConfig:
    reservoir: ReservoirConfig = ReservoirConfig()
    source: str = "synthetic"
    max_delay: int | None = None  # k_max; None = 2 * units
    length: int | None = None  # series length; None = 10 * k_max
    test_fraction: float = 0.2
    ridge: float = 1e-6  # relative to the mean diagonal of the Gram matrix (see readout.fit_ridge)
    amplitude: float = 0.8  # u ~ U(-amplitude, amplitude)
    thresholds: tuple[float, ...] = (0.9, 0.5)  # report how many leading delays keep MC_k above these

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"unknown source '{self.source}': choose one of {', '.join(SOURCES)}")
        if self.max_delay is not None and (not isinstance(self.max_delay, int) or self.max_delay < 1):
            raise ConfigError(f"max_delay must be an integer >= 1, got {self.max_delay!r}")
        if self.length is not None and (not isinstance(self.length, int) or self.length < 2):
            raise ConfigError(f"length must be an integer >= 2, got {self.length!r}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}")
        if not self.ridge >= 0:
            raise ConfigError(f"ridge must be >= 0, got {self.ridge!r}")
        if not self.amplitude > 0:
            raise ConfigError(f"amplitude must be > 0, got {self.amplitude!r}")
        object.__setattr__(self, "thresholds", tuple(self.thresholds))
        check_split(self.series_length, self.delays, self.test_fraction)

    @property
    def delays(self) -> int:
        return self.max_delay if self.max_delay is not None else 2 * self.reservoir.units

    @property
    def series_length(self) -> int:
        return self.length if self.length is not None else 10 * self.delays

    def to_dict(self) -> dict:
        return {**asdict(self), "max_delay": self.delays, "length": self.series_length}


def check_split(length: int, max_delay: int, test_fraction: float) -> tuple[int, int]:
    """(train rows, test rows) of a series; a clear error when the delay does not fit in the series."""
    if max_delay >= length:
        raise ConfigError(
            f"max delay {max_delay} must be smaller than the series length {length}: "
            f"use a delay below {length} or a longer series"
        )
    test_rows = round(length * test_fraction)
    train_rows = length - max_delay - test_rows
    if test_rows < 2 or train_rows < 2:
        raise ConfigError(
            f"a series of {length} steps leaves {max(train_rows, 0)} training and {test_rows} test "
            f"rows after the max delay {max_delay}: use a series of at least "
            f"{max_delay + 4 + round(4 * test_fraction / (1 - test_fraction))} steps"
        )
    return train_rows, test_rows


def memory_capacity(
    features: np.ndarray, series: np.ndarray, max_delay: int, test_fraction: float = 0.2, ridge: float = 1e-6
) -> np.ndarray:
    """MC_k for k = 1..max_delay -> (max_delay,): squared test correlation between a ridge readout of
    ``features`` (T, n) at time t and ``series`` (T,) at t - k. Rows t < max_delay are left out."""
    series = np.asarray(series, dtype=np.float64)
    if series.ndim != 1 or features.ndim != 2 or features.shape[0] != series.shape[0]:
        raise ConfigError(
            f"memory_capacity needs features (T, n) and a series (T,), got {features.shape} "
            f"and {series.shape}"
        )
    if not isinstance(max_delay, int | np.integer) or max_delay < 1:
        raise ConfigError(f"max_delay must be an integer >= 1, got {max_delay!r}")
    train_rows, test_rows = check_split(len(series), max_delay, test_fraction)
    # windows[i, k] = u(t_i - k) for t_i = max_delay + i: a strided view, nothing is copied.
    windows = sliding_window_view(series, max_delay + 1)[:, ::-1]  # (T - max_delay, max_delay + 1)
    targets = windows[:, 1:]
    rows = features[max_delay:]
    readout = fit_ridge(rows[:train_rows], targets[:train_rows], ridge)
    test_features = np.asarray(rows[train_rows:], dtype=np.float64)
    capacities = np.empty(max_delay)
    for start in range(0, max_delay, _DELAY_CHUNK):
        stop = min(start + _DELAY_CHUNK, max_delay)
        predictions = test_features @ readout.weights[:, start:stop] + readout.intercept[start:stop]
        capacities[start:stop] = squared_correlation(predictions, targets[train_rows:, start:stop])
    return capacities


def leading_delays_above(capacities: np.ndarray, threshold: float) -> int:
    """How many delays 1, 2, ... in a row keep MC_k >= threshold."""
    below = np.flatnonzero(np.asarray(capacities) < threshold)
    return int(below[0]) if below.size else len(capacities)


def _series(
    config: MemoryConfig, rng: np.random.Generator, bank: ActivationBank | None
) -> tuple[np.ndarray, np.ndarray]:
    """(reservoir inputs (T, d), scalar series u (T,))."""
    length = config.series_length
    if config.source == "synthetic":
        series = rng.uniform(-config.amplitude, config.amplitude, size=length)
        return series.astype(np.float32)[:, None], series
    if bank is None:
        raise ConfigError("the model source needs captured activations")
    rows = bank.all().astype(np.float64)
    centred = rows - rows.mean(axis=0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]  # first principal axis
    projection = centred @ direction
    projection /= projection.std()
    picks = rng.integers(0, len(rows), size=length)
    return rows[picks].astype(np.float32), projection[picks]


def run_memory(
    config: MemoryConfig, seeds: list[int], bank: ActivationBank | None = None, progress=None
) -> dict:
    """Per-delay capacity of the state and of the stateless control, for each seed, and their spread."""
    per_seed = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        inputs, series = _series(config, rng, bank)
        reservoir = Reservoir(replace(config.reservoir, seed=seed), inputs.shape[1])
        states = dynamics.drive(reservoir, inputs[:, None, :])[:, 0]  # (T, K)
        state_mc = memory_capacity(states, series, config.delays, config.test_fraction, config.ridge)
        del states
        input_mc = memory_capacity(inputs, series, config.delays, config.test_fraction, config.ridge)
        per_seed.append(
            {
                "seed": seed,
                "fingerprint": reservoir.fingerprint,
                "state": {"total": float(state_mc.sum()), "per_delay": state_mc.tolist()},
                "stateless": {"total": float(input_mc.sum()), "per_delay": input_mc.tolist()},
            }
        )
        if progress is not None:
            progress(f"seed {seed}: MC state {state_mc.sum():.2f}, stateless {input_mc.sum():.3f}")
    summary: dict = {}
    for readout in ("state", "stateless"):
        curves = [np.asarray(run[readout]["per_delay"]) for run in per_seed]
        summary[readout] = {
            "total": seed_summary([c.sum() for c in curves]),
            "max_over_delays": seed_summary([c.max() for c in curves]),
            **{
                f"leading_delays_above_{t:g}": seed_summary([leading_delays_above(c, t) for c in curves])
                for t in config.thresholds
            },
        }
    return {"per_seed": per_seed, "summary": summary}


def plot(results: dict, path) -> None:
    """MC_k against the delay (mean and min-max over seeds) for the state and the stateless control."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ran.plots import save_figure

    runs = results["per_seed"]
    config = results["config"]
    fig, (ax, cumulative_ax) = plt.subplots(1, 2, figsize=(12, 4.2))
    last_useful = 1
    for readout, label in (("state", "reservoir state"), ("stateless", "stateless: current input")):
        curves = np.array([run[readout]["per_delay"] for run in runs])
        delays = np.arange(1, curves.shape[1] + 1)
        useful = np.flatnonzero(curves.mean(axis=0) >= 0.02)
        last_useful = max(last_useful, int(useful[-1]) + 1 if useful.size else 1)
        line = ax.plot(delays, curves.mean(axis=0), label=label)[0]
        ax.fill_between(delays, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.25)
        total = results["summary"][readout]["total"]
        cumulative = np.cumsum(curves, axis=1)
        cumulative_ax.plot(
            delays,
            cumulative.mean(axis=0),
            color=line.get_color(),
            label=f"{label}: MC = {total['mean']:.2f} ± {total['std']:.2f}",
        )
        cumulative_ax.fill_between(
            delays, cumulative.min(axis=0), cumulative.max(axis=0), color=line.get_color(), alpha=0.25
        )
    limit = min(config["max_delay"], max(20, int(last_useful * 1.5)))
    for axis in (ax, cumulative_ax):
        axis.set_xlim(0, limit)
        axis.set_xlabel("delay k (passes)")
        axis.grid(alpha=0.3)
    ax.axhline(0.5, color="grey", ls=":", lw=0.8)
    ax.set(ylabel="MC_k = corr^2(y_k(t), u(t-k))", ylim=(-0.02, 1.02), title="memory curve (test set)")
    cumulative_ax.set(ylabel="sum of MC_k up to k", title="cumulative memory capacity")
    cumulative_ax.legend(fontsize=8)
    ax.legend(fontsize=8)
    r = config["reservoir"]
    fig.suptitle(
        f"ran memory ({config['source']}): K={r['units']}, rho={r['spectral_radius']}, "
        f"leak {r['leak_rate']}, "
        f"scaling {r['input_scaling']}, {r['activation']}, k_max={config['max_delay']}, "
        f"seeds {results['seeds']} (band: min-max)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_figure(fig, path, dpi=80)


def table(record: dict) -> str:
    """Memory capacity of the state and of the stateless readout (from the results JSON)."""
    header = ["readout", "MC (sum of MC_k)", "delays MC_k>=0.9", "delays MC_k>=0.5", "max MC_k"]
    rows = []
    for name, label in (("state", "reservoir state"), ("stateless", "stateless (input)")):
        s = record["summary"][name]
        rows.append([label, pm(s["total"], 2), pm(s["leading_delays_above_0.9"], 1),
                     pm(s["leading_delays_above_0.5"], 1), pm(s["max_over_delays"], 3)])
    return format_table(header, rows)
