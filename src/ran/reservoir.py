"""The echo-state reservoir: a fixed random recurrent pool that carries state between passes.

One step per forward pass ("tick"), batched with one state row per example:

    r(t) = (1 - leak_rate) * r(t-1) + leak_rate * tanh(W_r r(t-1) + W_in x(t) + b)

``leak_rate`` is one number for every unit, or, with ``leak_rate_min`` set, a spread: unit i gets the i-th of
``units`` leak rates spaced geometrically from ``leak_rate_min`` to ``leak_rate`` (fast units follow each
input, slow units keep what they were given for ~1/leak passes). The spread is deterministic, so it
adds nothing to draw.

``W_r`` (units x units) is sparse with a fraction ``connectivity`` of nonzero N(0, 1) entries per row,
rescaled so its spectral radius is ``spectral_radius``; ``W_in`` (units x input_dim) is dense
U(-1, 1) times ``input_scaling``; ``b`` is U(-1, 1) times ``bias_scaling`` (zero by default).
``activation="identity"`` replaces tanh by the identity: a linear reservoir, for analysis only.
Everything is regenerated from ``seed`` with NumPy's PCG64, which gives the same numbers on every
machine, and summarised by a SHA-256 ``fingerprint`` (of the config and the drawn numbers, before the
radius scaling) that saved artifacts check on load.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from ran.errors import ConfigError
from ran.limits import check_reservoir_size

# Below this size W_r is stored dense: a dense matmul beats a sparse one and the memory is small.
DENSE_MAX_UNITS = 4096
# Below this size the spectral radius is computed exactly (dense eigenvalues, well under a second).
EXACT_RADIUS_MAX_UNITS = 256
# Above this many nonzeros ARPACK's matrix-vector products are split by rows across threads.
THREADED_MATVEC_MIN_NONZEROS = 2_000_000
ACTIVATIONS = ("tanh", "identity")


@dataclass(frozen=True)
class ReservoirConfig:
    """Hyper-parameters of the reservoir; every matrix is a function of these and the input size."""

    units: int = 512
    spectral_radius: float = 0.95
    leak_rate: float = 1.0
    input_scaling: float = 0.5
    connectivity: float = 0.1
    bias_scaling: float = 0.0
    seed: int = 0
    activation: str = "tanh"  # tanh | identity (a linear reservoir, for analysis)
    leak_rate_min: float | None = None  # None: every unit leaks at leak_rate; else a geometric spread up to it

    def __post_init__(self) -> None:
        if not isinstance(self.units, int) or self.units < 1:
            raise ConfigError(f"units must be an integer >= 1, got {self.units!r}")
        if not self.spectral_radius > 0 or not math.isfinite(self.spectral_radius):
            raise ConfigError(f"spectral_radius must be > 0, got {self.spectral_radius!r}")
        if not 0 < self.leak_rate <= 1:
            raise ConfigError(f"leak_rate must be in (0, 1], got {self.leak_rate!r}")
        if not self.input_scaling >= 0 or not math.isfinite(self.input_scaling):
            raise ConfigError(f"input_scaling must be >= 0, got {self.input_scaling!r}")
        if not 0 < self.connectivity <= 1:
            raise ConfigError(f"connectivity must be in (0, 1], got {self.connectivity!r}")
        if not self.bias_scaling >= 0:
            raise ConfigError(f"bias_scaling must be >= 0, got {self.bias_scaling!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.leak_rate_min is not None and not 0 < self.leak_rate_min <= self.leak_rate:
            raise ConfigError(f"leak_rate_min must be in (0, leak_rate = {self.leak_rate}], got {self.leak_rate_min!r}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}: use one of {', '.join(ACTIVATIONS)}")
        check_reservoir_size(self.units, self.connectivity)

    def to_dict(self) -> dict:
        return asdict(self)

    def leak_rates(self) -> np.ndarray:
        """(units,) float32 leak rate of every unit."""
        if self.leak_rate_min is None:
            return np.full(self.units, self.leak_rate, dtype=np.float32)
        return np.geomspace(self.leak_rate_min, self.leak_rate, self.units).astype(np.float32)


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent streams for W_r, W_in and b, so changing one size never reshuffles another."""
    recurrent, inputs, bias = np.random.SeedSequence(seed).spawn(3)
    return (np.random.Generator(np.random.PCG64(s)) for s in (recurrent, inputs, bias))  # type: ignore[return-value]


def spectral_radius(matrix: sp.spmatrix | np.ndarray) -> float:
    """Largest eigenvalue modulus: exact for small matrices, ARPACK (implicitly restarted Arnoldi) above.

    A random matrix's eigenvalues fill a disc, so the outermost ones are clustered and a single-vector
    power iteration converges slowly; asking ARPACK for a block of outermost eigenvalues with a wide
    Krylov space finds the edge in a few hundred matrix-vector products (K=16384 in a few seconds).
    """
    n = matrix.shape[0]
    if n <= EXACT_RADIUS_MAX_UNITS:
        dense = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
        return float(np.abs(np.linalg.eigvals(dense.astype(np.float64))).max())
    n_eigs = min(40, n // 8)
    start = np.ones(n, dtype=matrix.dtype)  # fixed start vector: the same answer on every run
    threads = min(4, os.cpu_count() or 1)
    # ARPACK's own vector operations are small: threaded BLAS only spins (2-3x slower on a busy machine)
    # and makes the last bits depend on the core count; one BLAS thread gives one answer everywhere.
    with threadpool_limits(limits=1, user_api="blas"):
        if not sp.issparse(matrix) or matrix.nnz < THREADED_MATVEC_MIN_NONZEROS or threads == 1:
            return _arpack_radius(matrix, n_eigs, start)
        with ThreadPoolExecutor(threads) as pool:
            return _arpack_radius(_row_split_operator(sp.csr_matrix(matrix), threads, pool), n_eigs, start)


def _arpack_radius(operator, n_eigs: int, start: np.ndarray) -> float:
    n = operator.shape[0]
    values = sla.eigs(
        operator, k=n_eigs, ncv=min(n - 1, 5 * n_eigs), which="LM", v0=start, tol=0.1,
        return_eigenvectors=False, maxiter=10_000,
    )
    return float(np.abs(values).max())


def _row_split_operator(matrix: sp.csr_matrix, parts: int, pool: ThreadPoolExecutor) -> sla.LinearOperator:
    """``matrix @ v`` with the rows split into ``parts`` blocks multiplied in parallel threads.

    SciPy's sparse kernels release the GIL, and every row's sum runs in the same order as in one call,
    so the product (and so ARPACK's answer and the fingerprint) is bit-identical to ``matrix @ v``.
    """
    bounds = np.linspace(0, matrix.shape[0], parts + 1).astype(int)
    blocks = [matrix[start:stop] for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]

    def matvec(vector: np.ndarray) -> np.ndarray:
        vector = np.ravel(vector)
        return np.concatenate(list(pool.map(lambda block: block @ vector, blocks)))

    return sla.LinearOperator(matrix.shape, matvec=matvec, dtype=matrix.dtype)


def draw_recurrent_matrix(units: int, connectivity: float, rng: np.random.Generator) -> sp.csr_matrix:
    """Sparse W_r before scaling: round(connectivity * units) random N(0, 1) entries per row."""
    per_row = max(1, round(connectivity * units))
    columns = rng.integers(0, units, size=units * per_row, dtype=np.int32)
    values = rng.standard_normal(units * per_row, dtype=np.float32)
    row_starts = np.arange(0, units * per_row + 1, per_row, dtype=np.int64)
    matrix = sp.csr_matrix((values, columns, row_starts), shape=(units, units))
    matrix.sum_duplicates()  # repeated draws of a column add up; sorted indices also speed up matmuls
    return matrix


def scale_to_spectral_radius(matrix: sp.csr_matrix, target: float) -> float:
    """Rescale ``matrix`` in place so its spectral radius is ``target``; returns the radius it had."""
    radius = spectral_radius(matrix)
    if radius > 0.0:  # 0 only for a 1-unit reservoir whose single entry is 0
        matrix.data *= np.float32(target / radius)
    return radius


class Reservoir(nn.Module):
    """A fixed leaky echo-state network over ``input_dim``-sized inputs; nothing here is trained.

    The step is a pure function of (state, input); the caller owns the state.
    """

    def __init__(self, config: ReservoirConfig, input_dim: int):
        super().__init__()
        if input_dim < 1:
            raise ConfigError(f"input_dim must be >= 1, got {input_dim!r}")
        check_reservoir_size(config.units, config.connectivity, input_dim)
        self.config = config
        self.input_dim = input_dim
        recurrent_rng, input_rng, bias_rng = _rngs(config.seed)
        recurrent = draw_recurrent_matrix(config.units, config.connectivity, recurrent_rng)
        w_in = input_rng.uniform(-1.0, 1.0, size=(config.units, input_dim)).astype(np.float32)
        w_in *= np.float32(config.input_scaling)
        bias = bias_rng.uniform(-1.0, 1.0, size=config.units).astype(np.float32)
        bias *= np.float32(config.bias_scaling)

        # The fingerprint covers the config and every drawn number. The radius scaling is a function of
        # those, but an eigensolver's last bits vary between machines, so it is applied after hashing.
        self.fingerprint = _fingerprint(config, input_dim, recurrent, w_in, bias)
        self.unscaled_radius = scale_to_spectral_radius(recurrent, config.spectral_radius)
        self._recurrent_scipy = recurrent
        if config.units <= DENSE_MAX_UNITS:
            w_r = torch.from_numpy(recurrent.toarray())
        else:
            w_r = torch.sparse_csr_tensor(
                torch.from_numpy(recurrent.indptr.astype(np.int64)),
                torch.from_numpy(recurrent.indices.astype(np.int64)),
                torch.from_numpy(recurrent.data),
                size=recurrent.shape,
            )
        # Not persistent: the matrices are regenerated from the seed, never saved.
        self.register_buffer("w_r", w_r, persistent=False)
        self.register_buffer("w_in", torch.from_numpy(w_in), persistent=False)
        self.register_buffer("bias", torch.from_numpy(bias), persistent=False)
        self.register_buffer("leak", torch.from_numpy(config.leak_rates()), persistent=False)  # (K,)

    @property
    def units(self) -> int:
        return self.config.units

    def recurrent_matrix(self) -> sp.csr_matrix:
        """W_r as a SciPy sparse matrix (for analysis, e.g. its spectral radius)."""
        return self._recurrent_scipy

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The zero state, shape (batch, units)."""
        return torch.zeros(batch_size, self.units, device=device or self.w_in.device)

    def step(self, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """One leaky update. state: (B, K), inputs: (B, input_dim) -> new state (B, K), float32.

        Differentiable with respect to ``state`` and ``inputs`` (training backpropagates through it).
        """
        inputs = inputs.to(torch.float32)
        if self.w_r.layout == torch.sparse_csr:
            recurrent_drive = (self.w_r @ state.T).T  # (B, K)
        else:
            recurrent_drive = state @ self.w_r.T  # (B, K)
        pre_activation = recurrent_drive + inputs @ self.w_in.T + self.bias  # (B, K)
        activated = torch.tanh(pre_activation) if self.config.activation == "tanh" else pre_activation
        if self.config.leak_rate_min is None:
            leak = self.config.leak_rate
            if leak == 1.0:
                return activated
            return (1.0 - leak) * state + leak * activated
        return state + self.leak * (activated - state)

    def run(self, inputs: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """Drive the reservoir with a sequence. inputs: (T, B, input_dim) -> states (T, B, K)."""
        if state is None:
            state = self.initial_state(inputs.shape[1], inputs.device)
        states = []
        for x in inputs:
            state = self.step(state, x)
            states.append(state)
        return torch.stack(states)

    def extra_repr(self) -> str:
        c = self.config
        return (f"units={c.units}, input_dim={self.input_dim}, spectral_radius={c.spectral_radius}, "
                f"leak_rate={c.leak_rate}, input_scaling={c.input_scaling}, connectivity={c.connectivity}, "
                f"seed={c.seed}, fingerprint={self.fingerprint[:12]}")


def step_running(step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], state: torch.Tensor,
                 inputs: torch.Tensor, running: int, isolated: bool) -> torch.Tensor:
    """(B, running): the last ``running`` units of ``step(state, inputs)`` (a reservoir's or a recurrence's step);
    ``isolated``: the step sees those units alone, the others zeroed, so W_r's held-to-running block is cut and what
    the held units keep cannot drive them (``RanConfig.running_clock`` "isolated")."""
    if isolated:
        state = torch.cat([state.new_zeros(state.shape[0], state.shape[1] - running), state[:, -running:]], dim=1)
    return step(state, inputs)[:, -running:]


def _fingerprint(config: ReservoirConfig, input_dim: int, recurrent: sp.csr_matrix,
                 w_in: np.ndarray, bias: np.ndarray) -> str:
    digest = hashlib.sha256()
    described = config.to_dict()
    if described["leak_rate_min"] is None:  # a field newer than the first artifacts: absent at its default
        del described["leak_rate_min"]
    digest.update(repr(sorted(described.items())).encode())
    digest.update(f"input_dim={input_dim}".encode())
    for array in (recurrent.indptr.astype("<i8"), recurrent.indices.astype("<i4"),
                  recurrent.data.astype("<f4"), w_in.astype("<f4"), bias.astype("<f4")):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
