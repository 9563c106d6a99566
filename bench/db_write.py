"""Writing a scored day to PostgreSQL: ``db.write_scored_day`` against per-row COPY.

Usage, from the repository root: python -m bench.db_write [--rows 1000000] [--runs 3]
[--pg "host=127.0.0.1 port=5432 user=postgres"]

A one-off measurement, not a ``make bench`` row. A synthetic day of ``--rows`` scored
transactions (about one alert in 10,000 with a reasons JSON, the rest ``[]``; one customer row
per 1.6 transactions), in the order ``finalise_day`` writes them, is written with
``db.write_scored_day``, which streams CSV that Polars writes (``db._copy_csv``). The reference
is the loader it replaced: the same COPY fed one Python tuple at a time through psycopg's
``write_row``. Each write is a new day into the same tables of a fresh database, as each night's
is, the two loaders alternating. Each loader's first day is read back and checked equal to the
frame. Prints medians of the wall time and of this process's CPU time, and their ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import contextmanager, nullcontext
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

DAY = date(2026, 1, 5)


def scored_day(n: int, day: date = DAY, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``transaction_scores`` and ``customer_daily_risk`` frames of ``day``, ``n`` transactions,
    in the order ``finalise_day`` writes them (by customer, then time)."""
    from pipeline import db

    rng = np.random.default_rng(seed)
    n_customers = max(1, int(n / 1.6))
    score = rng.random(n)
    rank = np.empty(n, dtype=np.int32)
    rank[np.argsort(-score, kind="stable")] = np.arange(1, n + 1, dtype=np.int32)
    alert = rank <= max(1, n // 10_000)
    reason = json.dumps(
        [
            {
                "event_id": "tx_1",
                "kind": "login",
                "text": 'a login from a new device, "Pixel 8"',
                "weight": 0.31,
            }
        ]
    )
    start = datetime(day.year, day.month, day.day)
    scores = pl.DataFrame(
        {
            "event_id": [f"tx_{day:%Y%m%d}_{i:09d}" for i in rng.permutation(n)],
            "customer_id": [f"c_{i:08d}" for i in rng.integers(0, n_customers, n)],
            "event_time": [
                start + timedelta(microseconds=int(u)) for u in rng.integers(0, 86_400 * 10**6, n)
            ],
            "score_date": [day] * n,
            "risk_score": score,
            "risk_rank": rank,
            "alert": alert,
            "reasons": np.where(alert, reason, "[]").tolist(),
            "model_name": ["fraudseq-bilstm"] * n,
            "model_version": ["1"] * n,
            "scored_at": [datetime(2026, 1, 6, 2, 0, 0, 123456)] * n,
        }
    )
    scores = scores.sort("customer_id", "event_time", "event_id")
    return scores, db.customer_daily_summary(scores)


@contextmanager
def per_row_copy() -> Any:
    """``db._copy_csv`` replaced by the former loader: one ``write_row`` per Python tuple."""
    from pipeline import db

    def copy_rows(conn: Any, table: str, frame: pl.DataFrame) -> None:
        raw = db._driver(conn)
        columns = ", ".join(frame.columns)
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in frame.iter_rows():
                copy.write_row(row)

    csv = db._copy_csv
    db._copy_csv = copy_rows
    try:
        yield
    finally:
        db._copy_csv = csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg", default="host=127.0.0.1 port=5432 user=postgres connect_timeout=3")
    args = parser.parse_args()

    from bench.rows import pg_database
    from pipeline import db

    seconds: dict[str, list[float]] = {"csv": [], "per_row": []}
    client: dict[str, list[float]] = {"csv": [], "per_row": []}  # this process's CPU seconds
    url, drop = pg_database(f"{args.pg} dbname=postgres")
    try:
        engine = db.make_engine(url)
        db.init_schema(engine)
        k = 0
        for _ in range(args.runs):
            for name in ("per_row", "csv"):
                day = DAY + timedelta(days=k)  # each write is a new day, as each night's is
                k += 1
                scores, risk = scored_day(args.rows, day)
                with per_row_copy() if name == "per_row" else nullcontext():
                    began, cpu = time.perf_counter(), time.process_time()
                    db.write_scored_day(engine, scores, risk, day, "1")
                    seconds[name].append(time.perf_counter() - began)
                    client[name].append(time.process_time() - cpu)
                if len(seconds[name]) > 1:
                    continue  # each loader's rows are checked once
                back = db.read_scores(engine, day, day, model_version="1").sort("event_id")
                expected = scores.sort("event_id").with_columns(
                    pl.col("event_time", "scored_at").dt.replace_time_zone("UTC")
                )
                if not back.equals(expected):
                    raise SystemExit(f"{name}: the rows read back differ from the rows written")
        engine.dispose()
    finally:
        drop()
    print(f"write_scored_day of a new day of {args.rows:,} transactions, PostgreSQL, medians of {args.runs}:")
    for name, label in (("csv", "CSV COPY (db._copy_csv)     "), ("per_row", "per-row COPY (the reference)")):
        wall, cpu = statistics.median(seconds[name]), statistics.median(client[name])
        print(
            f"  {label} {wall:6.2f} s  {args.rows / wall:9,.0f} rows/s  client CPU {cpu:5.2f} s  runs {seconds[name]}"
        )
    ratio = statistics.median(seconds["per_row"]) / statistics.median(seconds["csv"])
    cpu_ratio = statistics.median(client["per_row"]) / statistics.median(client["csv"])
    print(f"  ratio: {ratio:.2f}x wall, {cpu_ratio:.2f}x client CPU")


if __name__ == "__main__":
    main()
