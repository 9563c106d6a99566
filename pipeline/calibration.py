"""Map model logits to probabilities of fraud, fitted on validation windows.

Training with ``pos_weight`` or focal loss skews the sigmoid of a logit away from a frequency,
and analysts read ``risk_score`` as a probability. Both calibrators are strictly increasing, so
ranks, alerts and average precision are unchanged; only the numbers become honest. Each one
serialises to a small JSON-able dict that is stored beside the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit, log_expit


def _check(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64).ravel()
    t = np.asarray(y, dtype=np.float64).ravel()
    if len(z) != len(t) or len(z) == 0:
        raise ValueError(f"need as many labels as logits, and at least one: {len(z)} vs {len(t)}")
    return z, t


def _nll(z: np.ndarray, t: np.ndarray) -> float:
    """Mean cross-entropy of targets ``t`` in [0, 1] under probabilities ``sigmoid(z)``."""
    return float(-np.mean(t * log_expit(z) + (1 - t) * log_expit(-z)))


def platt_targets(y: np.ndarray) -> np.ndarray:
    """Platt's (1999) smoothed targets: keep the fit finite when the classes are separable."""
    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    return np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))


def fit_logistic_1d(z: np.ndarray, t: np.ndarray, max_iter: int = 100) -> tuple[float, float]:
    """(a, b) minimising the cross-entropy of ``sigmoid(a z + b)``: damped Newton steps."""
    prior = (t.sum() + 1) / (len(t) - t.sum() + 1)
    theta = np.array([0.0, np.log(prior)])
    design = np.stack([z, np.ones_like(z)], axis=1)  # (N, 2)
    loss = _nll(design @ theta, t)
    for _ in range(max_iter):
        p = expit(design @ theta)
        grad = design.T @ (p - t) / len(z)
        hess = (design * (p * (1 - p))[:, None]).T @ design / len(z) + 1e-10 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6:  # halve until the loss does not go up
            candidate = theta - scale * step
            new_loss = _nll(design @ candidate, t)
            if new_loss <= loss:
                break
            scale /= 2
        else:
            break
        theta, converged = candidate, abs(loss - new_loss) < 1e-12
        loss = new_loss
        if converged:
            break
    return float(theta[0]), float(theta[1])


class PlattCalibrator:
    """``p = sigmoid(a * logit + b)`` with ``a > 0``.

    If the fitted slope is not positive (the model ranks backwards on the validation windows,
    or has no signal), it falls back to the identity, ``a = 1, b = 0``, and says so in
    ``fallback``: a calibrator must never reverse the model's ranking.
    """

    kind = "platt"

    def __init__(self, a: float = 1.0, b: float = 0.0, fallback: str | None = None) -> None:
        if a <= 0:
            raise ValueError(f"a must be > 0, got {a}")
        self.a, self.b, self.fallback = float(a), float(b), fallback

    def fit(self, logits: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        z, t = _check(logits, y)
        a, b = fit_logistic_1d(z, platt_targets(t))
        if a > 0:
            self.a, self.b, self.fallback = a, b, None
        else:
            self.a, self.b, self.fallback = 1.0, 0.0, "identity"
        return self

    def transform(self, logits: np.ndarray) -> np.ndarray:
        return expit(self.a * np.asarray(logits, dtype=np.float64) + self.b)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "a": self.a, "b": self.b, "fallback": self.fallback}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlattCalibrator:
        _check_kind(d, cls.kind)
        return cls(a=d["a"], b=d["b"], fallback=d.get("fallback"))


class TemperatureCalibrator:
    """``p = sigmoid(logit / T)`` with ``T > 0``: one parameter, cannot move the base rate.

    Good when the logits are over- or under-confident but centred; prefer Platt after training
    with ``pos_weight``, which shifts every logit up.
    """

    kind = "temperature"

    def __init__(self, temperature: float = 1.0) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def fit(self, logits: np.ndarray, y: np.ndarray) -> TemperatureCalibrator:
        from scipy.optimize import minimize_scalar

        z, t = _check(logits, y)
        # search log(1/T) in a bounded range: separable data would otherwise push T to 0
        best = minimize_scalar(lambda u: _nll(np.exp(u) * z, t), bounds=(-7.0, 7.0), method="bounded")
        self.temperature = float(np.exp(-best.x))
        return self

    def transform(self, logits: np.ndarray) -> np.ndarray:
        return expit(np.asarray(logits, dtype=np.float64) / self.temperature)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "temperature": self.temperature}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TemperatureCalibrator:
        _check_kind(d, cls.kind)
        return cls(temperature=d["temperature"])


Calibrator = PlattCalibrator | TemperatureCalibrator


def _check_kind(d: dict[str, Any], kind: str) -> None:
    if d.get("kind") != kind:
        raise ValueError(f"expected a {kind!r} calibrator, got kind={d.get('kind')!r}")


def calibrator_from_dict(d: dict[str, Any]) -> Calibrator:
    """Rebuild whichever calibrator ``to_dict`` stored."""
    kinds: dict[str, type[PlattCalibrator] | type[TemperatureCalibrator]] = {
        PlattCalibrator.kind: PlattCalibrator,
        TemperatureCalibrator.kind: TemperatureCalibrator,
    }
    if d.get("kind") not in kinds:
        raise ValueError(f"unknown calibrator kind {d.get('kind')!r}; expected one of {sorted(kinds)}")
    return kinds[d["kind"]].from_dict(d)
