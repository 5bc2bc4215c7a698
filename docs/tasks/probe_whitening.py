"""Why a list the state holds is not learned: a linear read trained by gradient descent, raw and whitened.

``ran probe order`` finds that in SmolLM2's input-scaling band (leak 1, input scaling 0.005) a ridge read of the
state after a list of 3-6 of the sequence task's items gets every list back in order, with the smallest penalty
tried (1e-6) chosen for every place. The battery's trained read, on the same reservoir, gets none back. This probe
trains the read the way the battery trains (AdamW, learning rate 1e-2 with cosine decay, 16 lists a step, 150 or
600 steps, weights from zero) as a softmax classifier of each forward place's item on the state, with no model in
the loop, on three inputs (``INPUTS``):

- ``raw``: the state itself, as the kv slots read it by default;
- ``standardised``: each unit centred and scaled to unit variance;
- ``whitened r``: ``(r - mean) W``, W = (C + r tr(C) / K I)^(-1/2), C the covariance of 2,000 training states,
  for ridges r of 0.001, 0.01 and 0.1 (``RanConfig.whiten`` uses ``ran.decoding.WHITEN_RIDGE``).

Lists are drawn as ``ran probe order`` draws them (its ``OrderConfig``, the model source, read "pass": each item is
layer 15's output at the last token of "Item: {word}."); 9,600 training lists, 600 held-out ones, three reservoir
seeds. Scores on the held-out lists: each forward place's accuracy and the whole list exact (every place right).
And, per seed, how the raw state sits (``states``): its units' RMS, the norm of its mean and of its spread over lists,
the share of the spread in its 10 largest directions, and the ratio of its first to its 100th eigenvalue.

    python docs/tasks/probe_whitening.py   # writes docs/tasks/whitening-probe.json, about a minute on 2 cores
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ran.decoding import whitening
from ran.probes.order import OrderConfig, draw_lists, final_states, item_vectors
from ran.probes.sources import capture_bank
from ran.provenance import machine, source, versions
from ran.reservoir import Reservoir, ReservoirConfig
from ran.training import cosine_schedule

OUT = Path(__file__).with_name("whitening-probe.json")
BAND = ReservoirConfig(units=2048, leak_rate=1.0, input_scaling=0.005, connectivity=0.1)
SEEDS = (0, 1, 2)
STEPS = (150, 600)
RIDGES = (0.001, 0.01, 0.1)
TRAIN_LISTS, TEST_LISTS, COVARIANCE_LISTS, PER_STEP, LEARNING_RATE, WARMUP = 9600, 600, 2000, 16, 1e-2, 5
PLACES, WORDS = 6, 12


def inputs(train: np.ndarray, test: np.ndarray) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    mean, spread = train.mean(0), train.std(0) + 1e-6
    out = {"raw": (train, test), "standardised": ((train - mean) / spread, (test - mean) / spread)}
    for ridge in RIDGES:
        centre, matrix, _ = whitening(torch.tensor(train[:COVARIANCE_LISTS]), ridge)
        centre, matrix = centre.numpy(), matrix.numpy()
        out[f"whitened {ridge}"] = ((train - centre) @ matrix, (test - centre) @ matrix)
    return {name: (torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))
            for name, (a, b) in out.items()}


def places(lists: list[list[int]]) -> torch.Tensor:
    """(N, PLACES) each list's item at each forward place, -1 past its end."""
    return torch.tensor([items + [-1] * (PLACES - len(items)) for items in lists])


def state_statistics(states: np.ndarray) -> dict:
    """How the state after a list sits: its size, how much of it the list moves, and how unevenly it moves."""
    centred = states - states.mean(0)
    eigenvalues = np.clip(np.linalg.eigvalsh(np.cov(centred.T)), 0.0, None)[::-1]
    return {"unit_rms": round(float(np.sqrt((states**2).mean())), 4),
            "mean_norm": round(float(np.linalg.norm(states.mean(0))), 4),
            "spread_norm": round(float(np.sqrt((centred**2).sum(1).mean())), 4),
            "variance_top_10": round(float(eigenvalues[:10].sum() / eigenvalues.sum()), 4),
            "eigenvalue_ratio_1_to_100": round(float(eigenvalues[0] / eigenvalues[99]), 1)}


def train_read(x: torch.Tensor, labels: torch.Tensor, steps: int, seed: int) -> torch.nn.Linear:
    """A softmax read of every place, trained as the battery trains a readout (AdamW, warmup, cosine decay, clip)."""
    torch.manual_seed(seed)
    read = torch.nn.Linear(x.shape[1], PLACES * WORDS)
    torch.nn.init.zeros_(read.weight)
    torch.nn.init.zeros_(read.bias)
    optimizer = torch.optim.AdamW(read.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        scale = cosine_schedule(step, steps, WARMUP)
        for group in optimizer.param_groups:
            group["lr"] = LEARNING_RATE * scale
        rows = torch.randint(0, len(x), (PER_STEP,), generator=generator)
        logits, wanted = read(x[rows]).view(PER_STEP, PLACES, WORDS), labels[rows]
        loss = torch.nn.functional.cross_entropy(logits[wanted >= 0], wanted[wanted >= 0])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(read.parameters(), 1.0)
        optimizer.step()
    return read


def score(read: torch.nn.Linear, x: torch.Tensor, labels: torch.Tensor) -> dict:
    with torch.no_grad():
        predicted = read(x).view(len(x), PLACES, WORDS).argmax(-1)
    said = labels >= 0
    right = (predicted == labels) | ~said
    return {"places": [round(float(right[said[:, j], j].float().mean()), 4) for j in range(PLACES)],
            "exact": round(float(right.all(1).float().mean()), 4)}


def main() -> None:
    bank = capture_bank("smollm2-135m")
    config = OrderConfig(reservoir=BAND, source="model")
    results, states = {}, []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        vectors = item_vectors(config, rng, bank)
        reservoir = Reservoir(replace(BAND, seed=seed), vectors.shape[1])
        train_lists, test_lists = draw_lists(config, TRAIN_LISTS, rng), draw_lists(config, TEST_LISTS, rng)
        train_x, test_x = final_states(reservoir, vectors, train_lists), final_states(reservoir, vectors, test_lists)
        train_y, test_y = places(train_lists), places(test_lists)
        states.append(state_statistics(train_x[:COVARIANCE_LISTS]))
        for name, (a, b) in inputs(train_x, test_x).items():
            for steps in STEPS:
                entry = score(train_read(a, train_y, steps, seed), b, test_y)
                results.setdefault(name, {}).setdefault(str(steps), []).append(entry)
                print(f"seed {seed} {name:>16} {steps:>4} steps: exact {entry['exact']:.3f} places {entry['places']}",
                      flush=True)
    summary = {name: {steps: {"exact": [e["exact"] for e in runs], "exact_mean": round(np.mean([e["exact"] for e in
                                                                                                 runs]), 4),
                              "places_min": min(min(e["places"]) for e in runs)}
                      for steps, runs in by_steps.items()} for name, by_steps in results.items()}
    OUT.write_text(json.dumps({"reservoir": BAND.to_dict(), "seeds": list(SEEDS), "steps": list(STEPS),
                               "ridges": list(RIDGES), "train_lists": TRAIN_LISTS, "test_lists": TEST_LISTS,
                               "covariance_lists": COVARIANCE_LISTS, "per_step": PER_STEP,
                               "learning_rate": LEARNING_RATE, "summary": summary, "runs": results, "states": states,
                               "git": source(), "machine": machine(), "versions": versions()}, indent=1) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
