"""Can a gate head on the reservoir's state keep an appointment? A probe of the timed task's gate alone.

The battery's timed task ("In N turns, say W." / wipe / N idle ticks, speak on the N-th) asks the gate head, one
linear unit on the state after each tick, to fire on tick N and on no tick before. This probe runs the timed task's
own episodes (``TimedTask``: N 1-8, the context wiped before the first tick) through the frozen SmolLM2-135M and a
fixed random reservoir in open loop (no readout writes back into the model, so the states are those of an
untrained artifact; a trained readout also feeds the state back through the layer), and fits gate heads on the
states of the trained words' episodes with the trainer's loss (binary cross-entropy), initialisation (zeros) and
optimiser (Adam, lr 1e-2, full batch). It scores them on the held-out words' episodes, as the battery does:
``on_time`` (silent before tick N, speaking on it) and ``silent_after`` (silent on tick N + 1), per N.

What the reservoir reads (``READS``):
- ``last``: the battery's default (``summary="last"``): layer L's output at each pass's last token, ticks included;
- ``N``: what the gated read (``summary="gated"``) takes in when read labels mark N alone (``--set
  timed.read={turns}``): N's token, RMS-normalised, and nothing on the ticks (every gate shut);
- ``span``: the same with the read labels of "{turns} turn{s}, say {word}": the mean of those tokens;
- ``word``: the same with the word alone (``--set timed.read={word}``).
And ``SPLIT``, the two-reads arm (``--running-units 1024 --running-read --write switched``): the held units take in
the word once and keep it, the running units N and then step on every tick; its gate reads the whole state or
(``--gate-reads running``) the running units alone; and its clock coupled to the held units through W_r (as ran
runs it) or isolated from them (``run_split``).
Heads: ``linear`` (the battery's gate head) and ``mlp`` (one hidden layer of 64 ReLU units). Control:
``stateless``, the same heads on the tick's own input (layer L at its last token), which knows how many ticks
since the wipe but not N. Reservoirs (``RESERVOIRS``): the battery's and others, 3 seeds each. And, before any
reservoir, ``n_decodable``: how well a linear classifier (8 ways, trained words) tells N of a held-out word's
instruction from what each read takes in. And ``schedules``: the heads on one reservoir (``SCHEDULED``) trained as
the battery trains (``SCHEDULES``: steps of 16 episodes drawn at random, AdamW with 5 warmup steps and cosine decay,
gradients clipped at norm 1, the loss a mean over episodes) instead of full batches.

    python docs/tasks/probe_timed.py   # writes docs/tasks/timed-probe.json, a few minutes on 2 cores
"""

import json
import time
from pathlib import Path

import torch

from ran.episodes import render
from ran.loading import load_model
from ran.passes import PassFormat, Renderer
from ran.provenance import environment
from ran.reservoir import Reservoir, ReservoirConfig, step_running
from ran.stats import seed_summary
from ran.tasks.timed import TimedTask
from ran.training import cosine_schedule

OUT = Path(__file__).resolve().parent / "timed-probe.json"  # beside this script: not a results file of ran
SEEDS = (0, 1, 2)
STEPS = 300
HIDDEN = 64
# (leak rate, input scaling, slowest leak of a spread or None): the battery's reservoir first.
READS = {"last": None, "N": "{turns}", "span": "{turns} turn{s}, say {word}", "word": "{word}"}  # the read labels'
# part (None: last)
# The two-reads arm (README, "Two reads"): leak rate, input scaling, running units; the held units take in the
# word once and keep it, the running ones N, then step on every tick. Its gate reads the whole state or
# (gate_reads "running") the running units alone.
SPLIT = (1.0, 0.05, 1024)
SCHEDULED = ((1.0, 0.2, None), "span")  # the reservoir and read the schedules are tried on
SCHEDULES = (150, 600)  # the battery's default steps, and four times them
# (leak rate, input scaling, slowest leak of a spread or None): the battery's reservoir first, then r52's.
RESERVOIRS = ((0.05, 0.2, None), (1.0, 0.05, 0.01), (0.5, 0.2, None), (1.0, 0.2, None), (1.0, 0.2, 0.01),
              (0.05, 0.02, None), (1.0, 0.02, None))


def head(kind: str, width: int) -> torch.nn.Module:
    last = torch.nn.Linear(width if kind == "linear" else HIDDEN, 1)
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    return last if kind == "linear" else torch.nn.Sequential(torch.nn.Linear(width, HIDDEN), torch.nn.ReLU(), last)


def fit(kind: str, inputs: torch.Tensor, labels: torch.Tensor, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    unit = head(kind, inputs.shape[1])
    optimiser = torch.optim.Adam(unit.parameters(), lr=1e-2)
    for _ in range(STEPS):
        optimiser.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(unit(inputs)[:, 0], labels).backward()
        optimiser.step()
    return unit


def fit_scheduled(kind: str, episodes: list[torch.Tensor], dues: list[int], steps: int, seed: int) -> torch.nn.Module:
    """As :func:`fit`, on the battery's schedule: 16 random episodes a step, warmup and cosine decay, clipping."""
    torch.manual_seed(seed)
    unit = head(kind, episodes[0].shape[1])
    optimiser = torch.optim.AdamW(unit.parameters(), lr=1e-2, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: cosine_schedule(step, steps, 5, True))
    draws = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        chosen = torch.randint(len(episodes), (16,), generator=draws).tolist()
        losses = [torch.nn.functional.binary_cross_entropy_with_logits(
            unit(episodes[i][1:])[:, 0], (torch.arange(1, len(episodes[i])) == dues[i]).float()) for i in chosen]
        optimiser.zero_grad()
        torch.stack(losses).mean().backward()
        torch.nn.utils.clip_grad_norm_(list(unit.parameters()), 1.0)
        optimiser.step()
        schedule.step()
    return unit


def scores(speaks: list[list[bool]], dues: list[int]) -> dict:
    """The battery's timing metrics (``TimedTask.score`` without the word), overall and per N."""
    rows = [{"due": due, "on_time": float(said[due - 1] and not any(said[:due - 1])),
             "early": float(any(said[:due - 1])), "silent_after": float(not said[due])}
            for said, due in zip(speaks, dues, strict=True)]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    return {**{m: mean([r[m] for r in rows]) for m in ("on_time", "early", "silent_after")},
            "per_due": {due: mean([r["on_time"] for r in rows if r["due"] == due]) for due in sorted(set(dues))}}


@torch.no_grad()
def run(reservoir: Reservoir, inputs: torch.Tensor) -> torch.Tensor:
    """(passes, K): the state after each pass, from the zero state."""
    state, trajectory = reservoir.initial_state(1), []
    for drive in inputs:
        state = reservoir.step(state, drive[None])
        trajectory.append(state[0])
    return torch.stack(trajectory)


@torch.no_grad()
def run_split(reservoir: Reservoir, held_inputs: torch.Tensor, running_inputs: torch.Tensor, running: int,
              isolated: bool = False) -> torch.Tensor:
    """(passes, K): as :func:`run` with ``running_units`` and a switched write: the first pass steps the held units
    on ``held_inputs`` and the running ones on ``running_inputs``; after it the held units keep, the running step.
    ``isolated``: the running units' step does not see the held units (W_r's held-to-running block cut), as
    ``RanConfig(running_clock="isolated")`` (``--running-clock isolated``) runs it: otherwise the held word drives the
    clock on every tick through W_r."""
    state, trajectory = reservoir.initial_state(1), []
    held = state.shape[1] - running
    for index, (held_drive, running_drive) in enumerate(zip(held_inputs, running_inputs, strict=True)):
        kept = reservoir.step(state, held_drive[None]) if index == 0 else state
        state = torch.cat([kept[:, :held], step_running(reservoir.step, state, running_drive[None], running, isolated)],
                          dim=1)
        trajectory.append(state[0])
    return torch.stack(trajectory)


def n_decodable(trained: list[torch.Tensor], heldout: list[torch.Tensor], dues: dict[str, list[int]]) -> dict:
    """Accuracy of an 8-way linear classifier of N on the instruction's read input (standardised on the trained
    words), on the trained and the held-out words."""
    first = {split: torch.stack([rows[0] for rows in group]) for split, group in (("trained", trained),
                                                                                  ("heldout", heldout))}
    labels = {split: torch.tensor(values) - 1 for split, values in dues.items()}
    centre, scale = first["trained"].mean(0), first["trained"].std(0) + 1e-3
    torch.manual_seed(0)
    classifier = torch.nn.Linear(first["trained"].shape[1], int(labels["trained"].max()) + 1)
    optimiser = torch.optim.Adam(classifier.parameters(), lr=1e-2)
    for _ in range(STEPS):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(classifier((first["trained"] - centre) / scale), labels["trained"]).backward()
        optimiser.step()
    with torch.no_grad():
        return {split: float((classifier((first[split] - centre) / scale).argmax(1) == labels[split]).float().mean())
                for split in first}


def main() -> None:
    started = time.perf_counter()
    model, tokenizer = load_model("smollm2-135m")
    renderer = Renderer(PassFormat("text"), tokenizer)  # the battery's default format
    layer = model.config.num_hidden_layers // 2
    task = TimedTask()
    splits = {"trained": task.words, "heldout": task.heldout_words}
    episodes = {split: [task.make(word, due, 1, split) for word in words for due in range(task.turns[0],
                                                                                            task.turns[1] + 1)]
                for split, words in splits.items()}
    cache: dict[tuple[int, ...], torch.Tensor] = {}

    @torch.no_grad()
    def hidden(prompt: tuple[int, ...]) -> torch.Tensor:
        """Layer L's output at every token of the prompt, (T, d)."""
        if prompt not in cache:
            cache[prompt] = model(torch.tensor([prompt]), output_hidden_states=True).hidden_states[layer + 1][0].float()
        return cache[prompt]

    def read(episode, part: str | None) -> torch.Tensor:
        """(passes, d) what the reservoir takes in from each pass: the instruction, then the ticks."""
        passes = render(episode, renderer)
        if part is None:  # summary "last"
            return torch.stack([hidden(p.prompt)[-1] for p in passes])
        text = episode.passes[0].text
        fields = {"turns": episode.info["due"], "s": "" if episode.info["due"] == 1 else "s",
                  "word": episode.info["word"]}
        labels = torch.tensor(renderer.turn_labels(text, part.format(**fields)), dtype=torch.bool)
        tokens = hidden(passes[0].prompt)[labels]
        normed = tokens * torch.rsqrt(tokens.pow(2).mean(-1, keepdim=True) + 1e-6)  # as the gated read's n(h)
        return torch.cat([normed.mean(0, keepdim=True), torch.zeros(len(passes) - 1, normed.shape[1])])

    inputs = {name: {split: [read(e, part) for e in group] for split, group in episodes.items()}
              for name, part in READS.items()}
    dues = {split: [e.info["due"] for e in group] for split, group in episodes.items()}

    def tick_rows(per_episode: list[torch.Tensor], split: str) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.cat([rows[1:] for rows in per_episode])  # what the gate reads after each tick
        labels = torch.cat([torch.arange(1, len(rows)) == due for rows, due in zip(per_episode, dues[split],
                                                                                  strict=True)]).float()
        return features, labels

    def evaluate(unit: torch.nn.Module, per_episode: list[torch.Tensor]) -> dict:
        with torch.no_grad():
            speaks = [(unit(rows[1:])[:, 0] > 0).tolist() for rows in per_episode]
        return scores(speaks, dues["heldout"])

    def arm(per_split: dict[str, list[torch.Tensor]], seed: int) -> dict:
        features, labels = tick_rows(per_split["trained"], "trained")
        return {kind: evaluate(fit(kind, features, labels, seed), per_split["heldout"]) for kind in ("linear", "mlp")}

    decodable = {name: n_decodable(inputs[name]["trained"], inputs[name]["heldout"], dues) for name in READS}
    for name, accuracy in decodable.items():
        print(f"N from the read {name!r} of the instruction: trained words {accuracy['trained']:.2f}, "
              f"held-out words {accuracy['heldout']:.2f}")
    rows = []
    stateless = [arm(inputs["last"], seed) for seed in SEEDS]
    rows.append({"reservoir": None, "read": "last", "stateless": True, "seeds": list(SEEDS), "runs": stateless})
    for leak, scaling, slowest in RESERVOIRS:
        runs: dict[str, list[dict]] = {name: [] for name in READS}
        for seed in SEEDS:
            reservoir = Reservoir(ReservoirConfig(units=2048, spectral_radius=0.95, leak_rate=leak,
                                                  input_scaling=scaling, connectivity=0.1, seed=seed,
                                                  leak_rate_min=slowest), input_dim=model.config.hidden_size)
            for name in READS:
                runs[name].append(arm({split: [run(reservoir, rows_in) for rows_in in group]
                                       for split, group in inputs[name].items()}, seed))
        rows += [{"reservoir": {"leak_rate": leak, "input_scaling": scaling, "leak_rate_min": slowest}, "read": name,
                  "stateless": False, "seeds": list(SEEDS), "runs": runs[name]} for name in READS]
    leak, scaling, running = SPLIT
    split_runs: dict[tuple[str, str], list[dict]] = {}
    for seed in SEEDS:
        reservoir = Reservoir(ReservoirConfig(units=2048, spectral_radius=0.95, leak_rate=leak, input_scaling=scaling,
                                              connectivity=0.1, seed=seed), input_dim=model.config.hidden_size)
        held = reservoir.config.units - running
        for clock in ("coupled", "isolated"):
            states = {split: [run_split(reservoir, word, count, running, clock == "isolated") for word, count in
                              zip(inputs["word"][split], inputs["N"][split], strict=True)] for split in episodes}
            split_runs.setdefault((clock, "state"), []).append(arm(states, seed))
            split_runs.setdefault((clock, "running"), []).append(arm(
                {split: [torch.nn.functional.pad(rows_in[:, held:], (held, 0)) for rows_in in group]
                 for split, group in states.items()}, seed))
    rows += [{"reservoir": {"leak_rate": leak, "input_scaling": scaling, "running_units": running},
              "read": f"word held, N running, {clock} clock; gate reads {gate_reads}", "stateless": False,
              "seeds": list(SEEDS), "runs": runs} for (clock, gate_reads), runs in split_runs.items()]
    (leak, scaling, slowest), read_name = SCHEDULED
    schedules = []
    for steps in SCHEDULES:
        runs = []
        for seed in SEEDS:
            reservoir = Reservoir(ReservoirConfig(units=2048, spectral_radius=0.95, leak_rate=leak,
                                                  input_scaling=scaling, connectivity=0.1, seed=seed,
                                                  leak_rate_min=slowest), input_dim=model.config.hidden_size)
            states = {split: [run(reservoir, rows_in) for rows_in in group]
                      for split, group in inputs[read_name].items()}
            runs.append({kind: evaluate(fit_scheduled(kind, states["trained"], dues["trained"], steps, seed),
                                        states["heldout"]) for kind in ("linear", "mlp")})
        summary = {kind: seed_summary([run[kind]["on_time"] for run in runs]) for kind in ("linear", "mlp")}
        schedules.append({"steps": steps, "runs": runs, **summary})
        print(f"{read_name} on {SCHEDULED[0]}, the battery's schedule, {steps} steps: " + "  ".join(
            f"{kind} on time {summary[kind]['mean']:.2f} [{summary[kind]['min']:.2f}]" for kind in ("linear", "mlp")))
    for row in rows:
        for kind in ("linear", "mlp"):
            row[kind] = {m: seed_summary([run[kind][m] for run in row["runs"]]) for m in ("on_time", "silent_after")}
        name = "stateless" if row["reservoir"] is None else " ".join(f"{v}" for v in row["reservoir"].values())
        print(f"{name:20s} read {row['read']:5s} " + "  ".join(
            f"{kind}: on time {row[kind]['on_time']['mean']:.2f} [{row[kind]['on_time']['min']:.2f}] "
            f"silent after {row[kind]['silent_after']['mean']:.2f}" for kind in ("linear", "mlp")))
    OUT.write_text(json.dumps({"experiment": "timed-probe", **environment(), "layer": layer, "steps": STEPS,
                               "hidden": HIDDEN, "reads": READS, "n_decodable": decodable,
                               "schedules": {"reservoir": SCHEDULED[0], "read": SCHEDULED[1], "runs": schedules},
                               "task": task.to_dict(), "rows": rows,
                               "seconds": time.perf_counter() - started}, indent=1) + "\n")
    print(f"wrote {OUT} ({time.perf_counter() - started:.0f}s)")


if __name__ == "__main__":
    main()
