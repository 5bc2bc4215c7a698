import numpy as np
import pytest
import torch

from ran.errors import ConfigError
from ran.reservoir import Reservoir, ReservoirConfig, spectral_radius


def test_same_seed_same_matrices_and_fingerprint():
    a = Reservoir(ReservoirConfig(units=300, seed=7), input_dim=16)
    b = Reservoir(ReservoirConfig(units=300, seed=7), input_dim=16)
    c = Reservoir(ReservoirConfig(units=300, seed=8), input_dim=16)
    assert torch.equal(a.w_r, b.w_r) and torch.equal(a.w_in, b.w_in) and torch.equal(a.bias, b.bias)
    assert a.fingerprint == b.fingerprint
    assert c.fingerprint != a.fingerprint and not torch.equal(a.w_in, c.w_in)


def test_fingerprint_depends_on_every_setting():
    base = ReservoirConfig(units=64)
    prints = {Reservoir(base, 8).fingerprint, Reservoir(base, 9).fingerprint}
    for change in [dict(spectral_radius=0.9), dict(leak_rate=0.5), dict(input_scaling=0.1), dict(connectivity=0.2)]:
        prints.add(Reservoir(ReservoirConfig(units=64, **change), 8).fingerprint)
    assert len(prints) == 6


def test_matrices_match_known_values_on_any_machine():
    # PCG64 + the fixed construction: these first entries are the same everywhere.
    reservoir = Reservoir(ReservoirConfig(units=16, seed=0, connectivity=0.25), input_dim=4)
    first = reservoir.w_in[0].tolist()
    again = Reservoir(ReservoirConfig(units=16, seed=0, connectivity=0.25), input_dim=4).w_in[0].tolist()
    assert first == again
    rng_in = np.random.SeedSequence(0).spawn(3)[1]
    expected = np.random.Generator(np.random.PCG64(rng_in)).uniform(-1, 1, size=(16, 4)).astype(np.float32) * 0.5
    assert np.array_equal(reservoir.w_in.numpy(), expected)


@pytest.mark.parametrize("units", [200, 512, 1024, 2048])
def test_spectral_radius_within_one_percent(units):
    reservoir = Reservoir(ReservoirConfig(units=units, spectral_radius=0.9), input_dim=8)
    exact = np.abs(np.linalg.eigvals(reservoir.recurrent_matrix().toarray().astype(np.float64))).max()
    assert exact == pytest.approx(0.9, rel=0.01)


def test_iterative_radius_matches_exact_on_a_dense_random_matrix():
    matrix = np.random.default_rng(3).standard_normal((700, 700)).astype(np.float32)
    exact = np.abs(np.linalg.eigvals(matrix.astype(np.float64))).max()
    assert spectral_radius(matrix) == pytest.approx(exact, rel=0.01)


def test_large_reservoir_is_sparse():
    reservoir = Reservoir(ReservoirConfig(units=5000, connectivity=0.01), input_dim=8)
    assert reservoir.w_r.layout == torch.sparse_csr
    state = reservoir.initial_state(3)
    x = torch.randn(3, 8)
    sparse_next = reservoir.step(state + 0.1, x)
    dense_next = torch.tanh((state + 0.1) @ torch.from_numpy(reservoir.recurrent_matrix().toarray()).T
                            + x @ reservoir.w_in.T + reservoir.bias)
    torch.testing.assert_close(sparse_next, dense_next, atol=1e-5, rtol=1e-5)


def test_step_is_the_leaky_update_and_differentiable():
    reservoir = Reservoir(ReservoirConfig(units=32, leak_rate=0.3), input_dim=5)
    state = torch.randn(2, 32, requires_grad=True)
    x = torch.randn(2, 5)
    new = reservoir.step(state, x)
    expected = 0.7 * state + 0.3 * torch.tanh(state @ reservoir.w_r.T + x @ reservoir.w_in.T + reservoir.bias)
    torch.testing.assert_close(new, expected)
    new.sum().backward()
    assert state.grad is not None and state.grad.abs().sum() > 0
    assert reservoir.run(torch.randn(6, 2, 5)).shape == (6, 2, 32)


@pytest.mark.parametrize("bad", [dict(units=0), dict(spectral_radius=0.0), dict(spectral_radius=-1.0),
                                 dict(leak_rate=0.0), dict(leak_rate=1.5), dict(input_scaling=-0.1),
                                 dict(connectivity=0.0), dict(seed=-1)])
def test_bad_config_is_refused(bad):
    with pytest.raises(ConfigError, match=list(bad)[0]):
        ReservoirConfig(**bad)
