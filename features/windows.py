"""Per-transaction windows: the customer's last W events ending with the transaction.

Windows are never stored: they are gathered on demand from the (M, F) per-event matrix
and each row's customer start, so memory is O(M·F) until a batch is materialised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from features.events import CONTINUOUS_FEATURES, CYCLIC_FEATURES, FEATURE_NAMES


def window_lengths(targets: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """How many real events each target's window holds (1..window)."""
    return np.minimum(targets - starts[targets] + 1, window).astype(np.int64)


def zero_left_padding(windows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Set the left padding of C-contiguous windows (N, W, F) to zero, in place; returns them.

    Row ``i`` holds ``W - lengths[i]`` padding positions before its real events. Only the
    padded rows are touched, through one flat index of their padding positions: about twice
    as fast as a boolean (N, W) mask, which numpy scans and assigns row by row.
    """
    n, w = windows.shape[:2]
    short = np.flatnonzero(np.asarray(lengths) < w)  # rows with any padding
    if not len(short):
        return windows
    pads = w - np.asarray(lengths, dtype=np.int64)[short]  # (S,) padding positions per short row
    first = np.repeat(short * w - (np.cumsum(pads) - pads), pads)  # (P,) row start, minus pads before
    flat = first + np.arange(int(pads.sum()))  # (P,) flat (N*W) position of every padding slot
    windows.reshape(n * w, -1)[flat] = 0.0
    return windows


def gather_windows(
    matrix: np.ndarray, starts: np.ndarray, targets: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded windows (N, W, F) float32, C-contiguous, and their lengths for event rows ``targets``.

    Position W-1 is the target itself; padding rows are all zeros (``is_real`` = 0).
    """
    targets = np.asarray(targets, dtype=np.int64)
    return WindowGatherer(matrix, starts, window).gather(targets), window_lengths(targets, starts, window)


class WindowGatherer:
    """Gathers windows of an (M, F) event matrix on demand, batch by batch if wanted.

    A window is ``window`` consecutive rows of the matrix, so it is copied as one block: a fancy
    index into a strided ``(M-W+1, W, F)`` view makes one contiguous copy per window (about 2-4x
    faster than indexing row by row), and only padded positions are then zeroed. Gathering
    per batch (``ModelBundle.predict_rows``) never holds all N windows at once.
    """

    def __init__(self, matrix: np.ndarray, starts: np.ndarray, window: int) -> None:
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.starts = starts
        self.window = window
        n_features = self.matrix.shape[1]
        # (M-W+1, W, F) views, no copy; None when the matrix is shorter than one window
        self.blocks = (
            sliding_window_view(self.matrix, (window, n_features))[:, 0]
            if len(self.matrix) >= window
            else None
        )

    def lengths(self, targets: np.ndarray) -> np.ndarray:
        return window_lengths(np.asarray(targets, dtype=np.int64), self.starts, self.window)

    def gather(self, targets: np.ndarray) -> np.ndarray:
        """Left-padded windows (N, W, F), float32 and C-contiguous, for event rows ``targets``."""
        targets = np.asarray(targets, dtype=np.int64)
        window, n_features = self.window, self.matrix.shape[1]
        if len(targets) == 0:
            return np.zeros((0, window, n_features), dtype=np.float32)
        if self.blocks is None:
            return _gather_rowwise(self.matrix, self.starts, targets, window)
        out = self.blocks[np.maximum(targets - window + 1, 0)]  # (N, W, F), one block copy per window
        for i in np.flatnonzero(targets < window - 1):  # the first W-1 rows of the matrix: shift by hand
            t = int(targets[i])
            out[i, : window - 1 - t] = 0.0
            out[i, window - 1 - t :] = self.matrix[: t + 1]
        return zero_left_padding(out, self.lengths(targets))  # positions before the customer's start


def _gather_rowwise(matrix: np.ndarray, starts: np.ndarray, targets: np.ndarray, window: int) -> np.ndarray:
    """The same windows, gathered row by row (for matrices shorter than one window)."""
    offsets = np.arange(-window + 1, 1, dtype=np.int64)  # (W,)
    idx = targets[:, None] + offsets[None, :]  # (N, W)
    valid = idx >= starts[targets][:, None]  # (N, W): same customer, not before its start
    x = matrix[np.where(valid, idx, 0)]  # (N, W, F)
    x *= valid[:, :, None]
    return x


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
        out = np.subtract(matrix, np.asarray(self.mean, dtype=np.float32), dtype=np.float32)
        out /= np.asarray(self.std, dtype=np.float32)
        return out

    def transform_windows(
        self, windows: np.ndarray, lengths: np.ndarray, inplace: bool = False
    ) -> np.ndarray:
        """Scaled windows (N, W, F) with the left padding kept at exactly zero.

        ``inplace`` scales a float32 C-contiguous ``windows`` in place (no second (N, W, F) array).
        """
        if inplace and (windows.dtype != np.float32 or not windows.flags.c_contiguous):
            raise ValueError("inplace scaling needs a C-contiguous float32 array")
        x = windows if inplace else np.array(windows, dtype=np.float32, order="C")
        x -= np.asarray(self.mean, dtype=np.float32)
        x /= np.asarray(self.std, dtype=np.float32)
        return zero_left_padding(x, lengths)

    def to_dict(self) -> dict[str, list]:
        return {"feature_names": self.feature_names, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict) -> Normaliser:
        return cls(list(d["feature_names"]), list(d["mean"]), list(d["std"]))


__all__ = [
    "CYCLIC_FEATURES",
    "Normaliser",
    "WindowGatherer",
    "gather_windows",
    "window_lengths",
    "zero_left_padding",
]
