"""The fixed decoder of the decoded value reads (``ran.reading.DECODED_VALUE_READS``): each place's token embedding
read back from the state by a ridge regression, fit in closed form the way an echo-state network's readout is.

The states are those one store writes: the ordered read (``ran.reading.ordered_summary``) of the value's input
embeddings with the gates open on exactly its tokens, one full reservoir step from the zero state (what the
pass-switched write takes). The targets are the unit embeddings of the value's first ``places`` tokens (zero
past its end). The ridge is chosen on a held-back fifth of the values by the share of places whose nearest
vocabulary token (cosine) is the right one. A linear decoder fit this way on a few thousand values of many
distinct tokens names the tokens of values it never saw (docs/tasks/places-probe.json); a readout trained by
gradient through the model's attention, at the same budget, did not (README, One memory, ``r29``). Nor, so far,
did the map trained on top of this decoder: in ``r31`` (300 steps, five kinds) it learned each kind's form only,
and on words alone (``r32``, 150 steps) it recalled none where the direct read with the same slots recalls 0.08
(``r33``).

It also holds the whitening of ``RanConfig.whiten`` (:func:`whitening`), the other map of the state fit in closed
form before training.
"""

from __future__ import annotations

from typing import Any

import torch

from ran.errors import ConfigError
from ran.reading import ordered_summary, rms_normalised

RIDGES = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)  # times the mean eigenvalue of the states' second moment
HELD_BACK = 5  # one value in five chooses the ridge
# Whitening's ridge, times the mean eigenvalue of the states' covariance. A softmax read of the sequence task's list
# from the state in SmolLM2's input-scaling band, trained by AdamW as the battery trains (150 steps of 16 lists), gets
# 0.98 of held-out lists back whole at 0.1, 0.95 at 0.01, 0.67 at 0.001, and 0.08 from the raw state
# (docs/tasks/probe_whitening.py, docs/tasks/whitening-probe.json, three reservoir seeds).
WHITEN_RIDGE = 0.1


def store_states(step, initial_state, embeddings: torch.Tensor, values: list[list[int]], places: int,
                 batch: int = 512) -> torch.Tensor:
    """(N, K) the state a store of each value (its token ids) writes: ``step(initial_state(n), x)``."""
    states = []
    for start in range(0, len(values), batch):
        chunk = values[start:start + batch]
        width = max(map(len, chunk))
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        gates = torch.zeros(len(chunk), width)
        for i, tokens in enumerate(chunk):
            ids[i, :len(tokens)] = torch.tensor(tokens)
            gates[i, :len(tokens)] = 1.0
        normed = rms_normalised(embeddings[ids.to(embeddings.device)])
        x = ordered_summary(normed, gates.to(normed.device), places)
        states.append(step(initial_state(len(chunk)), x).float())
    return torch.cat(states)


def place_targets(values: list[list[int]], unit_embeddings: torch.Tensor, places: int) -> torch.Tensor:
    """(N, places * d): the unit embedding of each place's token (zeros past the value's end)."""
    targets = unit_embeddings.new_zeros(len(values), places, unit_embeddings.shape[1])
    for i, tokens in enumerate(values):
        targets[i, :min(len(tokens), places)] = unit_embeddings[tokens[:places]]
    return targets.flatten(1)


def _nearest_tokens(decoded: torch.Tensor, values: list[list[int]], unit_embeddings: torch.Tensor, places: int,
                    rows_per_product: int = 1024):
    """Per value: (its nearest vocabulary token (cosine) at each of its places, up to ``places``; its tokens there).

    The values' places are gathered into one matrix and matched to the vocabulary a block of rows at a time: one
    product per value reads the whole (vocabulary, d) embedding matrix for a row or two, which made the decoder's
    ridge choice take minutes.
    """
    decoded = decoded.view(len(values), places, -1)
    lengths = [min(len(tokens), places) for tokens in values]
    value_index = torch.repeat_interleave(torch.arange(len(values)), torch.tensor(lengths, dtype=torch.long))
    place_index = torch.cat([torch.arange(n) for n in lengths]) if values else torch.zeros(0, dtype=torch.long)
    rows = decoded[value_index.to(decoded.device), place_index.to(decoded.device)]
    guesses = torch.cat([(block @ unit_embeddings.T).argmax(-1) for block in rows.split(rows_per_product)]) \
        if len(rows) else torch.zeros(0, dtype=torch.long, device=decoded.device)
    for value_guesses, tokens in zip(guesses.split(lengths), values, strict=True):
        yield value_guesses, torch.tensor(tokens[:places], device=value_guesses.device)


def places_right(decoded: torch.Tensor, values: list[list[int]], unit_embeddings: torch.Tensor,
                 places: int) -> float:
    """The share of the values' places (up to ``places``) whose nearest vocabulary token is the right one."""
    right = total = 0
    for guesses, tokens in _nearest_tokens(decoded, values, unit_embeddings, places):
        right += int((guesses == tokens).sum())
        total += len(tokens)
    return right / max(total, 1)


def values_whole(decoded: torch.Tensor, values: list[list[int]], unit_embeddings: torch.Tensor, places: int) -> float:
    """The share of ``values`` whose every place (up to ``places``) decodes to its own token: what a write of the
    decoder's nearest tokens would reply whole, the ceiling of a read through this decoder."""
    whole = sum(bool((guesses == tokens).all())
                for guesses, tokens in _nearest_tokens(decoded, values, unit_embeddings, places))
    return whole / max(len(values), 1)


def fit_place_decoder(states: torch.Tensor, values: list[list[int]], unit_embeddings: torch.Tensor, places: int,
                      ridges: tuple[float, ...] = RIDGES, seed: int = 0
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The ridge decoder of each place's token embedding from ``states`` (N, K) of ``values``:
    (weight (K, places * d), state mean (K,), target mean (places * d,), a report of the fit).

    One eigendecomposition of the centred states' K x K second moment serves every ridge; the ridge that names
    the most places right on a held-back fifth is refit on every value.
    """
    if len(values) < 2 * HELD_BACK:
        raise ConfigError(f"the decoder needs at least {2 * HELD_BACK} training values to fit, got {len(values)}")
    targets = place_targets(values, unit_embeddings, places)
    order = torch.randperm(len(values), generator=torch.Generator().manual_seed(seed)).tolist()
    held, kept = order[:len(order) // HELD_BACK], order[len(order) // HELD_BACK:]

    def solve(rows: list[int]):
        state_mean, target_mean = states[rows].mean(0), targets[rows].mean(0)
        centred = (states[rows] - state_mean).double()
        eigenvalues, vectors = torch.linalg.eigh(centred.T @ centred)
        projected = vectors.T @ (centred.T @ (targets[rows] - target_mean).double())  # (K, places * d)
        scale = eigenvalues.mean().clamp_min(1e-12)
        return {ridge: (vectors @ (projected / (eigenvalues + ridge * scale)[:, None])).float() for ridge in ridges}, \
            state_mean, target_mean

    weights, state_mean, target_mean = solve(kept)
    scores = {ridge: places_right((states[held] - state_mean) @ w + target_mean, [values[i] for i in held],
                                  unit_embeddings, places) for ridge, w in weights.items()}
    ridge = max(scores, key=scores.get)
    weights, state_mean, target_mean = solve(order)
    report = {"values": len(values), "distinct_tokens": len({t for tokens in values for t in tokens[:places]}),
              "ridge": ridge, "held_back_places_right": round(scores[ridge], 4)}
    return weights[ridge], state_mean, target_mean, report


def whitening(states: torch.Tensor, ridge: float = WHITEN_RIDGE) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(mean (K,), W (K, K), report) with W = (C + ridge * tr(C) / K * I)^(-1/2), C the covariance of ``states``
    (N, K): (r - mean) @ W has unit variance along every direction C spans well, so a linear read of it trained by
    gradient descent is as well conditioned along the state's small directions as along its large ones. States
    that do not vary (a constant, the stateless ablation's) give the identity and their mean."""
    if states.ndim != 2 or len(states) < 2:
        raise ConfigError(f"whitening needs at least 2 states (N, K), got shape {tuple(states.shape)}")
    x = states.double()
    mean = x.mean(dim=0)
    covariance = torch.cov(x.T)
    units = covariance.shape[0]
    scale = float(covariance.trace()) / units
    report = {"states": len(states), "ridge": ridge, "mean_variance": scale}
    if scale <= 0:
        return mean.float(), torch.eye(units, dtype=torch.float32), report
    eigenvalues, vectors = torch.linalg.eigh(covariance + ridge * scale * torch.eye(units, dtype=x.dtype))
    report["condition"] = float(eigenvalues[-1] / eigenvalues[0])
    report["effective_rank"] = float(eigenvalues.sum() ** 2 / (eigenvalues**2).sum())
    matrix = (vectors * eigenvalues.rsqrt()) @ vectors.T
    return mean.float(), matrix.float(), report
