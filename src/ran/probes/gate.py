"""``gate``: the "unresolved thread" silence policy.

A rare trigger (each pass with probability ``trigger_rate``) opens a thread; the target is "speak" on
the trigger pass and the next ``window - 1`` passes, then silence. A linear readout (ridge regression on
0/1, thresholded where F1 is best on the training passes) reads either the reservoir state after the
pass or, as the stateless control, the current input only. Precision, recall and F1 on the held-out
second part of the run, per seed. The current input alone can only flag the trigger pass itself, so
its recall is bounded near 1 / window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from ran import dynamics
from ran.errors import ConfigError
from ran.probes.readout import fit_detector
from ran.probes.results import format_table, pm
from ran.probes.sources import SOURCES, ActivationBank, event_stream, passes_since
from ran.reservoir import Reservoir, ReservoirConfig
from ran.stats import seed_summary


@dataclass(frozen=True)
class GateConfig:
    reservoir: ReservoirConfig = ReservoirConfig()
    source: str = "synthetic"
    steps: int = 4000
    window: int = 5  # passes that should speak, counting the trigger pass
    trigger_rate: float = 0.02
    train_fraction: float = 0.5
    washout: int = 50
    ridge: float = 1e-6
    synthetic_dim: int = 8

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"unknown source '{self.source}': choose one of {', '.join(SOURCES)}")
        if not isinstance(self.window, int) or self.window < 1:
            raise ConfigError(f"window must be an integer >= 1, got {self.window!r}")
        if not 0 < self.trigger_rate < 1:
            raise ConfigError(f"trigger_rate must be in (0, 1), got {self.trigger_rate!r}")
        if not 0 < self.train_fraction < 1:
            raise ConfigError(f"train_fraction must be in (0, 1), got {self.train_fraction!r}")
        if self.washout < 0 or self.steps - self.washout < 20:
            raise ConfigError(f"steps ({self.steps}) must exceed washout ({self.washout}) by at least 20")

    def to_dict(self) -> dict:
        return asdict(self)


def thread_targets(trigger: np.ndarray, window: int) -> np.ndarray:
    """1 on a trigger pass and the ``window - 1`` passes after it, else 0."""
    since = passes_since(trigger)
    return (since >= 0) & (since < window)


def run_gate(config: GateConfig, seeds: list[int], bank: ActivationBank | None = None, progress=None) -> dict:
    per_seed = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        trigger = rng.random(config.steps) < config.trigger_rate
        stream = event_stream(trigger, np.zeros_like(trigger), config.source, rng, bank, config.synthetic_dim)
        reservoir = Reservoir(replace(config.reservoir, seed=seed), stream.inputs.shape[1])
        states = dynamics.drive(reservoir, stream.inputs[:, None, :])[:, 0]  # (T, K)
        targets = thread_targets(trigger, config.window)
        split = config.washout + int((config.steps - config.washout) * config.train_fraction)
        train, test = slice(config.washout, split), slice(split, None)
        row = {
            "seed": seed,
            "fingerprint": reservoir.fingerprint,
            "n_triggers_train": int(trigger[train].sum()),
            "n_triggers_test": int(trigger[test].sum()),
            "positive_rate": float(targets[test].mean()),
            "saturation": dynamics.saturation_fraction(states[config.washout :]),
        }
        for name, features in (("state", states), ("stateless", stream.inputs)):
            row[name] = fit_detector(
                features[train], targets[train], features[test], targets[test], config.ridge
            ).to_dict()
        per_seed.append(row)
        if progress is not None:
            progress(
                f"seed {seed}: F1 state {row['state']['f1']:.3f}, stateless {row['stateless']['f1']:.3f}"
            )
    summary = {
        name: {
            metric: seed_summary([run[name][metric] for run in per_seed])
            for metric in ("precision", "recall", "f1")
        }
        for name in ("state", "stateless")
    }
    return {"per_seed": per_seed, "summary": summary}


def plot(results: dict, path) -> None:
    """Precision, recall and F1 of the state gate beside the stateless gate, one dot per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ran.plots import save_figure

    metrics = ("precision", "recall", "f1")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    width = 0.38
    for offset, (name, label) in zip(
        (-width / 2, width / 2),
        (("state", "reservoir state"), ("stateless", "stateless: current input")),
        strict=True,
    ):
        means = [results["summary"][name][m]["mean"] for m in metrics]
        stds = [results["summary"][name][m]["std"] for m in metrics]
        positions = np.arange(len(metrics)) + offset
        bars = ax.bar(positions, means, width, yerr=stds, capsize=4, label=label, alpha=0.8)
        for i, m in enumerate(metrics):
            values = [run[name][m] for run in results["per_seed"]]
            ax.scatter(np.full(len(values), positions[i]), values, color="k", s=10, zorder=3)
            ax.text(
                positions[i],
                means[i] + 0.03,
                f"{means[i]:.2f}",
                ha="center",
                fontsize=8,
                color=bars[0].get_facecolor(),
            )
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set(ylim=(0, 1.25), ylabel="held-out score")
    ax.legend(fontsize=8, loc="upper right", ncols=2)
    config = results["config"]
    r = config["reservoir"]
    ax.set_title(
        f"ran gate ({config['source']}): speak for {config['window']} passes after a trigger\n"
        f"K={r['units']}, rho={r['spectral_radius']}, scaling {r['input_scaling']}, T={config['steps']}, "
        f"seeds {results['seeds']}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_figure(fig, path, dpi=80)


def table(record: dict) -> str:
    """Precision, recall and F1 of the gate on the state and on the current input (from the results JSON)."""
    rows = []
    for name, label in (("state", "reservoir state"), ("stateless", "stateless (input)")):
        s = record["summary"][name]
        rows.append([label, pm(s["precision"]), pm(s["recall"]), pm(s["f1"])])
    return format_table(["gate reads", "precision", "recall", "F1"], rows)
