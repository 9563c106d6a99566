"""Per-transaction windows: the customer's last W events ending with the transaction.

Windows are never stored: they are gathered on demand from the (M, F) per-event matrix
and each row's customer start, so memory is O(M·F) until a batch is materialised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from features.events import CONTINUOUS_FEATURES, CYCLIC_FEATURES, FEATURE_NAMES


def window_lengths(targets: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """How many real events each target's window holds (1..window)."""
    return np.minimum(targets - starts[targets] + 1, window).astype(np.int64)


def gather_windows(
    matrix: np.ndarray, starts: np.ndarray, targets: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded windows (N, W, F) and their lengths for event rows ``targets``.

    Position W-1 is the target itself; padding rows are all zeros (``is_real`` = 0).
    """
    offsets = np.arange(-window + 1, 1, dtype=np.int64)  # (W,)
    idx = targets[:, None] + offsets[None, :]  # (N, W)
    valid = idx >= starts[targets][:, None]  # (N, W): same customer, not before its start
    x = matrix[np.where(valid, idx, 0)]  # (N, W, F)
    x *= valid[:, :, None]
    return x.astype(np.float32, copy=False), window_lengths(targets, starts, window)


@dataclass
class Normaliser:
    """Standardises continuous features; flags, one-hots and cyclic features pass through.

    Fitted on training event rows only and stored with the model as JSON.
    """

    feature_names: list[str]
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    @classmethod
    def fit(cls, matrix: np.ndarray, feature_names: tuple[str, ...] = FEATURE_NAMES) -> Normaliser:
        names = list(feature_names)
        mean = np.zeros(len(names))
        std = np.ones(len(names))
        scaled = [i for i, n in enumerate(names) if n in CONTINUOUS_FEATURES]
        if len(matrix):
            mean[scaled] = matrix[:, scaled].mean(axis=0)
            std[scaled] = np.maximum(matrix[:, scaled].std(axis=0), 1e-6)
        return cls(names, mean.tolist(), std.tolist())

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        """Scaled copy of ``matrix`` (M, F); the identity on non-continuous columns."""
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return ((matrix - mean) / std).astype(np.float32)

    def to_dict(self) -> dict[str, list]:
        return {"feature_names": self.feature_names, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict) -> Normaliser:
        return cls(list(d["feature_names"]), list(d["mean"]), list(d["std"]))


__all__ = ["Normaliser", "gather_windows", "window_lengths", "CYCLIC_FEATURES"]
