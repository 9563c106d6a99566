"""Target-aware piecewise-linear encoding of numerical features (Gorishniy et al., 2022).

A network reads a standardised number through smooth gates, so a sharp rule on one feature
("above this amount", "within this many days of the first known fraud") costs it many updates
and is learnt only roughly; a tree gets it with one split. This encoding hands the network those
split points: for each feature a small decision tree, fitted on the training rows alone, places
bin edges where the label changes, and each bin becomes one input that ramps from 0 to 1 across
the bin (0 below it, 1 above it). The raw feature is kept beside its bins.

Nothing here knows what a feature means or which fraud patterns exist: the edges come from the
training labels only, so the same code serves any event log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class PiecewiseLinearEncoder:
    """Per-feature bin edges (ascending, outer bounds included); a feature with none is skipped."""

    edges: list[list[float]]

    @classmethod
    def fit(
        cls, x: np.ndarray, y: np.ndarray, max_bins: int = 8, min_leaf: int = 20
    ) -> PiecewiseLinearEncoder:
        """Edges of each column of ``x`` (N, F) from a ``max_bins``-leaf tree on that column vs ``y``.

        ``min_leaf`` is the fewest training rows a bin may hold, so no edge rests on a handful of
        rows. A column on which no split helps gets no bins.
        """
        from sklearn.tree import DecisionTreeClassifier

        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"x must be (N, F) with N = len(y), got {x.shape} and {len(y)} labels")
        if max_bins < 2:
            raise ValueError(f"max_bins must be >= 2, got {max_bins}")
        edges: list[list[float]] = []
        for j in range(x.shape[1]):
            col = x[:, j].astype(np.float64)
            tree = DecisionTreeClassifier(max_leaf_nodes=max_bins, min_samples_leaf=min_leaf, random_state=0)
            tree.fit(col[:, None], y)
            cuts = np.unique(tree.tree_.threshold[tree.tree_.feature >= 0])
            if len(cuts) == 0:
                edges.append([])
                continue
            lo, hi = float(col.min()), float(col.max())
            edges.append([min(lo, float(cuts[0]) - 1e-3), *map(float, cuts), max(hi, float(cuts[-1]) + 1e-3)])
        return cls(edges)

    @property
    def n_components(self) -> int:
        """Inputs added per event: one per bin of every encoded feature."""
        return sum(max(len(e) - 1, 0) for e in self.edges)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(N, n_components) float32: for each bin, ``clip((x - left) / (right - left), 0, 1)``."""
        if x.ndim != 2 or x.shape[1] != len(self.edges):
            raise ValueError(f"x must be (N, {len(self.edges)}), got {x.shape}")
        out = np.empty((len(x), self.n_components), dtype=np.float32)
        k = 0
        for j, e in enumerate(self.edges):
            if len(e) < 2:
                continue
            left = np.asarray(e[:-1], dtype=np.float32)  # (K,)
            width = np.diff(np.asarray(e, dtype=np.float32))  # (K,)
            block = out[:, k : k + len(left)]  # (N, K) view
            np.subtract(x[:, j : j + 1].astype(np.float32), left, out=block)
            block /= width
            np.clip(block, 0.0, 1.0, out=block)
            k += len(left)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"edges": self.edges}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PiecewiseLinearEncoder:
        return cls([list(map(float, e)) for e in d["edges"]])
