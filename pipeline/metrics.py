"""Fraud metrics: ranking quality, alert-budget precision, and calibration.

Every score metric takes labels ``y`` in {0, 1} and scores ``s`` where higher means riskier.
Metrics that are undefined on a single class return NaN instead of raising, so a quiet day does
not crash an evaluation. Card precision@k and the removal of known-compromised customers follow
the Fraud Detection Handbook protocol (shared/data/handbook/README.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import polars as pl


def _as_arrays(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y).astype(np.int64).ravel()
    s_arr = np.asarray(s, dtype=np.float64).ravel()
    if len(y_arr) != len(s_arr):
        raise ValueError(f"y and scores differ in length: {len(y_arr)} != {len(s_arr)}")
    return y_arr, s_arr


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.any()) and not bool(y.all())


def auc_roc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve; NaN if only one class is present."""
    from sklearn.metrics import roc_auc_score

    y, s = _as_arrays(y, s)
    return float(roc_auc_score(y, s)) if _both_classes(y) else float("nan")


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision (area under the step precision-recall curve); NaN if one class only."""
    from sklearn.metrics import average_precision_score

    y, s = _as_arrays(y, s)
    return float(average_precision_score(y, s)) if _both_classes(y) else float("nan")


def recall_at_fpr(y: np.ndarray, s: np.ndarray, fpr: float = 0.01) -> float:
    """Highest recall of any threshold ``score >= t`` whose false-positive rate is at most ``fpr``.

    Tied scores share a threshold, so a tie is never split to squeeze under the budget.
    """
    from sklearn.metrics import roc_curve

    y, s = _as_arrays(y, s)
    if not _both_classes(y):
        return float("nan")
    fprs, tprs, _ = roc_curve(y, s, drop_intermediate=False)
    return float(tprs[fprs <= fpr].max())


def precision_recall_at_k(y: np.ndarray, s: np.ndarray, k: int) -> tuple[float, float]:
    """(precision, recall) of alerting on the ``k`` highest scores.

    Ties are broken by position (a stable sort), as a fixed alert budget must break them somehow.
    Precision divides by the number of alerts actually raised (``min(k, n)``); recall is NaN
    without frauds.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    y, s = _as_arrays(y, s)
    top = np.argsort(-s, kind="stable")[:k]
    hits = int(y[top].sum())
    n_pos = int(y.sum())
    precision = hits / len(top) if len(top) else float("nan")
    return precision, (hits / n_pos if n_pos else float("nan"))


def drop_known_compromised(df: pl.DataFrame, delay_days: int = 7) -> pl.DataFrame:
    """Remove rows of customers already known to be compromised on the row's day.

    A fraud on day ``f`` becomes known ``delay_days`` after it, so on test day ``d`` a customer
    is dropped if it had a fraud on day ``d - delay_days - 1`` or earlier (d - 8 by default), as
    in the handbook. ``df`` (columns ``customer_id``, ``day`` as a date or an integer day number,
    ``is_fraud``) must hold every day whose frauds count: the handbook counts frauds from the
    start of the training week, so pass training, delay and test days and filter to the test days
    afterwards. Row order is kept.
    """
    import polars as pl

    first = (
        df.filter(pl.col("is_fraud") == 1)
        .group_by("customer_id")
        .agg(pl.col("day").min().alias("_first_fraud_day"))
    )
    gap = pl.col("day") - pl.col("_first_fraud_day")
    if df.schema["day"] == pl.Date:
        gap = gap.dt.total_days()
    elif not df.schema["day"].is_integer():
        raise ValueError(f"day must be a Date or an integer day number, got {df.schema['day']}")
    return (
        df.with_row_index("_row")
        .join(first, on="customer_id", how="left")
        .filter(pl.col("_first_fraud_day").is_null() | (gap <= delay_days))
        .sort("_row")
        .drop("_row", "_first_fraud_day")
    )


def card_precision_at_k(df: pl.DataFrame, k: int = 100) -> tuple[float, list[float]]:
    """Handbook card precision@k: (mean over days, per-day values in day order).

    ``df`` has one row per transaction: ``customer_id``, ``day``, ``score``, ``is_fraud``.
    For each day in order: drop customers that an earlier day's top k caught with a real fraud
    (true positives only); take each remaining customer's highest score of the day; rank the
    customers (ties by ``customer_id``); the day's value is the number of top-k customers with a
    fraud that day divided by ``k`` (even when fewer than ``k`` customers remain, as in the
    handbook). Apply ``drop_known_compromised`` first to follow the full protocol.
    """
    import polars as pl

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    detected = df.select("customer_id").clear()
    per_day: list[float] = []
    for day in df["day"].unique().sort().to_list():
        cards = (
            df.filter(pl.col("day") == day)
            .join(detected, on="customer_id", how="anti")
            .group_by("customer_id")
            .agg(pl.col("score").max(), pl.col("is_fraud").max())
            .sort(["score", "customer_id"], descending=[True, False])
            .head(k)
        )
        caught = cards.filter(pl.col("is_fraud") == 1).select("customer_id")
        per_day.append(caught.height / k)
        detected = pl.concat([detected, caught])
    mean = float(np.mean(per_day)) if per_day else float("nan")
    return mean, per_day


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> float:
    """ECE with equal-mass bins: sum over bins of (bin share) * |fraud rate - mean probability|.

    Windows are sorted by probability (stable) and cut into ``n_bins`` groups whose sizes differ
    by at most one; equal mass keeps every bin populated when almost all scores are near zero.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    y_arr, p_arr = _as_arrays(y, p)
    if len(y_arr) == 0:
        return float("nan")
    order = np.argsort(p_arr, kind="stable")
    bins = [b for b in np.array_split(order, n_bins) if len(b)]
    gaps = [len(b) * abs(y_arr[b].mean() - p_arr[b].mean()) for b in bins]
    return float(np.sum(gaps) / len(y_arr))
