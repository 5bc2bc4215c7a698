"""Linear readouts shared by the probes: ridge regression, and what is measured on held-out data.

The same readout is fitted on the reservoir state and on the current input (the stateless control),
so the two differ only in what they read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ran.errors import ConfigError

_ROW_CHUNK = 4096  # rows accumulated at a time in float64, to bound memory on long series


@dataclass(frozen=True)
class Ridge:
    """A fitted ridge readout ``y = x @ weights + intercept`` (the intercept is not regularised)."""

    weights: np.ndarray  # (features, targets)
    intercept: np.ndarray  # (targets,)

    def predict(self, features: np.ndarray) -> np.ndarray:
        out = np.empty((features.shape[0], self.weights.shape[1]), dtype=np.float64)
        for start in range(0, features.shape[0], _ROW_CHUNK):
            rows = np.asarray(features[start : start + _ROW_CHUNK], dtype=np.float64)
            out[start : start + _ROW_CHUNK] = rows @ self.weights + self.intercept
        return out


def fit_ridge(features: np.ndarray, targets: np.ndarray, ridge: float = 1e-6) -> Ridge:
    """Ridge regression of ``targets`` (N, m) or (N,) on ``features`` (N, n).

    ``ridge`` is relative: the penalty added to the centred Gram matrix is ``ridge`` times its mean
    diagonal, so one value suits states and inputs of any scale.
    """
    return fit_ridges(features, targets, (ridge,))[0]


def fit_ridges(features: np.ndarray, targets: np.ndarray, ridges: tuple[float, ...]) -> list[Ridge]:
    """:func:`fit_ridge` at each penalty of ``ridges``, from one centred Gram matrix."""
    features = np.asarray(features)
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim == 1:
        targets = targets[:, None]
    if features.ndim != 2 or features.shape[0] != targets.shape[0] or features.shape[0] < 2:
        raise ConfigError(
            f"fit_ridge needs features (N >= 2, n) and targets (N, m), got {features.shape} "
            f"and {targets.shape}"
        )
    if not ridges or any(not ridge >= 0 for ridge in ridges):
        raise ConfigError(f"ridge must be >= 0, got {ridges[0] if len(ridges) == 1 else list(ridges)!r}")
    feature_mean = features.mean(axis=0, dtype=np.float64)
    target_mean = targets.mean(axis=0)
    n_features = features.shape[1]
    gram = np.zeros((n_features, n_features))
    cross = np.zeros((n_features, targets.shape[1]))
    for start in range(0, features.shape[0], _ROW_CHUNK):
        rows = np.asarray(features[start : start + _ROW_CHUNK], dtype=np.float64) - feature_mean
        gram += rows.T @ rows
        cross += rows.T @ (targets[start : start + _ROW_CHUNK] - target_mean)
    scale = max(float(np.trace(gram)) / n_features, np.finfo(np.float64).tiny)
    fitted = []
    for ridge in ridges:
        penalised = gram.copy()
        penalised[np.diag_indices_from(penalised)] += ridge * scale
        try:
            weights = np.linalg.solve(penalised, cross)
        except np.linalg.LinAlgError:
            weights = np.linalg.lstsq(penalised, cross, rcond=None)[0]
        fitted.append(Ridge(weights=weights, intercept=target_mean - feature_mean @ weights))
    return fitted


def squared_correlation(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Column-wise squared Pearson correlation of (N, m) arrays; 0 where either column is constant."""
    predictions = np.asarray(predictions, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    p = predictions - predictions.mean(axis=0)
    t = targets - targets.mean(axis=0)
    covariance = np.sum(p * t, axis=0)
    variance = np.sum(p * p, axis=0) * np.sum(t * t, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.where(variance > 0, covariance**2 / np.where(variance > 0, variance, 1.0), 0.0)
    return result


def r_squared(predictions: np.ndarray, targets: np.ndarray) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot of one target (can be negative)."""
    predictions = np.asarray(predictions, dtype=np.float64).ravel()
    targets = np.asarray(targets, dtype=np.float64).ravel()
    total = float(np.sum((targets - targets.mean()) ** 2))
    if total == 0.0:
        raise ConfigError("r_squared: the target is constant on the evaluation data")
    return 1.0 - float(np.sum((targets - predictions) ** 2)) / total


@dataclass(frozen=True)
class Detection:
    precision: float
    recall: float
    f1: float
    threshold: float

    def to_dict(self) -> dict[str, float]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "threshold": self.threshold,
        }


def detection_scores(predicted: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """(precision, recall, F1) of boolean predictions against boolean labels (0 where undefined)."""
    predicted, labels = np.asarray(predicted, bool), np.asarray(labels, bool)
    true_positive = float(np.sum(predicted & labels))
    precision = true_positive / max(float(np.sum(predicted)), 1.0)
    recall = true_positive / max(float(np.sum(labels)), 1.0)
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return precision, recall, f1


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The score threshold with the highest F1 on (training) data; candidates are the distinct scores."""
    scores, labels = np.asarray(scores, np.float64).ravel(), np.asarray(labels, bool).ravel()
    if not labels.any():
        raise ConfigError("no positive examples in the training data: use more steps or a higher event rate")
    order = np.argsort(-scores)
    sorted_scores, sorted_labels = scores[order], labels[order]
    true_positive = np.cumsum(sorted_labels)
    predicted = np.arange(1, len(scores) + 1)
    f1 = 2 * true_positive / (predicted + labels.sum())
    # Only cut between distinct scores: predict positive for all scores >= the chosen one.
    last_of_run = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    f1 = np.where(last_of_run, f1, -1.0)
    return float(sorted_scores[int(np.argmax(f1))])


def fit_detector(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    ridge: float = 1e-6,
) -> Detection:
    """Ridge regression on 0/1 labels, thresholded where F1 is best on the training data; scored on test."""
    readout = fit_ridge(train_features, np.asarray(train_labels, np.float64), ridge)
    threshold = best_threshold(readout.predict(train_features)[:, 0], train_labels)
    predicted = readout.predict(test_features)[:, 0] >= threshold
    precision, recall, f1 = detection_scores(predicted, test_labels)
    return Detection(precision, recall, f1, threshold)
