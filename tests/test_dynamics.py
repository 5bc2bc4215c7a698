"""Dynamics observables: known answers on small reservoirs and on hand-made arrays."""

import numpy as np
import pytest
import torch

from ran import dynamics
from ran.errors import ConfigError
from ran.reservoir import Reservoir, ReservoirConfig


@pytest.mark.parametrize("activation", ["tanh", "identity"])
@pytest.mark.parametrize("leak_rate", [1.0, 0.3])
def test_drive_matches_reservoir_run(activation, leak_rate):
    reservoir = Reservoir(
        ReservoirConfig(
            units=64, leak_rate=leak_rate, activation=activation, spectral_radius=0.9, bias_scaling=0.2
        ),
        3,
    )
    inputs = np.random.default_rng(0).standard_normal((25, 2, 3)).astype(np.float32)
    start = np.random.default_rng(1).uniform(-1, 1, (2, 64)).astype(np.float32)
    expected = reservoir.run(torch.from_numpy(inputs), torch.from_numpy(start)).numpy()
    np.testing.assert_allclose(dynamics.drive(reservoir, inputs, start), expected, atol=1e-5)


def test_sparse_reservoir_drive_matches_run():
    reservoir = Reservoir(ReservoirConfig(units=4100, connectivity=0.002), 2)  # above DENSE_MAX_UNITS
    inputs = np.random.default_rng(0).standard_normal((5, 1, 2)).astype(np.float32)
    expected = reservoir.run(torch.from_numpy(inputs)).numpy()
    np.testing.assert_allclose(dynamics.drive(reservoir, inputs), expected, atol=1e-5)


def test_scaled_drive_equals_a_reservoir_built_at_that_point():
    base = Reservoir(ReservoirConfig(units=64, spectral_radius=1.0, input_scaling=1.0), 3)
    target = Reservoir(ReservoirConfig(units=64, spectral_radius=0.7, input_scaling=0.3), 3)
    inputs = np.random.default_rng(0).standard_normal((30, 1, 3)).astype(np.float32)
    scaled = dynamics.drive(base, inputs, spectral_scale=0.7, input_scale=0.3)
    np.testing.assert_allclose(scaled, dynamics.drive(target, inputs), atol=1e-5)


def test_identity_activation_is_linear():
    reservoir = Reservoir(ReservoirConfig(units=32, activation="identity", input_scaling=5.0), 1)
    inputs = np.random.default_rng(0).standard_normal((10, 1, 1)).astype(np.float32)
    np.testing.assert_allclose(
        dynamics.drive(reservoir, 2 * inputs), 2 * dynamics.drive(reservoir, inputs), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(ConfigError, match="activation"):
        ReservoirConfig(activation="relu")


def test_echo_state_known_answers():
    """Zero input: spectral radius 0.5 forgets its initial state, 1.5 does not."""
    forgetting = Reservoir(ReservoirConfig(units=128, spectral_radius=0.5), 1)
    remembering = Reservoir(ReservoirConfig(units=128, spectral_radius=1.5), 1)
    assert dynamics.echo_state_residual(forgetting, steps=200) < 1e-6
    assert dynamics.echo_state_residual(remembering, steps=200) > 0.5


def test_echo_state_driven_input_contracts():
    reservoir = Reservoir(ReservoirConfig(units=128, spectral_radius=0.9, input_scaling=1.0), 2)
    inputs = np.random.default_rng(0).uniform(-1, 1, (200, 2))
    assert dynamics.echo_state_residual(reservoir, inputs=inputs) < 1e-6


def test_saturation_fraction():
    states = np.array([[0.99, -0.96, 0.5, 0.0], [0.1, 0.2, -0.3, 0.951]])
    assert dynamics.saturation_fraction(states) == pytest.approx(3 / 8)
    with pytest.raises(ConfigError):
        dynamics.saturation_fraction(np.zeros((0, 4)))


def test_participation_ratio_known_answers():
    rng = np.random.default_rng(0)
    isotropic = np.zeros((4000, 50))
    isotropic[:, :10] = rng.standard_normal((4000, 10))  # 10 equal directions
    assert dynamics.participation_ratio(isotropic) == pytest.approx(10, rel=0.05)
    rank_one = np.outer(rng.standard_normal(100), rng.standard_normal(30))
    assert dynamics.participation_ratio(rank_one) == pytest.approx(1.0, rel=1e-6)
    # T < K goes through X X^T: same answer as the eigenvalues of the K x K covariance.
    wide = rng.standard_normal((20, 200)) * np.linspace(0.1, 3, 200)
    eigenvalues = np.linalg.eigvalsh(np.cov(wide, rowvar=False))
    expected = eigenvalues.sum() ** 2 / np.sum(eigenvalues**2)
    assert dynamics.participation_ratio(wide) == pytest.approx(expected, rel=1e-6)
    ratio, fraction = dynamics.effective_dimension(isotropic)
    assert fraction == pytest.approx(ratio / 50)


def test_input_separation():
    a = np.random.default_rng(0).uniform(-1, 1, (20, 16))
    assert dynamics.input_separation(a, a) == 0.0
    assert dynamics.input_separation(a, a + 0.5) == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        dynamics.input_separation(a, a[:10])


def test_drive_rejects_wrong_shapes():
    reservoir = Reservoir(ReservoirConfig(units=16), 3)
    with pytest.raises(ConfigError, match="inputs must have shape"):
        dynamics.drive(reservoir, np.zeros((5, 1, 4)))
    with pytest.raises(ConfigError, match="state must have shape"):
        dynamics.drive(reservoir, np.zeros((5, 1, 3)), np.zeros((2, 16)))
