"""Metrics of the stored scores against the labels known now (contract section 6)."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import polars as pl

from pipeline.config import Settings
from pipeline.errors import MissingInputError


def scores_with_labels(scores: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Attach the latest known label to each scored transaction; unlabelled counts as genuine."""
    return scores.join(labels.select("event_id", "is_fraud"), on="event_id", how="left").with_columns(
        pl.col("is_fraud").fill_null(0).cast(pl.Int8)
    )


def score_metrics(df: pl.DataFrame, k: int = 100) -> dict[str, Any]:
    """AUC ROC, AP, card precision@k (customer as card) and recall at 1% FPR."""
    from pipeline.metrics import (
        auc_roc,
        average_precision,
        card_precision_at_k,
        precision_recall_at_k,
        recall_at_fpr,
    )

    y = df["is_fraud"].to_numpy().astype(np.int64)
    s = df["risk_score"].to_numpy()
    both = 0 < y.sum() < len(y)
    cards = df.select(
        "customer_id", pl.col("score_date").alias("day"), pl.col("risk_score").alias("score"), "is_fraud"
    )
    daily = [
        precision_recall_at_k(g["is_fraud"].to_numpy(), g["risk_score"].to_numpy(), k)
        for _, g in df.group_by("score_date")
    ]
    return {
        "n_transactions": len(y),
        "n_fraud": int(y.sum()),
        "auc_roc": auc_roc(y, s) if both else None,
        "average_precision": average_precision(y, s) if both else None,
        "card_precision_at_100": card_precision_at_k(cards, k=k)[0] if len(y) else None,
        "recall_at_1pct_fpr": recall_at_fpr(y, s, 0.01) if both else None,
        "alert_precision": float(np.mean([d[0] for d in daily])) if daily else None,
        "alert_recall": float(np.mean([d[1] for d in daily])) if daily else None,
    }


def evaluate_range(settings: Settings, start: date, end: date) -> dict[str, Any]:
    """Evaluate the current scores of [start, end] against every label validated so far."""
    from pipeline import db
    from pipeline.sequences import read_labels

    engine = db.make_engine(settings.scores_db_url)
    try:
        db.init_schema(engine)
        scores = db.read_scores(engine, start, end)
    finally:
        engine.dispose()
    if scores.height == 0:
        raise MissingInputError(
            f"no stored scores for {start.isoformat()}..{end.isoformat()} (run fraudseq score first)"
        )
    df = scores_with_labels(scores, read_labels(settings, None))
    return {"start": start.isoformat(), "end": end.isoformat(), **score_metrics(df, k=settings.alert_budget)}
