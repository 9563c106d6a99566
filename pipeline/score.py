"""Score one validated day with a pinned model version and write the analyst tables."""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
import polars as pl

from features.windows import gather_windows
from pipeline.config import Settings
from pipeline.registry import ModelBundle
from pipeline.sequences import EventData, check_days, load_events

log = logging.getLogger(__name__)


def rank_and_alert(scores: np.ndarray, event_ids: list[str], budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranks 1..n (riskiest first, ties by event_id) and the top-``budget`` alert flags."""
    order = np.lexsort((np.asarray(event_ids, dtype=object), -scores))
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks, ranks <= budget


def score_events(
    bundle: ModelBundle, data: EventData, day: date, budget: int, model_name: str, model_version: str
) -> pl.DataFrame:
    """The ``transaction_scores`` rows of ``day``: one per kept transaction."""
    from pipeline.reasons import occlusion_weights, reasons_json

    rows = data.transaction_rows(day, day)
    windows, lengths = gather_windows(data.matrix, data.starts, rows, bundle.window)
    probs = bundle.predict_proba(windows, lengths) if len(rows) else np.zeros(0)
    tx = data.events[rows]
    ranks, alerts = rank_and_alert(probs, tx["event_id"].to_list(), budget)

    reasons = ["[]"] * len(rows)
    alert_idx = np.flatnonzero(alerts)
    if len(alert_idx):
        weights = occlusion_weights(windows[alert_idx], lengths[alert_idx], bundle.predict_proba)
        offsets = np.arange(-bundle.window + 1, 1)
        medians = _customer_median_amounts(data, rows[alert_idx])
        for k, i in enumerate(alert_idx):
            window_rows = rows[i] + offsets
            window_rows = np.where(np.arange(bundle.window) >= bundle.window - lengths[i], window_rows, -1)
            reasons[i] = reasons_json(data.events, window_rows, weights[k], medians[k])
    return tx.select(
        "event_id",
        "customer_id",
        pl.col("event_time").dt.replace_time_zone(None).alias("event_time"),  # naive UTC in the DB
        pl.lit(day).alias("score_date"),
        pl.Series("risk_score", probs.astype(np.float64)),
        pl.Series("risk_rank", ranks.astype(np.int32)),
        pl.Series("alert", alerts),
        pl.Series("reasons", reasons, dtype=pl.String),
        pl.lit(model_name).alias("model_name"),
        pl.lit(str(model_version)).alias("model_version"),
        pl.lit(datetime.now(timezone.utc).replace(tzinfo=None)).alias("scored_at"),
    )


def _customer_median_amounts(data: EventData, rows: np.ndarray) -> list[float | None]:
    """Median of each row's customer's earlier transaction amounts (for reason texts)."""
    out: list[float | None] = []
    amounts = data.events["amount"].to_numpy()
    source = data.events["source"].to_numpy()
    for r in rows:
        s = data.starts[r]
        prev = amounts[s:r][source[s:r] == 1]
        out.append(float(np.median(prev)) if len(prev) else None)
    return out


def score_day(
    settings: Settings, day: date, model_uri: str | None = None, pinned: tuple[str, str] | None = None
) -> dict[str, Any]:
    """Score ``day`` with its history and replace that day's rows in the scores DB.

    ``pinned`` is a (name, version) already resolved by the caller (a DAG run resolves the
    champion once at its start); otherwise ``model_uri`` or the champion is resolved here, once.
    """
    from pipeline import db, faults
    from pipeline.registry import load_bundle, resolve_version, use_tracking
    from pipeline.sequences import read_labels

    use_tracking(settings.tracking_uri)
    name, version = pinned or resolve_version(model_uri, settings.model_name)
    bundle = load_bundle(name, version)
    days = check_days(settings, [day], settings.history_range(day))
    data = load_events(settings, days)
    scores = score_events(bundle, data, day, settings.alert_budget, name, version)
    risk = db.customer_daily_summary(scores)

    engine = db.make_engine(settings.scores_db_url)
    try:
        db.init_schema(engine)
        db.write_scored_day(engine, scores, risk, day, version)
        faults.checkpoint("score.labels")
        db.upsert_labels(engine, read_labels(settings, None))
    finally:
        engine.dispose()
    n_alerts = int(scores["alert"].sum())
    log.info("scored %s: %d transactions, %d alerts, %s v%s", day, scores.height, n_alerts, name, version)
    return {
        "date": day.isoformat(),
        "model_name": name,
        "model_version": version,
        "n_transactions": scores.height,
        "n_alerts": n_alerts,
        "max_risk_score": float(scores["risk_score"].max() or 0.0) if scores.height else 0.0,  # type: ignore[arg-type]
    }
