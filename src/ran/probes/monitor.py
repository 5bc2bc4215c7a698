"""``monitor``: what a linear probe can read off the state about time and interruptions.

- clock: triggers arrive with gaps drawn uniformly from ``[gap_min, gap_max]`` passes; a ridge readout
  decodes passes-since-last-trigger, R^2 on the held-out second part of the run, state vs current input.
- drift: the same clock probe when the input drifts: ``x(t) + level * rms(x) * (t / T) * v`` with a fixed
  random direction ``v`` of unit RMS, so by the end of the run the input has moved ``level`` times its own
  RMS. The readout is trained on the first part and tested on the later, more drifted, part.
- interruptibility: rare one-shot STOP passes (probability ``stop_rate``); for each lag j a detector
  (ridge on 0/1, threshold where F1 is best on training passes) is trained for "a STOP arrived j passes
  ago". The STOP counts as detectable j passes after arrival while held-out F1 >= ``detect_f1``; the
  reported number is how many passes in a row after arrival (j = 1, 2, ...) it stays detectable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from ran import dynamics
from ran.errors import ConfigError
from ran.probes.readout import fit_detector, fit_ridge, r_squared
from ran.probes.results import format_table, pm
from ran.probes.sources import SOURCES, ActivationBank, event_stream, passes_since
from ran.reservoir import Reservoir, ReservoirConfig
from ran.stats import seed_summary

TRACE_LENGTH = 200  # passes of the first seed's held-out clock decode kept in the results for the figure


@dataclass(frozen=True)
class MonitorConfig:
    reservoir: ReservoirConfig = ReservoirConfig()
    source: str = "synthetic"
    steps: int = 4000
    gap_min: int = 5
    gap_max: int = 30
    drifts: tuple[float, ...] = (0.0, 0.1, 0.2, 0.4, 0.8)
    stop_rate: float = 0.03
    max_lag: int = 10
    detect_f1: float = 0.8
    train_fraction: float = 0.5
    washout: int = 50
    ridge: float = 1e-6
    synthetic_dim: int = 8

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"unknown source '{self.source}': choose one of {', '.join(SOURCES)}")
        if not 1 <= self.gap_min <= self.gap_max:
            raise ConfigError(f"need 1 <= gap_min <= gap_max, got {self.gap_min} and {self.gap_max}")
        if any(not level >= 0 for level in self.drifts):
            raise ConfigError(f"drift levels must be >= 0, got {list(self.drifts)}")
        object.__setattr__(self, "drifts", tuple(self.drifts))
        if not 0 < self.stop_rate < 1:
            raise ConfigError(f"stop_rate must be in (0, 1), got {self.stop_rate!r}")
        if self.max_lag < 1:
            raise ConfigError(f"max_lag must be >= 1, got {self.max_lag}")
        if not 0 < self.detect_f1 <= 1:
            raise ConfigError(f"detect_f1 must be in (0, 1], got {self.detect_f1!r}")
        if not 0 < self.train_fraction < 1:
            raise ConfigError(f"train_fraction must be in (0, 1), got {self.train_fraction!r}")
        if self.washout < 0 or self.steps - self.washout < 4 * self.gap_max:
            raise ConfigError(
                f"steps ({self.steps}) must exceed washout ({self.washout}) by at least "
                f"4 * gap_max = {4 * self.gap_max}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def clock_triggers(steps: int, gap_min: int, gap_max: int, rng: np.random.Generator) -> np.ndarray:
    """Trigger passes with gaps drawn uniformly from [gap_min, gap_max], the first within gap_max passes."""
    trigger = np.zeros(steps, dtype=bool)
    position = int(rng.integers(0, gap_max))
    while position < steps:
        trigger[position] = True
        position += int(rng.integers(gap_min, gap_max + 1))
    return trigger


def drifted(inputs: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """``inputs`` (T, d) plus a linear drift reaching ``level`` times their RMS at the last pass."""
    if level == 0:
        return inputs
    direction = rng.standard_normal(inputs.shape[1])
    direction /= np.sqrt(np.mean(direction**2))
    rms = float(np.sqrt(np.mean(inputs.astype(np.float64) ** 2)))
    ramp = np.linspace(0.0, 1.0, len(inputs))[:, None]  # (T, 1)
    return (inputs + level * rms * ramp * direction).astype(np.float32)


def _split(config: MonitorConfig) -> tuple[slice, slice]:
    split = config.washout + int((config.steps - config.washout) * config.train_fraction)
    return slice(config.washout, split), slice(split, None)


def _clock_r2(features: np.ndarray, target: np.ndarray, config: MonitorConfig) -> tuple[float, np.ndarray]:
    train, test = _split(config)
    readout = fit_ridge(features[train], target[train], config.ridge)
    predicted = readout.predict(features[test])[:, 0]
    return r_squared(predicted, target[test]), predicted


def run_monitor(
    config: MonitorConfig, seeds: list[int], bank: ActivationBank | None = None, progress=None
) -> dict:
    per_seed = []
    train, test = _split(config)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        trigger = clock_triggers(config.steps, config.gap_min, config.gap_max, rng)
        clock = event_stream(trigger, np.zeros_like(trigger), config.source, rng, bank, config.synthetic_dim)
        reservoir = Reservoir(replace(config.reservoir, seed=seed), clock.inputs.shape[1])
        target = passes_since(trigger).astype(np.float64)
        row: dict = {"seed": seed, "fingerprint": reservoir.fingerprint, "drift": []}
        drift_rng = np.random.default_rng([seed, 1])
        for level in config.drifts:
            inputs = drifted(clock.inputs, level, drift_rng)
            states = dynamics.drive(reservoir, inputs[:, None, :])[:, 0]  # (T, K)
            state_r2, state_trace = _clock_r2(states, target, config)
            input_r2, input_trace = _clock_r2(inputs, target, config)
            row["drift"].append({"level": level, "state_r2": state_r2, "stateless_r2": input_r2})
            if level == 0:
                row["clock"] = {
                    "state_r2": state_r2,
                    "stateless_r2": input_r2,
                    "saturation": dynamics.saturation_fraction(states[config.washout :]),
                }
                if not per_seed:
                    row["clock"]["trace"] = {
                        "target": target[test][:TRACE_LENGTH],
                        "state": state_trace[:TRACE_LENGTH],
                        "stateless": input_trace[:TRACE_LENGTH],
                    }

        stop = rng.random(config.steps) < config.stop_rate
        interrupt = event_stream(np.zeros_like(stop), stop, config.source, rng, bank, config.synthetic_dim)
        states = dynamics.drive(reservoir, interrupt.inputs[:, None, :])[:, 0]
        lags = {"lag": list(range(config.max_lag + 1)), "state_f1": [], "stateless_f1": []}
        for lag in lags["lag"]:
            labels = np.zeros_like(stop)
            labels[lag:] = stop[: config.steps - lag]  # a STOP arrived `lag` passes ago
            for name, features in (("state", states), ("stateless", interrupt.inputs)):
                detection = fit_detector(
                    features[train], labels[train], features[test], labels[test], config.ridge
                )
                lags[f"{name}_f1"].append(detection.f1)
        for name in ("state", "stateless"):
            above = [f1 >= config.detect_f1 for f1 in lags[f"{name}_f1"][1:]]
            lags[f"{name}_detectable_passes"] = above.index(False) if False in above else len(above)
        row["interrupt"] = lags
        per_seed.append(row)
        if progress is not None:
            progress(
                f"seed {seed}: clock R2 state {row['clock']['state_r2']:.3f} / stateless "
                f"{row['clock']['stateless_r2']:.3f}; STOP detectable {lags['state_detectable_passes']} / "
                f"{lags['stateless_detectable_passes']} passes"
            )
    summary = {
        "clock": {
            name: seed_summary([run["clock"][f"{name}_r2"] for run in per_seed]) for name in ("state", "stateless")
        },
        "drift": [
            {
                "level": level,
                **{
                    name: seed_summary([run["drift"][i][f"{name}_r2"] for run in per_seed])
                    for name in ("state", "stateless")
                },
            }
            for i, level in enumerate(config.drifts)
        ],
        "interrupt": {
            name: seed_summary([run["interrupt"][f"{name}_detectable_passes"] for run in per_seed])
            for name in ("state", "stateless")
        },
    }
    return {"per_seed": per_seed, "summary": summary}


def plot(results: dict, path) -> None:
    """Clock decode trace, R^2 under drift and STOP detection F1 by lag, state beside the stateless probe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ran.plots import save_figure

    config, runs, summary = results["config"], results["per_seed"], results["summary"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.2))
    trace = runs[0]["clock"]["trace"]
    ax = axes[0]
    ax.plot(trace["target"], color="k", lw=1.5, label="passes since trigger")
    ax.plot(trace["state"], label=f"state probe (R^2 {summary['clock']['state']['mean']:.3f})")
    ax.plot(trace["stateless"], label=f"stateless probe (R^2 {summary['clock']['stateless']['mean']:.3f})")
    ax.set(
        xlabel="held-out pass",
        ylabel="passes since last trigger",
        title=f"clock probe (seed {runs[0]['seed']})",
    )
    ax.legend(fontsize=8)
    ax = axes[1]
    levels = [row["level"] for row in summary["drift"]]
    for name, label in (("state", "reservoir state"), ("stateless", "stateless: current input")):
        means = [row[name]["mean"] for row in summary["drift"]]
        stds = [row[name]["std"] for row in summary["drift"]]
        ax.errorbar(levels, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set(
        xlabel="input drift by the end of the run (x input RMS)",
        ylabel="held-out R^2",
        title="clock under drift",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[2]
    for name, label in (("state", "reservoir state"), ("stateless", "stateless: current input")):
        curves = np.array([run["interrupt"][f"{name}_f1"] for run in runs])
        lags = runs[0]["interrupt"]["lag"]
        passes = summary["interrupt"][name]
        ax.errorbar(
            lags,
            curves.mean(axis=0),
            yerr=curves.std(axis=0, ddof=1 if len(curves) > 1 else 0),  # the sample std, as in the JSON
            marker="o",
            capsize=3,
            label=f"{label}: detectable {passes['mean']:.1f} ± {passes['std']:.1f} passes after",
        )
    ax.axhline(config["detect_f1"], color="grey", ls=":", lw=0.8)
    ax.set(xlabel="passes since STOP", ylabel="held-out F1", ylim=(-0.02, 1.05), title="interruptibility")
    ax.legend(fontsize=8)
    r = config["reservoir"]
    fig.suptitle(
        f"ran monitor ({config['source']}): K={r['units']}, rho={r['spectral_radius']}, "
        f"scaling {r['input_scaling']}, T={config['steps']}, seeds {results['seeds']} (error bars: std)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_figure(fig, path, dpi=80)


def table(record: dict) -> str:
    """The clock probe (with and without drift) and STOP detection, state vs stateless (from the results JSON)."""
    s = record["summary"]
    rows = [["clock R^2 (no drift)", pm(s["clock"]["state"]), pm(s["clock"]["stateless"])]]
    rows += [[f"clock R^2, drift {row['level']:g}", pm(row["state"]), pm(row["stateless"])]
             for row in s["drift"] if row["level"] > 0]
    rows.append(["STOP detectable (passes after)", pm(s["interrupt"]["state"], 1), pm(s["interrupt"]["stateless"], 1)])
    return format_table(["probe", "reservoir state", "stateless (input)"], rows)
