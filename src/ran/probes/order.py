"""``order``: does the state hold a list of items in the order they came, in a form a linear map can read?

The sequence task ("Item: tiger." / "Item: stone." / "Item: apple." / "The items were" -> " tiger, stone,
apple") is at the floor on every recipe. Its answer reads the list from the start. In a linear reservoir an item's
trace in the state is set by how many passes ago it came, so the k-th item from the end always sits at the same
delay, but the j-th from the start sits at delay L - j, which changes with the list's length L. Whether a linear
map of the state reads the first order as well as the second is measured here, without training the model.

Episodes of 3-6 distinct items out of ``words`` (the task's sizes) drive the reservoir from a zero state, as the
battery wipes it between episodes. The state after the last item is what the answering pass reads. Ridge readouts
on one-hot targets are fitted on training episodes and scored on held-out ones. Each readout's penalty is the one
of ``penalties`` best on a fifth of the training episodes held back. The readouts are:

- forward place j: the j-th item from the start (the answer's order), over the episodes with at least j items;
- backward place k: the k-th item from the end;
- the length;
- the whole list, scored as the task scores it (exact match and normalised edit distance). It is read two ways:
  forward (the decoded length, then forward places 1..L), and backward (backward places L..1).

The stateless control is the same readouts on the current input: the last item's pass alone.
Items are random vectors (synthetic) or the model's activations of the task's item passes (model), taken at the
pass's last token (``read`` "pass", what the read "last" takes in) or at the word (``read`` "word", what a read
labelled {word} takes in).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from ran import dynamics
from ran.errors import ConfigError
from ran.probes.readout import Ridge, fit_ridges
from ran.probes.results import format_table, pm
from ran.probes.sources import SOURCES, ActivationBank
from ran.reservoir import Reservoir, ReservoirConfig
from ran.stats import seed_summary
from ran.tasks.sequence import edit_distance

READS = ("pass", "word")
READOUTS = (("state", "reservoir state"), ("stateless", "stateless (last item's input)"))


@dataclass(frozen=True)
class OrderConfig:
    reservoir: ReservoirConfig = ReservoirConfig()
    source: str = "synthetic"
    read: str = "pass"  # the model source's item input: the pass's last token | the word's last token
    words: int = 12  # the items drawn from (the model source has the sequence task's 12)
    list_length: tuple[int, int] = (3, 6)  # items per list, inclusive
    train_episodes: int = 3000
    test_episodes: int = 1000
    penalties: tuple[float, ...] = (1e-6, 1e-4, 1e-2, 1e-1, 1.0)  # relative ridge penalties (readout.fit_ridge)
    synthetic_dim: int = 16

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"unknown source '{self.source}': choose one of {', '.join(SOURCES)}")
        if self.read not in READS:
            raise ConfigError(f"unknown read '{self.read}': choose one of {', '.join(READS)}")
        object.__setattr__(self, "list_length", tuple(self.list_length))
        object.__setattr__(self, "penalties", tuple(self.penalties))
        low, high = self.list_length if len(self.list_length) == 2 else (0, 0)
        if len(self.list_length) != 2 or not 1 <= low <= high:
            raise ConfigError(f"list_length must be two integers 1 <= low <= high, got {list(self.list_length)}")
        if not isinstance(self.words, int) or self.words < high:
            raise ConfigError(f"words must be an integer >= the longest list ({high}), got {self.words!r}")
        if self.train_episodes < 10 or self.test_episodes < 1:
            raise ConfigError(f"train_episodes must be >= 10 and test_episodes >= 1, got {self.train_episodes} "
                              f"and {self.test_episodes}")
        if not self.penalties or any(not p >= 0 for p in self.penalties):
            raise ConfigError(f"penalties must be one or more numbers >= 0, got {list(self.penalties)}")
        if self.synthetic_dim < 1:
            raise ConfigError(f"synthetic_dim must be >= 1, got {self.synthetic_dim}")

    def to_dict(self) -> dict:
        return asdict(self)


def item_vectors(config: OrderConfig, rng: np.random.Generator, bank: ActivationBank | None) -> np.ndarray:
    """(words, d): each item's reservoir input."""
    if config.source == "synthetic":
        return rng.uniform(-1.0, 1.0, size=(config.words, config.synthetic_dim)).astype(np.float32)
    items = None if bank is None else bank.item_passes if config.read == "pass" else bank.item_words
    if items is None:
        raise ConfigError("the model source needs captured item activations (ran.probes.sources.capture_bank)")
    if config.words > len(items):
        raise ConfigError(f"words {config.words}: the model source has {len(items)} item passes")
    return np.asarray(items[: config.words], dtype=np.float32)


def draw_lists(config: OrderConfig, count: int, rng: np.random.Generator) -> list[list[int]]:
    """``count`` lists of distinct item indices, lengths uniform over ``config.list_length``."""
    low, high = config.list_length
    return [rng.permutation(config.words)[: rng.integers(low, high + 1)].tolist() for _ in range(count)]


def final_states(reservoir: Reservoir, vectors: np.ndarray, lists: list[list[int]]) -> np.ndarray:
    """(episodes, K): the state after each list's last item, from a zero state; lists of a length run together."""
    states = np.empty((len(lists), reservoir.units), dtype=np.float32)
    lengths = np.array([len(items) for items in lists])
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        inputs = vectors[np.array([lists[i] for i in rows])].transpose(1, 0, 2)  # (L, B, d)
        states[rows] = dynamics.drive(reservoir, inputs)[-1]
    return states


def fit_decoders(features: np.ndarray, tasks: dict[str, tuple[np.ndarray, np.ndarray, int]],
                 penalties: tuple[float, ...]) -> dict[str, tuple[Ridge, float]]:
    """One-hot ridge readouts: ``tasks[name]`` = (rows of ``features``, their labels, classes) -> (readout of
    that name's classes, its penalty). Each penalty is the one whose fit to the first four fifths of its rows scores
    best on the last fifth; the readout is then refitted on all of them. Tasks on the same rows share one Gram
    matrix (:func:`fit_ridges`)."""
    by_rows: dict[bytes, list[str]] = {}
    for name, (rows, _, _) in tasks.items():
        by_rows.setdefault(np.asarray(rows).tobytes(), []).append(name)
    decoders = {}
    for names in by_rows.values():
        rows = tasks[names[0]][0]
        x = features[rows]
        columns, start = {}, 0
        for name in names:
            columns[name] = slice(start, start + tasks[name][2])
            start += tasks[name][2]
        y = np.concatenate([np.eye(tasks[name][2])[tasks[name][1]] for name in names], axis=1)
        cut = int(len(rows) * 0.8)
        chosen = dict.fromkeys(names, penalties[0])
        if 2 <= cut < len(rows) and len(penalties) > 1:
            predictions = [readout.predict(x[cut:]) for readout in fit_ridges(x[:cut], y[:cut], penalties)]
            for name in names:
                labels = tasks[name][1][cut:]
                scores = [np.mean(p[:, columns[name]].argmax(1) == labels) for p in predictions]
                chosen[name] = penalties[int(np.argmax(scores))]
        distinct = tuple(dict.fromkeys(chosen.values()))
        fitted = dict(zip(distinct, fit_ridges(x, y, distinct), strict=True))
        for name in names:
            readout = fitted[chosen[name]]
            decoders[name] = (Ridge(readout.weights[:, columns[name]], readout.intercept[columns[name]]),
                              chosen[name])
    return decoders


def decode(config: OrderConfig, train_x: np.ndarray, train_lists: list[list[int]], test_x: np.ndarray,
           test_lists: list[list[int]]) -> dict:
    """Every readout of the module docstring fitted on (train_x, train_lists) and scored on the test lists."""
    low, high = config.list_length
    train_len, test_len = np.array([len(x) for x in train_lists]), np.array([len(x) for x in test_lists])
    tasks = {"length": (np.arange(len(train_lists)), train_len - low, high - low + 1)}
    for place in range(1, high + 1):
        rows = np.flatnonzero(train_len >= place)
        tasks[f"forward {place}"] = (rows, np.array([train_lists[i][place - 1] for i in rows]), config.words)
        tasks[f"backward {place}"] = (rows, np.array([train_lists[i][-place] for i in rows]), config.words)
    decoders = fit_decoders(train_x, tasks, config.penalties)
    guess = {name: readout.predict(test_x).argmax(1) for name, (readout, _) in decoders.items()}
    decoded_length = guess["length"] + low

    def place_accuracy(direction: str) -> list[float]:
        out = []
        for place in range(1, high + 1):
            rows = np.flatnonzero(test_len >= place)
            truth = [test_lists[i][-place if direction == "backward" else place - 1] for i in rows]
            out.append(float(np.mean(guess[f"{direction} {place}"][rows] == truth)))
        return out

    reads: dict[str, dict] = {}
    for direction in ("forward", "backward"):
        exact, distance, by_length = [], [], {}
        for i, items in enumerate(test_lists):
            predicted = [int(guess[f"{direction} {place}"][i]) for place in range(1, int(decoded_length[i]) + 1)]
            predicted = predicted[::-1] if direction == "backward" else predicted
            exact.append(float(predicted == items))
            distance.append(edit_distance(predicted, items) / max(len(items), len(predicted)))
            by_length.setdefault(len(items), []).append(exact[-1])
        reads[direction] = {"exact": float(np.mean(exact)), "edit_distance": float(np.mean(distance)),
                            "exact_by_length": {str(k): float(np.mean(v)) for k, v in sorted(by_length.items())}}
    return {"forward_place": place_accuracy("forward"), "backward_place": place_accuracy("backward"),
            "length": float(np.mean(decoded_length == test_len)), "read_forward": reads["forward"],
            "read_backward": reads["backward"], "penalties": {name: penalty for name, (_, penalty) in decoders.items()}}


def run_order(config: OrderConfig, seeds: list[int], bank: ActivationBank | None = None, progress=None) -> dict:
    """Per seed (the reservoir's and the lists'), every readout on the state and on the last item's input."""
    per_seed = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        vectors = item_vectors(config, rng, bank)
        reservoir = Reservoir(replace(config.reservoir, seed=seed), vectors.shape[1])
        train_lists = draw_lists(config, config.train_episodes, rng)
        test_lists = draw_lists(config, config.test_episodes, rng)
        train_states, test_states = (final_states(reservoir, vectors, lists) for lists in (train_lists, test_lists))
        row = {"seed": seed, "fingerprint": reservoir.fingerprint,
               "saturation": dynamics.saturation_fraction(test_states)}
        for name, train_x, test_x in (("state", train_states, test_states),
                                      ("stateless", vectors[[x[-1] for x in train_lists]],
                                       vectors[[x[-1] for x in test_lists]])):
            row[name] = decode(config, train_x, train_lists, test_x, test_lists)
        per_seed.append(row)
        if progress is not None:
            state = row["state"]
            progress(f"seed {seed}: exact list, state {state['read_forward']['exact']:.3f} forward / "
                     f"{state['read_backward']['exact']:.3f} backward; stateless "
                     f"{row['stateless']['read_forward']['exact']:.3f}")
    summary = {}
    for name, _ in READOUTS:
        runs = [run[name] for run in per_seed]
        summary[name] = {
            "exact_forward": seed_summary([r["read_forward"]["exact"] for r in runs]),
            "exact_backward": seed_summary([r["read_backward"]["exact"] for r in runs]),
            "edit_distance_forward": seed_summary([r["read_forward"]["edit_distance"] for r in runs]),
            "edit_distance_backward": seed_summary([r["read_backward"]["edit_distance"] for r in runs]),
            "length": seed_summary([r["length"] for r in runs]),
            "first_item": seed_summary([r["forward_place"][0] for r in runs]),
            "last_item": seed_summary([r["backward_place"][0] for r in runs]),
        }
    return {"per_seed": per_seed, "summary": summary}


def plot(results: dict, path) -> None:
    """Accuracy per place, counted from the start and from the end, for the state and the stateless control."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ran.plots import save_figure

    config = results["config"]
    places = np.arange(1, config["list_length"][1] + 1)
    fig, ax = plt.subplots(figsize=(8, 4.4))
    for (name, label), style in zip(READOUTS, ("-", ":"), strict=True):
        for key, text, colour in (("forward_place", "j-th from the start", "C0"),
                                  ("backward_place", "k-th from the end", "C1")):
            curves = np.array([run[name][key] for run in results["per_seed"]])
            ax.plot(places, curves.mean(axis=0), style, color=colour, marker="o", label=f"{label}: {text}")
            ax.fill_between(places, curves.min(axis=0), curves.max(axis=0), color=colour, alpha=0.15)
    ax.axhline(1 / config["words"], color="grey", lw=0.8, ls="--", label=f"chance 1/{config['words']}")
    ax.set(xlabel="place in the list", ylabel="held-out accuracy of a linear readout", ylim=(-0.02, 1.05),
           xticks=places)
    ax.legend(fontsize=7, loc="center right")
    ax.grid(alpha=0.3)
    r, state = config["reservoir"], results["summary"]["state"]
    ax.set_title(f"ran order ({config['source']}, read {config['read']}): K={r['units']}, leak {r['leak_rate']}, "
                 f"scaling {r['input_scaling']}, seeds {results['seeds']}\nwhole list exact: forward "
                 f"{state['exact_forward']['mean']:.2f}, backward {state['exact_backward']['mean']:.2f}",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


def table(record: dict) -> str:
    """The whole list read forward and backward, the length, the first and the last item (from the results JSON)."""
    rows = []
    for name, label in READOUTS:
        s = record["summary"][name]
        rows.append([label, pm(s["exact_forward"]), pm(s["exact_backward"]), pm(s["edit_distance_forward"]),
                     pm(s["length"]), pm(s["first_item"]), pm(s["last_item"])])
    return format_table(["readout", "exact, forward", "exact, backward", "edit dist., forward", "length",
                         "first item", "last item"], rows)
