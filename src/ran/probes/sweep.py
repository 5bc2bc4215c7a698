"""``sweep``: the reservoir's regime over spectral radius x input scaling (x units, x leak rate).

At every grid point and seed one batched run of ``steps`` updates gives the observables of
:mod:`ran.dynamics`: saturation, effective dimensionality and input separation on driven input (after a
washout), the echo-state residual on zero input and on driven input. Each (units, leak rate, seed) builds
its reservoir once, at spectral radius 1 and input scaling 1, and the grid scales ``W_r`` and ``W_in``.
The stateless control is the same random feature map without recurrence, ``tanh(W_in x + b)``.

Derived: the echo-state boundary (the spectral radii between which the zero-input residual rises from
below ``forget_tolerance``, a difference that has died out, to above it)
and the input-scaling band at the spectral radius nearest ``band_radius``: the scalings whose saturation
is at most ``max_saturation`` and whose separation is at least ``min_separation_fraction`` of the largest
separation among those unsaturated scalings (separation alone keeps growing into saturation, where the
states become sign patterns). Also where saturation crosses 0.5, the original study's upper edge.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ran import dynamics
from ran.errors import ConfigError
from ran.probes.results import format_table
from ran.probes.sources import SOURCES, ActivationBank
from ran.reservoir import Reservoir, ReservoirConfig
from ran.stats import seed_summary

METRICS = (
    "saturation",
    "effective_dimension",
    "effective_dimension_fraction",
    "separation",
    "echo_residual_zero_input",
    "echo_residual_driven",
)
ECHO_FLOOR = 1e-16  # residuals are drawn on a log scale, clipped here
GRID_AXES = ("spectral_radii", "input_scalings", "units", "leak_rates")


@dataclass(frozen=True)
class SweepConfig:
    spectral_radii: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.5)
    input_scalings: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
    units: tuple[int, ...] = (512,)
    leak_rates: tuple[float, ...] = (1.0,)
    sources: tuple[str, ...] = SOURCES
    steps: int = 300
    washout: int = 50
    connectivity: float = 0.1
    synthetic_dim: int = 1  # synthetic input: i.i.d. U(-1, 1) in this many channels
    band_radius: float = 0.95
    max_saturation: float = 0.2
    min_separation_fraction: float = 0.5
    forget_tolerance: float = 1e-3  # the initial-state difference has died out below this fraction

    def __post_init__(self) -> None:
        for axis in GRID_AXES:
            values = getattr(self, axis)
            if len(values) == 0:
                raise ConfigError(
                    f"the sweep grid is empty: give at least one value for {axis.replace('_', '-')}"
                )
            object.__setattr__(self, axis, tuple(values))
        for radius in self.spectral_radii:
            if not radius > 0 or not math.isfinite(radius):
                raise ConfigError(f"spectral radii must be > 0, got {radius!r}")
        for scaling in self.input_scalings:
            if not scaling >= 0 or not math.isfinite(scaling):
                raise ConfigError(f"input scalings must be >= 0, got {scaling!r}")
        for units in self.units:
            if not isinstance(units, int) or units < 2:
                raise ConfigError(f"units must be integers >= 2, got {units!r}")
        for leak in self.leak_rates:
            if not 0 < leak <= 1:
                raise ConfigError(f"leak rates must be in (0, 1], got {leak!r}")
        if not self.sources or any(s not in SOURCES for s in self.sources):
            raise ConfigError(
                f"sources must be one or more of {', '.join(SOURCES)}, got {list(self.sources)}"
            )
        object.__setattr__(self, "sources", tuple(self.sources))
        if self.washout < 0 or self.steps < self.washout + 2:
            raise ConfigError(f"steps ({self.steps}) must exceed washout ({self.washout}) by at least 2")
        if self.synthetic_dim < 1:
            raise ConfigError(f"synthetic_dim must be >= 1, got {self.synthetic_dim}")
        if not 0 <= self.max_saturation <= 1 or not 0 <= self.min_separation_fraction <= 1:
            raise ConfigError("max_saturation and min_separation_fraction must lie in [0, 1]")
        ReservoirConfig(connectivity=self.connectivity)  # validates it

    def to_dict(self) -> dict:
        return asdict(self)


def _inputs(
    source: str, steps: int, rng: np.random.Generator, bank: ActivationBank | None, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Two independent input sequences (T, d) of one source."""
    if source == "synthetic":
        return tuple(rng.uniform(-1.0, 1.0, size=(2, steps, dim)).astype(np.float32))  # type: ignore[return-value]
    if bank is None:
        raise ConfigError("the model source needs captured activations")
    rows = bank.all()
    return rows[rng.integers(0, len(rows), size=steps)], rows[rng.integers(0, len(rows), size=steps)]


def project(reservoir: Reservoir, inputs: np.ndarray) -> np.ndarray:
    """W_in x(t) at input scaling 1 (no bias) for inputs (T, d) -> (T, K); a grid point rescales it."""
    return np.asarray(inputs, dtype=np.float32) @ reservoir.w_in.numpy().T


def sweep_point(
    reservoir: Reservoir,
    projected_a: np.ndarray,
    projected_b: np.ndarray,
    initial: np.ndarray,
    spectral_radius: float,
    input_scaling: float,
    washout: int,
) -> dict[str, float]:
    """All observables at one grid point. ``reservoir`` has spectral radius 1 and input scaling 1;
    ``projected_a`` / ``projected_b`` are :func:`project` of two input sequences; ``initial`` (2, K)."""
    bias = reservoir.bias.numpy()
    zero = np.broadcast_to(bias, projected_a.shape)
    driven_a = input_scaling * projected_a + bias
    driven_b = input_scaling * projected_b + bias
    input_drive = np.stack([zero, zero, driven_a, driven_a, driven_a, driven_b], axis=1)  # (T, 6, K)
    start = np.zeros((6, reservoir.units), dtype=np.float32)
    start[0] = start[2] = initial[0]
    start[1] = start[3] = initial[1]
    states = dynamics.iterate(
        reservoir, input_drive, len(input_drive), 6, start, spectral_scale=spectral_radius
    )
    driven = states[washout:, 4]
    dimension, fraction = dynamics.effective_dimension(driven)
    return {
        "saturation": dynamics.saturation_fraction(driven),
        "effective_dimension": dimension,
        "effective_dimension_fraction": fraction,
        "separation": dynamics.input_separation(driven, states[washout:, 5]),
        "echo_residual_zero_input": dynamics.state_distance_ratio(
            states[:, 0], states[:, 1], initial[0], initial[1]
        ),
        "echo_residual_driven": dynamics.state_distance_ratio(
            states[:, 2], states[:, 3], initial[0], initial[1]
        ),
    }


def stateless_point(
    reservoir: Reservoir, projected_a: np.ndarray, projected_b: np.ndarray, input_scaling: float, washout: int
) -> dict[str, float]:
    """The control: the same W_in and b without recurrence, r(t) = tanh(W_in x(t) + b)."""
    bias = reservoir.bias.numpy()
    features_a = np.tanh(input_scaling * projected_a[washout:] + bias)
    features_b = np.tanh(input_scaling * projected_b[washout:] + bias)
    dimension, fraction = dynamics.effective_dimension(features_a)
    return {
        "saturation": dynamics.saturation_fraction(features_a),
        "effective_dimension": dimension,
        "effective_dimension_fraction": fraction,
        "separation": dynamics.input_separation(features_a, features_b),
    }


def run_sweep(
    config: SweepConfig, seeds: list[int], bank: ActivationBank | None = None, progress=None
) -> dict:
    """Every grid point for every source and seed -> ``points``, ``stateless`` rows and ``summary``."""
    points, stateless = [], []
    for source in config.sources:
        dim = config.synthetic_dim if source == "synthetic" else (bank.dim if bank is not None else 0)
        for units in config.units:
            for leak in config.leak_rates:
                for seed in seeds:
                    reservoir = Reservoir(
                        ReservoirConfig(
                            units=units,
                            spectral_radius=1.0,
                            leak_rate=leak,
                            input_scaling=1.0,
                            connectivity=config.connectivity,
                            seed=seed,
                        ),
                        dim,
                    )
                    rng = np.random.default_rng(seed)
                    inputs_a, inputs_b = _inputs(source, config.steps, rng, bank, dim)
                    projected_a, projected_b = project(reservoir, inputs_a), project(reservoir, inputs_b)
                    # Initial states from their own stream: the same for every source.
                    initial_rng = np.random.default_rng([seed, 1])
                    initial = dynamics.antipodal_states(units, initial_rng)
                    base = {"source": source, "units": units, "leak_rate": leak, "seed": seed}
                    for scaling in config.input_scalings:
                        stateless.append(
                            {
                                **base,
                                "input_scaling": scaling,
                                **stateless_point(
                                    reservoir, projected_a, projected_b, scaling, config.washout
                                ),
                            }
                        )
                        for radius in config.spectral_radii:
                            metrics = sweep_point(
                                reservoir, projected_a, projected_b, initial, radius, scaling, config.washout
                            )
                            points.append(
                                {**base, "spectral_radius": radius, "input_scaling": scaling, **metrics}
                            )
                    if progress is not None:
                        progress(f"{source} units={units} leak={leak} seed={seed}")
    return {"points": points, "stateless": stateless, "summary": summarise(config, points, stateless)}


def _mean_over_seeds(rows: list[dict], keys: dict, metric: str) -> dict[str, float] | None:
    values = [row[metric] for row in rows if all(row[k] == v for k, v in keys.items())]
    return seed_summary(values) if values else None


def crossing(xs: list[float], ys: list[float], level: float, log_x: bool = False) -> float | None:
    """First x where y rises through ``level`` (linear interpolation, in log x if asked); None if never."""
    for (x0, y0), (x1, y1) in zip(zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True), strict=False):
        if y0 < level <= y1:
            a, b = (math.log(x0), math.log(x1)) if log_x else (x0, x1)
            value = a + (level - y0) / (y1 - y0) * (b - a)
            return float(math.exp(value) if log_x else value)
    return None


def summarise(config: SweepConfig, points: list[dict], stateless: list[dict]) -> dict:
    """Per (source, units, leak rate): the echo-state boundary and the input-scaling band (seed means)."""
    radii = sorted(config.spectral_radii)
    scalings = sorted(config.input_scalings)
    band_radius = min(radii, key=lambda r: abs(r - config.band_radius))
    summary = []
    for source in config.sources:
        for units in config.units:
            for leak in config.leak_rates:
                where = {"source": source, "units": units, "leak_rate": leak}
                echo_zero = [
                    _mean_over_seeds(points, {**where, "spectral_radius": r}, "echo_residual_zero_input")[
                        "mean"
                    ]
                    for r in radii
                ]
                saturation = [
                    _mean_over_seeds(
                        points, {**where, "spectral_radius": band_radius, "input_scaling": s}, "saturation"
                    )["mean"]
                    for s in scalings
                ]
                separation = [
                    _mean_over_seeds(
                        points, {**where, "spectral_radius": band_radius, "input_scaling": s}, "separation"
                    )["mean"]
                    for s in scalings
                ]
                unsaturated = [
                    sep
                    for sat, sep in zip(saturation, separation, strict=True)
                    if sat <= config.max_saturation
                ]
                top = max(unsaturated, default=0.0)
                band = [
                    s
                    for s, sat, sep in zip(scalings, saturation, separation, strict=True)
                    if sat <= config.max_saturation
                    and top > 0
                    and sep >= config.min_separation_fraction * top
                ]
                below = [r for r, e in zip(radii, echo_zero, strict=True) if e < config.forget_tolerance]
                above = [r for r, e in zip(radii, echo_zero, strict=True) if e >= config.forget_tolerance]
                log_echo = [math.log10(max(e, ECHO_FLOOR)) for e in echo_zero]
                summary.append(
                    {
                        **where,
                        "echo_boundary": {
                            "last_radius_forgetting": max(below) if below else None,
                            "first_radius_remembering": min(above) if above else None,
                            "crossing_tolerance": crossing(
                                radii, log_echo, math.log10(config.forget_tolerance)
                            ),
                        },
                        "band_radius": band_radius,
                        "band_input_scalings": band,
                        "saturation_crosses_0.5_at_scaling": crossing(scalings, saturation, 0.5, log_x=True),
                        "saturation_crosses_max_at_scaling": crossing(
                            scalings, saturation, config.max_saturation, log_x=True
                        ),
                    }
                )
    return {"rows": summary}


def plot(results: dict, path) -> None:
    """Heatmaps per source (saturation, separation, driven echo residual, effective dimension) for the
    first units / leak rate of the grid, and curves with the stateless control; drawn from ``results``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ran.plots import save_figure

    config = results["config"]
    points, stateless = results["points"], results["stateless"]
    radii, scalings = sorted(config["spectral_radii"]), sorted(config["input_scalings"])
    units, leak = config["units"][0], config["leak_rates"][0]
    sources = config["sources"]
    summary = {
        row["source"]: row
        for row in results["summary"]["rows"]
        if row["units"] == units and row["leak_rate"] == leak
    }
    band_radius = next(iter(summary.values()))["band_radius"]

    def grid(source: str, metric: str) -> np.ndarray:
        out = np.full((len(radii), len(scalings)), np.nan)
        for i, r in enumerate(radii):
            for j, s in enumerate(scalings):
                stats = _mean_over_seeds(
                    points,
                    {
                        "source": source,
                        "units": units,
                        "leak_rate": leak,
                        "spectral_radius": r,
                        "input_scaling": s,
                    },
                    metric,
                )
                out[i, j] = stats["mean"] if stats else np.nan
        return out

    def curve(rows: list[dict], keys: dict, metric: str, axis: str, values: list[float]):
        stats = [_mean_over_seeds(rows, {**keys, axis: v}, metric) for v in values]
        return np.array([s["mean"] for s in stats]), np.array([s["std"] for s in stats])

    heatmaps = [
        ("saturation", "saturation |r|>0.95", "magma", (0, 1)),
        ("separation", "input separation (RMS/unit)", "viridis", None),
        ("echo_residual_driven", "log10 echo residual, driven", "coolwarm", (-16, 0)),
        ("effective_dimension_fraction", "effective dim / K", "viridis", None),
    ]
    fig, axes = plt.subplots(len(sources) + 1, 4, figsize=(18, 4.2 * (len(sources) + 1)), squeeze=False)
    seeds = results["seeds"]
    where = {"units": units, "leak_rate": leak}
    ax = axes[0, 0]
    for source in sources:
        mean, std = curve(
            points, {**where, "source": source}, "echo_residual_zero_input", "spectral_radius", radii
        )
        ax.plot(radii, np.maximum(mean, ECHO_FLOOR), marker="o", label=f"{source} (zero input, seed mean)")
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.axhline(config["forget_tolerance"], color="red", lw=0.8, ls="--", label="forgotten below this")
    ax.set_yscale("log")
    ax.set(
        xlabel="spectral radius", ylabel="initial-state difference left", title="echo-state test, zero input"
    )
    ax.legend(fontsize=8)
    for col, (metric, label) in enumerate(
        [
            ("saturation", "saturation"),
            ("separation", "separation"),
            ("effective_dimension_fraction", "effective dim / K"),
        ],
        start=1,
    ):
        ax = axes[0, col]
        for source in sources:
            keys = {**where, "source": source}
            mean, std = curve(
                points, {**keys, "spectral_radius": band_radius}, metric, "input_scaling", scalings
            )
            line = ax.errorbar(scalings, mean, yerr=std, marker="o", capsize=3, label=f"{source}: reservoir")
            mean, std = curve(stateless, keys, metric, "input_scaling", scalings)
            ax.errorbar(
                scalings,
                mean,
                yerr=std,
                marker="x",
                ls="--",
                capsize=3,
                color=line[0].get_color(),
                alpha=0.6,
                label=f"{source}: stateless tanh(W_in x)",
            )
            band = summary[source]["band_input_scalings"]
            if band and col == 1:
                ax.axvspan(min(band), max(band), color=line[0].get_color(), alpha=0.12)
        ax.set_xscale("log")
        ax.set(xlabel="input scaling", ylabel=label, title=f"{label} vs input scaling (rho={band_radius})")
        ax.legend(fontsize=7)
    for row, source in enumerate(sources, start=1):
        for col, (metric, label, cmap, limits) in enumerate(heatmaps):
            ax = axes[row, col]
            values = grid(source, metric)
            if metric.startswith("echo"):
                values = np.log10(np.maximum(values, ECHO_FLOOR))
            vmin, vmax = limits if limits else (np.nanmin(values), np.nanmax(values))
            image = ax.imshow(values, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_xticks(range(len(scalings)), [f"{s:g}" for s in scalings], rotation=60, fontsize=7)
            ax.set_yticks(range(len(radii)), [f"{r:g}" for r in radii], fontsize=7)
            ax.set(xlabel="input scaling", ylabel="spectral radius", title=f"{source}: {label}")
            fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(
        f"ran sweep: K={units}, leak {leak}, {config['steps']} steps, seeds {seeds} "
        f"(mean over seeds; error bars: std)",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_figure(fig, path, dpi=80)


def table(record: dict) -> str:
    """Per source, units and leak rate: the echo-state boundary and the input-scaling band (from the results JSON)."""
    config = record["config"]
    rows = []
    for row in record["summary"]["rows"]:
        boundary, band = row["echo_boundary"], row["band_input_scalings"]
        forgetting, remembering = boundary["last_radius_forgetting"], boundary["first_radius_remembering"]
        rows.append([row["source"], str(row["units"]), f"{row['leak_rate']:g}",
                     f"{_format(forgetting)} .. {_format(remembering)}",
                     f"{min(band):g} .. {max(band):g}" if band else "none",
                     _format(row["saturation_crosses_0.5_at_scaling"])])
    heading = (f"{len(record['points'])} runs (grid x sources x seeds {record['seeds']}); band at "
               f"rho={record['summary']['rows'][0]['band_radius']}, saturation <= {config['max_saturation']}, "
               f"separation >= {config['min_separation_fraction']} x its max")
    header = ["source", "units", "leak", "echo boundary (rho, zero input)", "band (input scaling)",
              "saturation 0.5 at"]
    return heading + "\n" + format_table(header, rows)


def _format(value) -> str:
    return "-" if value is None else f"{value:.3g}"
