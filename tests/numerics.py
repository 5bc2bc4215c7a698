"""Tolerances from float32 arithmetic, not from the results of the machine that wrote a test.

Two correct computations of the same float32 value (another kernel, batch shape, thread count, summation
order or CPU) differ by rounding only. A sum of n terms rounded in float32 is within gamma_n = n u / (1 - n u)
of the exact sum, relative to the sum of the terms' magnitudes (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., 3.1), u = 2^-24 the unit roundoff; a computation chaining ``depth`` such
sums, each feeding the next, carries about ``depth * gamma_n`` (first order, well-conditioned steps), and
two such computations can differ by twice that. :func:`float32_tolerance` is that bound: it is the
worst case of rounding, so it holds on any CPU, and it stays orders of magnitude below what a real bug in
the compared paths moves (another read position, a pass ticked twice, a stale cache entry: O(0.1-1)).

The depth of a pass through the tiny test models (tiny_models.py: 4 layers, hidden size 32, MLP width 64)
counts these chained sums per decoder layer: the norm, the q/k/v projection, the attention scores, the
softmax, the weighted sum of values, the output projection, the second norm, the gate/up projection and
the down projection (9), plus the reservoir step (W_in x and W_r r: 2) and the readout (1).
"""

from __future__ import annotations

import math

import torch

UNIT_ROUNDOFF = torch.finfo(torch.float32).eps / 2  # u = 2^-24
SUMS_PER_LAYER = 9
SUMS_PER_TICK = 3  # the reservoir's W_in x and W_r r, and the readout that writes the state back
TINY_WIDTH = 64  # the longest sum in the tiny models: the MLP's 64 units (hidden 32, reservoirs of <= 128 units)


def gamma(terms: int) -> float:
    """Higham's gamma_n: the relative error bound of a float32 sum of ``terms`` terms."""
    n_u = terms * UNIT_ROUNDOFF
    assert n_u < 1
    return n_u / (1 - n_u)


def float32_tolerance(terms: int, depth: int) -> float:
    """How far two correct float32 computations of ``depth`` chained sums of <= ``terms`` terms may differ,
    relative to the magnitude of the values compared."""
    return 2 * depth * gamma(terms)


def pass_depth(layers: int, passes: int = 1) -> int:
    """Chained sums of ``passes`` passes through ``layers`` decoder layers, each with a reservoir tick."""
    return passes * (layers * SUMS_PER_LAYER + SUMS_PER_TICK)


def assert_float32_close(actual: torch.Tensor, expected: torch.Tensor, terms: int, depth: int) -> None:
    """``actual`` equals ``expected`` up to :func:`float32_tolerance`, relative to the largest magnitude compared
    (the scale of the rounding: a state in [-1, 1], logits of a few units)."""
    scale = max(float(expected.detach().abs().max()), float(actual.detach().abs().max()), 1e-30)
    tolerance = float32_tolerance(terms, depth) * scale
    error = float((actual.detach() - expected.detach()).abs().max())
    assert error <= tolerance, (f"max |difference| {error:.3g} exceeds the float32 bound {tolerance:.3g} "
                                f"(depth {depth}, sums of <= {terms} terms, scale {scale:.3g})")


def assert_records_match(actual, expected, rel: float, path: str = "record") -> None:
    """Two JSON records are equal, except that floats (scores, probabilities, losses) may differ by ``rel``
    relative (rounding in other batch shapes) and NaN matches NaN (a precision with nothing predicted)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        assert actual.keys() == expected.keys(), f"{path}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            assert_records_match(actual[key], expected[key], rel, f"{path}/{key}")
    elif isinstance(expected, list) and isinstance(actual, list):
        assert len(actual) == len(expected), f"{path}: {len(actual)} items != {len(expected)}"
        for index, (one, other) in enumerate(zip(actual, expected, strict=True)):
            assert_records_match(one, other, rel, f"{path}[{index}]")
    elif isinstance(expected, float) and isinstance(actual, float):
        assert (math.isnan(actual) and math.isnan(expected)) or math.isclose(actual, expected, rel_tol=rel), \
            f"{path}: {actual!r} != {expected!r} within {rel:g} relative"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"
