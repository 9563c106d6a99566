"""Score a day in N customer shards, then rank, alert, explain and commit it once.

A customer's hash is ``xxhash64(customer_id)`` (seed 0): stable across processes, machines
and Python versions (never Python's salted ``hash()``). Shard k of N holds the customers whose
hash lies in the k-th of N equal ranges of the 64-bit space (``shard_of``), so every event of a
customer lands in the same shard and features never see a cut sequence. Validation stores the
hash with every transaction and login (``HASH_COLUMN``), sorted by it, in row groups, so a
shard's read of a validated day only decodes the row groups of its own hash range.

``score_shard`` reads, from the validated history (or from ``split_history``'s files, when
one process scores every shard of days validated without the hash), only the events of the
shard's customers that have a transaction on the scored day, builds their windows, and writes one
small Parquet file of raw logits to the shared location (an fsspec URL: a local folder,
``s3://``, ``gs://``, ``abfs://``). It touches no database, so shards run anywhere, in any
order, and a retried shard simply overwrites its own file (temp file, then rename).

``finalise_day`` reads every shard's file, calibrates, ranks and picks the alert budget
over all of them, explains the alerts (re-reading only the alerted customers' events),
and replaces the day in the scores DB in one transaction. Once the day and its report are
written, it deletes the day's shard outputs (about 42 bytes a transaction, most of them the
raw feature rows for the drift check), which would otherwise pile up night after night; a
finalise run again after that needs its shards scored again.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.events import WindowsOf
from features.hashing import in_shard, of_customers, shard_of
from pipeline.config import Settings
from pipeline.errors import MissingInputError, UsageError
from pipeline.registry import ModelBundle
from pipeline.shared import write_atomic
from pipeline.validate import one_view_of_validated_days

log = logging.getLogger(__name__)

SHARD_SCHEMA = pl.Schema(
    {
        "event_id": pl.String(),
        "customer_id": pl.String(),
        "event_time": pl.Datetime("us"),  # naive UTC, as in the scores DB
        "logit": pl.Float64(),
    }
)


def check_shard(shard: int, n_shards: int) -> None:
    if n_shards < 1 or not 0 <= shard < n_shards:
        raise UsageError(f"shard {shard} is not in 0..{n_shards - 1}")


def day_customers(settings: Settings, day: date, where: pl.Expr | None = None) -> list[str]:
    """Sorted ids of the customers with at least one kept transaction on ``day``.

    ``where``: a filter of the validated scan first (a shard's hash range, ``in_shard``).
    """
    from pipeline.validate import read_validated

    scan = read_validated(settings, "transactions", [day], where)
    frame = scan.select(pl.col("customer_id").unique()).collect()
    return sorted(frame["customer_id"].to_list())


SHARD_COLUMN = "_shard"


@dataclass
class HistorySplit:
    """Each shard's history, written once by ``split_history`` as local Parquet files."""

    n_shards: int
    files: dict[tuple[str, int], list[Path]]  # (log, shard) -> one file per day that has rows
    customers: dict[int, list[str]]  # shard -> its sorted customers with a transaction on the day

    def frames(self, shard: int) -> tuple[pl.LazyFrame, pl.LazyFrame]:
        """(transactions, logins) of the shard's customers, in place of the validated scan."""
        from features.events import INPUT_COLUMNS
        from pipeline.validate import validated_schema

        check_shard(shard, self.n_shards)
        out = []
        for kind, columns in INPUT_COLUMNS.items():  # transactions, then logins
            paths = self.files.get((kind, shard), [])
            out.append(
                pl.scan_parquet(paths)
                if paths
                else pl.LazyFrame(schema=validated_schema(kind)).select(columns)
            )
        return out[0], out[1]


@contextmanager
def split_history(settings: Settings, days: list[date], day: date, n_shards: int) -> Iterator[HistorySplit]:
    """Read the history once and write each shard's events to its own files.

    Scoring N shards straight from the validated days scans the whole history N times (a
    string ``is_in`` over every row each time). Here each validated day is read once, joined
    with the shard of each customer that has a transaction on ``day`` (the others are dropped,
    as the scan's filter drops them), and written as one file per (log, day, shard). The
    folder is local, under the home, and is removed on exit, whether scoring failed or not.
    Only the columns the event table reads are written (``features.events.INPUT_COLUMNS``).
    """
    from features.events import INPUT_COLUMNS
    from pipeline.validate import read_validated

    customers = day_customers(settings, day)
    shards = [shard_of(c, n_shards) for c in customers]
    owner = pl.DataFrame(
        {"customer_id": customers, SHARD_COLUMN: shards},
        schema={"customer_id": pl.String, SHARD_COLUMN: pl.UInt32},
    ).lazy()
    by_shard: dict[int, list[str]] = {k: [] for k in range(n_shards)}
    for c, k in zip(customers, shards, strict=True):
        by_shard[k].append(c)  # sorted, as customers is
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix=f"split-{day.isoformat()}-", dir=settings.home_dir) as tmp,
        ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as writers,
    ):
        files: dict[tuple[str, int], list[Path]] = defaultdict(list)
        for kind, columns in INPUT_COLUMNS.items():
            for d in days:
                scan = read_validated(settings, kind, [d]).select(columns)
                frame = scan.join(owner, on="customer_id", how="inner").collect()
                parts = {
                    int(key[0]): part.drop(SHARD_COLUMN)  # type: ignore[call-overload]
                    for key, part in frame.partition_by(SHARD_COLUMN, as_dict=True).items()
                }
                paths = {k: Path(tmp) / kind / f"shard={k}" / f"date={d.isoformat()}.parquet" for k in parts}
                # one small file per shard: each write is single-threaded, so several run at once
                list(writers.map(_write_split, parts.values(), [paths[k] for k in parts]))
                for k, path in paths.items():
                    files[(kind, k)].append(path)
        n_files = sum(len(v) for v in files.values())
        log.info("history of %s split into %d file(s) for %d shard(s)", day, n_files, n_shards)
        yield HistorySplit(n_shards, dict(files), by_shard)


def _write_split(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, compression="lz4", statistics=False)


def shard_url(settings: Settings, day: date, pinned: tuple[str, str], n_shards: int, shard: int) -> str:
    """Where shard ``shard`` of ``n_shards`` writes its logits for ``day`` and a model version."""
    name, version = pinned
    return (
        f"{settings.shared_location}/scores/date={day.isoformat()}/model={name}/version={version}"
        f"/of-{n_shards:04d}/shard-{shard:04d}.parquet"
    )


def remove_shard_outputs(settings: Settings, day: date, pinned: tuple[str, str], n_shards: int) -> None:
    """Delete the shard outputs of ``day`` for this version and shard count (``shard_url``'s
    folder), and the folders above it that this leaves empty, up to ``scores/``."""
    from pipeline import shared

    folder = shard_url(settings, day, pinned, n_shards, 0).rsplit("/", 1)[0]
    shared.remove_folder(folder, prune_up_to=f"{settings.shared_location}/scores")


FEATURES = "features"  # optional column of shard outputs: the transaction's raw feature row


def read_shard(url: str) -> pl.DataFrame:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    if not fs.exists(path):
        raise MissingInputError(f"shard output {url} is missing (score that shard first)")
    with fs.open(path, "rb") as fh:
        frame = pl.read_parquet(fh)
    missing = set(SHARD_SCHEMA) - set(frame.columns)
    if missing:
        raise MissingInputError(f"shard output {url} lacks column(s) {sorted(missing)}")
    return frame.select([*SHARD_SCHEMA, *([FEATURES] if FEATURES in frame.columns else [])])


def day_features(tx: pl.DataFrame, n_features: int) -> np.ndarray:
    """(n, F) raw feature rows of the finalised transactions (empty shards carry none)."""
    if FEATURES not in tx.columns or tx.height == 0:
        return np.zeros((0, n_features), dtype=np.float32)
    return np.asarray(tx[FEATURES].to_numpy(), dtype=np.float32).reshape(tx.height, n_features)


def _pinned_bundle(settings: Settings, pinned: tuple[str, str], bundle: ModelBundle | None) -> ModelBundle:
    if bundle is not None:
        return bundle
    from pipeline.registry import load_bundle, use_tracking

    use_tracking(settings.tracking_uri)
    return load_bundle(pinned[0], pinned[1])


def _days(settings: Settings, day: date, days: list[date] | None) -> list[date]:
    from pipeline.sequences import check_days

    return days if days is not None else check_days(settings, [day], settings.history_range(day))


def shard_logits(
    settings: Settings,
    bundle: ModelBundle,
    days: list[date],
    day: date,
    customers: list[str],
    frames: tuple[pl.LazyFrame, pl.LazyFrame] | None = None,
    where: pl.Expr | None = None,
) -> pl.DataFrame:
    """Raw logits of ``day``'s transactions of ``customers``, read with their history only.

    ``frames``: those customers' events, already split out of the history (``HistorySplit``).
    ``where``: a filter the validated scan applies first (the shard's hash range).
    """
    from pipeline.sequences import load_events

    if not customers:
        return pl.DataFrame(schema=SHARD_SCHEMA)
    # scores only: the alerts' reasons are written by finalise_day, from its own read; and only
    # the rows the day's windows read get their row features and a feature matrix row
    windows = WindowsOf(day, day, bundle.window)
    if frames is not None:
        data = load_events(settings, days, frames=frames, reason_columns=False, windows_of=windows)
    elif where is not None:
        # hashed days: the customers are picked by their stored hash, an integer test, in place
        # of their ids. A customer whose hash collides with one of theirs is read too; its events
        # are featurised on their own (features never look across customers) and its rows are
        # dropped below, so no score changes.
        data = load_events(
            settings, days, where=where & of_customers(customers), reason_columns=False, windows_of=windows
        )
    else:
        data = load_events(settings, days, customers=customers, reason_columns=False, windows_of=windows)
    rows = data.transaction_rows(day, day)
    if where is not None and len(rows):
        ids = data.events["customer_id"].gather(rows)
        rows = rows[ids.is_in(pl.Series(customers, dtype=pl.String).implode()).to_numpy()]
    # windows are gathered batch by batch: a day's windows are never all in memory at once
    logits = bundle.logits_rows(data.matrix, data.starts, rows) if len(rows) else np.zeros(0)
    return data.events[rows].select(
        "event_id",
        "customer_id",
        pl.col("event_time").dt.replace_time_zone(None),
        pl.Series("logit", np.asarray(logits, dtype=np.float64)),
        # raw feature rows of the day's transactions, for the drift check in finalise_day
        pl.Series(FEATURES, np.ascontiguousarray(data.matrix[rows], dtype=np.float32)),
    )


@one_view_of_validated_days()
def score_shard(
    settings: Settings,
    day: date,
    shard: int,
    n_shards: int,
    pinned: tuple[str, str],
    *,
    bundle: ModelBundle | None = None,
    days: list[date] | None = None,
    split: HistorySplit | None = None,
    hashed: bool | None = None,
) -> dict[str, Any]:
    """Score one shard of ``day`` and write its logits to the shared location.

    ``split``: the day's history already split by shard (one process scoring every shard);
    without it the shard scans the validated history for its customers, reading only its
    hash range of each day when every day carries the hash (``hashed``, looked up if None).
    Returns only the path and counts (what an Airflow XCom may carry).
    """
    from pipeline.validate import hashed_days

    check_shard(shard, n_shards)
    days = _days(settings, day, days)
    bundle = _pinned_bundle(settings, pinned, bundle)
    frames, where = None, None
    if split is None:
        if n_shards > 1 and (hashed if hashed is not None else hashed_days(settings, days)):
            where = in_shard(shard, n_shards)
            # the day's customers of this hash range, from its own row groups: hashing every
            # customer of the day in Python, in each of N shards, cost about 1 s a shard
            mine = day_customers(settings, day, where)
        else:
            mine = [c for c in day_customers(settings, day) if shard_of(c, n_shards) == shard]
    elif split.n_shards != n_shards:
        raise UsageError(f"the history was split into {split.n_shards} shards, not {n_shards}")
    else:
        mine = split.customers[shard]  # hashed once for every shard, by split_history
        frames = split.frames(shard)
    frame = shard_logits(settings, bundle, days, day, mine, frames, where)
    url = shard_url(settings, day, pinned, n_shards, shard)
    write_atomic(frame, url)
    log.info(
        "shard %d/%d of %s: %d customers, %d transactions", shard, n_shards, day, len(mine), frame.height
    )
    return {
        "date": day.isoformat(),
        "shard": shard,
        "n_shards": n_shards,
        "path": url,
        "n_customers": len(mine),
        "n_transactions": frame.height,
    }


@one_view_of_validated_days()
def finalise_day(
    settings: Settings,
    day: date,
    pinned: tuple[str, str],
    n_shards: int,
    paths: list[str] | None = None,
    *,
    bundle: ModelBundle | None = None,
    days: list[date] | None = None,
    hashed: bool | None = None,
) -> dict[str, Any]:
    """Calibrate, rank and alert over all shards of ``day``, explain alerts, commit the day once.

    ``hashed``: whether every day of ``days`` carries the customer hash (looked up if None), so
    the alerted customers' history is read by their stored hash.
    """
    from pipeline import db, faults
    from pipeline.report import TIMELINE_DAYS, post_score
    from pipeline.score import alert_reasons, rank_and_alert, scores_frame
    from pipeline.sequences import load_events, read_labels
    from pipeline.validate import hashed_days

    name, version = pinned
    expected = [shard_url(settings, day, pinned, n_shards, k) for k in range(n_shards)]
    if paths is not None and sorted(paths) != sorted(expected):
        raise MissingInputError(f"expected the {n_shards} shard outputs of {day}, got {len(paths)} path(s)")
    frames = [read_shard(url) for url in expected]
    frames = [f for f in frames if f.height] or frames[:1]  # empty shards carry no feature column
    tx = pl.concat(frames, how="diagonal").sort(["customer_id", "event_time", "event_id"])
    if tx["event_id"].n_unique() != tx.height:
        raise MissingInputError(f"shard outputs of {day} overlap: an event was scored by two shards")
    days = _days(settings, day, days)
    bundle = _pinned_bundle(settings, pinned, bundle)

    logits = tx["logit"].to_numpy()
    probs = bundle.calibrate(logits) if tx.height else np.zeros(0)
    ranks, alerts = rank_and_alert(probs, tx["event_id"], settings.alert_budget)
    reasons = ["[]"] * tx.height
    alert_idx = np.flatnonzero(alerts)
    alerted_events = None  # the alerted customers' events, for the reasons and the report's timelines
    if len(alert_idx):
        alerted = tx[alert_idx]
        customers = alerted["customer_id"].unique().to_list()
        # on hashed days the scan tests the stored hash, not the id: about half the read
        if hashed is None:
            hashed = hashed_days(settings, days)
        where = of_customers(customers) if hashed else None
        data = load_events(settings, days, customers=customers, where=where)
        day_rows = data.transaction_rows(day, day)
        row_of = dict(zip(data.events["event_id"].gather(day_rows).to_list(), day_rows.tolist(), strict=True))
        rows = np.array([row_of[e] for e in alerted["event_id"].to_list()], dtype=np.int64)
        for i, text in zip(alert_idx.tolist(), alert_reasons(bundle, data, rows), strict=True):
            reasons[i] = text
        if settings.history_days >= TIMELINE_DAYS:  # they span the timelines' days
            alerted_events = data.events

    scores = scores_frame(tx, day, probs, ranks, alerts, reasons, name, str(version))
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
    log.info(
        "scored %s over %d shard(s): %d transactions, %d alerts, %s v%s",
        day,
        n_shards,
        scores.height,
        n_alerts,
        name,
        version,
    )
    committed = time.perf_counter()  # the day's rows are in the scores DB from here on
    report = post_score(
        settings, day, bundle, scores, day_features(tx, len(bundle.normaliser.feature_names)), alerted_events
    )
    # the day, its report and its drift record are written: its shard outputs are spent. Until
    # here a failure leaves them, so a retried finalise reads them again
    remove_shard_outputs(settings, day, pinned, n_shards)
    return {
        "date": day.isoformat(),
        "model_name": name,
        "model_version": version,
        "n_transactions": scores.height,
        "n_alerts": n_alerts,
        "max_risk_score": float(probs.max()) if scores.height else 0.0,
        "n_shards": n_shards,
        **report,
        # after the commit: the report, the drift record and the report's MLflow run
        "report_seconds": round(time.perf_counter() - committed, 3),
    }


def worker_hostname() -> str:
    """Airflow ``[core] hostname_callable`` that tells apart workers sharing one host.

    ``FRAUDSEQ_WORKER_NAME`` wins (set it per worker when several run on one machine);
    otherwise the host's fully qualified name, as Airflow's default.
    """
    return os.environ.get("FRAUDSEQ_WORKER_NAME") or socket.getfqdn()
