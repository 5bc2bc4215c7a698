"""Observables of the reservoir's dynamics, computed on driven state trajectories.

- :func:`saturation_fraction`: the fraction of unit activations with ``|r| > 0.95`` (tanh saturated).
- :func:`participation_ratio`: the effective dimensionality of the states, ``(sum l)^2 / sum l^2`` over
  the eigenvalues ``l`` of the state covariance; :func:`effective_dimension` also gives it as a fraction of K.
- :func:`input_separation`: how far apart two trajectories driven by different inputs are
  (root-mean-square difference per unit, averaged over time).
- :func:`echo_state_residual`: the echo-state test. Two random initial states, the same (or zero) input:
  the fraction of their initial distance left after ``steps`` updates. ~0 means the reservoir forgets
  its initial state (the echo-state property); ~1 means it does not. The pair is a random state and its
  negation: two independent states can fall into the same one of a reservoir's symmetric pair of
  attractors (tanh is odd) and look "forgotten"; antipodal states on zero input stay antipodal, so the
  test then asks whether the state itself dies out.

:func:`drive` runs the reservoir update in NumPy with the sparse ``W_r``, which for one or a few
trajectories is many times faster than :meth:`ran.reservoir.Reservoir.run` and gives the same states.
"""

from __future__ import annotations

import numpy as np

from ran.errors import ConfigError
from ran.reservoir import Reservoir

SATURATION_THRESHOLD = 0.95
_INPUT_CHUNK = 256  # time steps whose input drive W_in x(t) is computed in one matmul


def drive(
    reservoir: Reservoir,
    inputs: np.ndarray,
    state: np.ndarray | None = None,
    *,
    spectral_scale: float = 1.0,
    input_scale: float = 1.0,
) -> np.ndarray:
    """Run the reservoir on ``inputs`` (T, B, d) from ``state`` (B, K) (zeros if None) -> states (T, B, K).

    ``spectral_scale`` and ``input_scale`` multiply ``W_r`` and ``W_in``: a reservoir built with spectral
    radius 1 and input scaling 1 then behaves as one built with radius ``spectral_scale`` and scaling
    ``input_scale`` (the same matrices up to float rounding), which lets a sweep build each seed once.
    """
    inputs = np.asarray(inputs, dtype=np.float32)
    if inputs.ndim != 3 or inputs.shape[2] != reservoir.input_dim:
        raise ConfigError(f"inputs must have shape (T, B, {reservoir.input_dim}), got {inputs.shape}")
    w_in_t = reservoir.w_in.numpy().T * np.float32(input_scale)  # (d, K)
    bias = reservoir.bias.numpy()
    chunks = (
        inputs[start : start + _INPUT_CHUNK] @ w_in_t + bias for start in range(0, len(inputs), _INPUT_CHUNK)
    )
    return iterate(reservoir, chunks, len(inputs), inputs.shape[1], state, spectral_scale=spectral_scale)


def iterate(
    reservoir: Reservoir,
    input_drive,
    steps: int,
    batch: int,
    state: np.ndarray | None = None,
    *,
    spectral_scale: float = 1.0,
) -> np.ndarray:
    """The update loop on a precomputed input drive ``W_in x(t) + b``: an array (T, B, K) or an iterable
    of (t, B, K) chunks that add up to ``steps`` -> states (T, B, K)."""
    units = reservoir.units
    if state is None:
        state = np.zeros((batch, units), dtype=np.float32)
    state = np.asarray(state, dtype=np.float32)
    if state.shape != (batch, units):
        raise ConfigError(f"state must have shape ({batch}, {units}), got {state.shape}")
    recurrent = reservoir.recurrent_matrix()
    if spectral_scale != 1.0:
        recurrent = recurrent * np.float32(spectral_scale)
    uniform = reservoir.config.leak_rate_min is None
    leak = np.float32(reservoir.config.leak_rate) if uniform else reservoir.config.leak_rates()  # scalar or (K,)
    linear = reservoir.config.activation == "identity"
    states = np.empty((steps, batch, units), dtype=np.float32)
    t = 0
    for chunk in [input_drive] if isinstance(input_drive, np.ndarray) else input_drive:
        for drive_t in chunk:  # (B, K)
            pre_activation = (recurrent @ state.T).T + drive_t  # (B, K)
            activated = pre_activation if linear else np.tanh(pre_activation)
            if uniform:
                state = activated if leak == 1.0 else (1 - leak) * state + leak * activated
            else:
                state = state + leak * (activated - state)
            states[t] = state
            t += 1
    if t != steps:
        raise ConfigError(f"the input drive has {t} steps, expected {steps}")
    return states


def saturation_fraction(states: np.ndarray, threshold: float = SATURATION_THRESHOLD) -> float:
    """Fraction of entries of ``states`` (any shape) with absolute value above ``threshold``."""
    states = np.asarray(states)
    if states.size == 0:
        raise ConfigError("saturation_fraction needs a non-empty array of states")
    return float(np.mean(np.abs(states) > threshold))


def participation_ratio(states: np.ndarray) -> float:
    """Participation ratio of the covariance of ``states`` (T, K): between 1 and min(T - 1, K).

    Computed from the smaller Gram matrix: the nonzero eigenvalues of X^T X and X X^T coincide, and
    ``(sum l)^2 / sum l^2 = trace(G)^2 / ||G||_F^2`` needs no eigendecomposition.
    """
    states = np.asarray(states, dtype=np.float64)
    if states.ndim != 2 or states.shape[0] < 2:
        raise ConfigError(f"participation_ratio needs states of shape (T >= 2, K), got {states.shape}")
    centred = states - states.mean(axis=0)
    gram = centred @ centred.T if centred.shape[0] <= centred.shape[1] else centred.T @ centred
    frobenius = float(np.sum(gram * gram))
    if frobenius == 0.0:
        return 0.0  # constant states: no dimension at all
    return float(np.trace(gram) ** 2 / frobenius)


def effective_dimension(states: np.ndarray) -> tuple[float, float]:
    """(participation ratio, participation ratio / K) of ``states`` (T, K)."""
    ratio = participation_ratio(states)
    return ratio, ratio / np.asarray(states).shape[1]


def input_separation(states_a: np.ndarray, states_b: np.ndarray) -> float:
    """Mean over time of ``||r_a(t) - r_b(t)|| / sqrt(K)`` for two trajectories (T, K) of one reservoir."""
    states_a, states_b = np.asarray(states_a), np.asarray(states_b)
    if states_a.shape != states_b.shape or states_a.ndim != 2:
        raise ConfigError(
            f"input_separation needs two (T, K) arrays of one shape, got {states_a.shape} "
            f"and {states_b.shape}"
        )
    difference = (states_a - states_b).astype(np.float64)
    return float(np.mean(np.sqrt(np.mean(difference**2, axis=1))))


def state_distance_ratio(
    states_a: np.ndarray, states_b: np.ndarray, initial_a: np.ndarray, initial_b: np.ndarray
) -> float:
    """||r_a(T) - r_b(T)|| / ||r_a(0) - r_b(0)||: how much of the initial difference is left at the end."""
    initial = float(np.linalg.norm(np.asarray(initial_a, np.float64) - np.asarray(initial_b, np.float64)))
    if initial == 0.0:
        raise ConfigError("the two initial states are identical: the echo-state test needs different ones")
    final = float(np.linalg.norm(np.asarray(states_a[-1], np.float64) - np.asarray(states_b[-1], np.float64)))
    return final / initial


def echo_state_residual(
    reservoir: Reservoir, steps: int = 300, inputs: np.ndarray | None = None, seed: int = 0
) -> float:
    """The echo-state test: the fraction of the distance between two random initial states left after
    ``steps`` updates driven by the same ``inputs`` (T, d), or by zero input when ``inputs`` is None.

    The initial states are ``s`` and ``-s`` with ``s`` drawn U(-1, 1) from ``seed`` (see the module notes).
    A reservoir with the echo-state property gives ~0.
    """
    if inputs is None:
        if steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}")
        inputs = np.zeros((steps, reservoir.input_dim), dtype=np.float32)
    inputs = np.asarray(inputs, dtype=np.float32)
    if inputs.ndim != 2 or inputs.shape[0] < 1:
        raise ConfigError(f"inputs must have shape (T >= 1, {reservoir.input_dim}), got {inputs.shape}")
    rng = np.random.default_rng(seed)
    initial = antipodal_states(reservoir.units, rng)
    paired = np.repeat(inputs[:, None, :], 2, axis=1)  # (T, 2, d): the same input for both
    states = drive(reservoir, paired, initial)
    return state_distance_ratio(states[:, 0], states[:, 1], initial[0], initial[1])


def antipodal_states(units: int, rng: np.random.Generator) -> np.ndarray:
    """Initial states of the echo-state test: ``s`` and ``-s``, s ~ U(-1, 1)^units -> (2, units)."""
    state = rng.uniform(-1.0, 1.0, size=units).astype(np.float32)
    return np.stack([state, -state])
