"""Load validated days into the per-event feature table that training and scoring share."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np
import polars as pl

from features.events import WindowsOf, build_event_table, customer_starts, feature_matrix
from pipeline.config import Settings
from pipeline.errors import MissingInputError

log = logging.getLogger(__name__)


@dataclass
class EventData:
    """Contract-ordered events of a span of days, with their raw feature matrix."""

    events: pl.DataFrame  # one row per event, FEATURE_NAMES columns included
    matrix: np.ndarray  # (M, F) raw features
    starts: np.ndarray  # (M,) row index of each row's customer's first event

    def transaction_rows(self, first: date, last: date) -> np.ndarray:
        """Row indexes of transactions whose event date lies in [first, last]."""
        d = self.events["event_time"].dt.date()
        mask = (self.events["source"] == 1) & (d >= first) & (d <= last)
        return np.flatnonzero(mask.to_numpy())


def day_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def check_days(settings: Settings, needed: list[date], context: list[date]) -> list[date]:
    """Fail on a needed day that is not validated; warn on missing context days.

    Returns the days to read (validated ones among ``context + needed``).
    """
    from pipeline.validate import validated_days

    ok = set(validated_days(settings, "transactions"))
    missing = [d for d in needed if d not in ok]
    if missing:
        raise MissingInputError(
            f"day {missing[0].isoformat()} is not validated (run: fraudseq validate --date {missing[0].isoformat()})"
            + (f"; {len(missing) - 1} more day(s) missing" if len(missing) > 1 else "")
        )
    absent = [d for d in context if d not in ok]
    if absent:
        log.warning(
            "%d history day(s) not validated, reading without them (first: %s)", len(absent), absent[0]
        )
    return [d for d in context + needed if d in ok]


def load_events(
    settings: Settings,
    days: list[date],
    include_logins: bool = True,
    *,
    customers: Collection[str] | None = None,
    frames: tuple[pl.LazyFrame, pl.LazyFrame] | None = None,
    where: pl.Expr | None = None,
    reason_columns: bool = True,
    windows_of: WindowsOf | None = None,
) -> EventData:
    """Interleave validated logins and transactions of ``days`` and featurise them.

    ``include_logins=False`` builds transaction-only sequences (for ablations).
    ``customers`` keeps only those customers' events; the filter is pushed into the lazy
    Parquet scan, before any feature work. Features only ever look at one customer's own
    events, so a customer's rows are the same whether read alone or with everybody.
    ``frames`` (transactions, logins) replaces the validated scan of ``days``: a shard's
    events already split out of the history by ``pipeline.shards.split_history``.
    ``where`` filters both validated scans first: a shard's hash range
    (``features.hashing.in_shard``), which the Parquet reader turns into skipped row groups.
    ``reason_columns=False``: without the columns only the alert reasons read
    (``features.events.REASON_ONLY_COLUMNS``), for a pass that only scores.
    ``windows_of``: keep only the rows the windows of those transactions read
    (``features.events.WindowsOf``), for a pass that scores them: their windows and feature
    rows are the same as in the whole table, and the other rows never get their row features.
    """
    from pipeline.validate import read_validated

    if frames is not None:
        tx, logins = frames
    else:
        tx = read_validated(settings, "transactions", days, where)
        logins = read_validated(settings, "logins", days, where)
    if customers is not None:
        wanted = pl.Series("customer_id", sorted(set(customers)), dtype=pl.String).implode()
        tx = tx.filter(pl.col("customer_id").is_in(wanted))
        logins = logins.filter(pl.col("customer_id").is_in(wanted))
    if not include_logins:
        logins = logins.filter(pl.lit(False))
    events = build_event_table(tx, logins, reason_columns, windows_of)
    return EventData(events, feature_matrix(events), customer_starts(events))


def read_labels(settings: Settings, known_at_end_of: date | None) -> pl.DataFrame:
    """Labels reported at or before ``known_at_end_of`` 23:59:59 UTC (None: all); the latest per event wins."""
    from pipeline.validate import read_validated, validated_days

    days = [d for d in validated_days(settings, "labels") if known_at_end_of is None or d <= known_at_end_of]
    labels = read_validated(settings, "labels", days)
    if known_at_end_of is not None:
        cutoff = datetime.combine(known_at_end_of + timedelta(days=1), datetime.min.time(), timezone.utc)
        labels = labels.filter(pl.col("reported_at") < cutoff)
    return latest_labels(labels.collect())


def latest_labels(labels: pl.DataFrame) -> pl.DataFrame:
    """One row per event_id: the label with the latest reported_at (then the higher is_fraud)."""
    return (
        labels.sort(["event_id", "reported_at", "is_fraud"])
        .group_by("event_id", maintain_order=True)
        .last()
        .select("event_id", pl.col("is_fraud").cast(pl.Int8), "reported_at")
    )
