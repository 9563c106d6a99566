"""Scoring: one row per kept transaction, ranks, alerts, reasons, idempotence, no leakage."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from pipeline.score import rank_and_alert

from .conftest import ZONE_DAYS, ZONE_START, use_home

DAY = ZONE_START + timedelta(days=24)


@pytest.mark.parametrize("as_series", [False, True], ids=["list", "series"])
def test_rank_and_alert_breaks_ties_by_event_id(as_series: bool) -> None:
    ids = ["b", "z", "a", "c"]
    ranks, alerts = rank_and_alert(
        np.array([0.2, 0.9, 0.2, 0.5]), pl.Series(ids) if as_series else ids, budget=2
    )
    assert ranks.tolist() == [4, 1, 3, 2]
    assert alerts.tolist() == [False, True, False, True]


def _scores(home, day):
    from pipeline import db
    from pipeline.config import Settings

    engine = db.make_engine(Settings(home=home).scores_db_url)
    try:
        return db.read_scores(engine, day, day)
    finally:
        engine.dispose()


def test_score_day_writes_one_row_per_kept_transaction(home_copy, small_zone, monkeypatch) -> None:
    from pipeline.config import Settings
    from pipeline.score import score_day
    from pipeline.validate import read_validated

    use_home(monkeypatch, home_copy, small_zone)
    monkeypatch.setenv("FRAUDSEQ_ALERT_BUDGET", "20")
    settings = Settings()
    out = score_day(settings, DAY)
    kept = read_validated(settings, "transactions", [DAY]).collect()
    scores = _scores(home_copy, DAY)
    assert out["n_transactions"] == kept.height == scores.height
    assert sorted(scores["event_id"].to_list()) == sorted(kept["event_id"].to_list())
    assert sorted(scores["risk_rank"].to_list()) == list(range(1, scores.height + 1))
    assert scores["risk_score"].is_between(0, 1).all()
    assert int(scores["alert"].sum()) == min(20, scores.height)
    alerts = scores.filter(pl.col("alert"))
    assert alerts["risk_rank"].max() == alerts.height
    for text in alerts["reasons"].to_list():
        reasons = json.loads(text)
        assert 1 <= len(reasons) <= 3
        assert {"event_id", "kind", "text", "weight"} <= set(reasons[0])
        assert isinstance(reasons[0]["text"], str) and reasons[0]["text"]

    again = score_day(settings, DAY)
    rescored = _scores(home_copy, DAY)
    assert again["n_transactions"] == rescored.height == scores.height
    cols = ["event_id", "risk_score", "risk_rank", "alert", "reasons"]
    assert rescored.sort("event_id").select(cols).equals(scores.sort("event_id").select(cols))


def test_report_seconds_time_what_runs_after_the_commit(home_copy, small_zone, monkeypatch) -> None:
    """``report_seconds`` spans the report, drift record and MLflow run, which start once the
    day's rows are committed: the benchmarks subtract it to time validated files to committed rows."""
    import time

    from pipeline import report
    from pipeline.config import Settings
    from pipeline.score import score_day

    use_home(monkeypatch, home_copy, small_zone)
    original, seen = report.post_score, []

    def slow_post_score(*args, **kwargs):
        seen.append(_scores(home_copy, DAY).height)  # what the scores DB holds when it starts
        time.sleep(0.5)
        return original(*args, **kwargs)

    monkeypatch.setattr(report, "post_score", slow_post_score)
    began = time.perf_counter()
    out = score_day(Settings(), DAY)
    wall = time.perf_counter() - began
    assert seen == [out["n_transactions"]] and out["n_transactions"] > 0
    assert 0.5 <= out["report_seconds"] < wall
    assert out["report"].endswith(f"{DAY}.html")


def test_appending_future_events_changes_no_past_score(home_copy, small_zone, tmp_path, monkeypatch) -> None:
    """Score DAY, then land and validate a later day full of events, and score DAY again."""
    from pipeline.config import Settings
    from pipeline.score import score_day
    from pipeline.validate import validate_day

    landing = tmp_path / "landing"
    shutil.copytree(small_zone, landing)
    use_home(monkeypatch, home_copy, landing)
    settings = Settings()
    score_day(settings, DAY)
    before = _scores(home_copy, DAY).sort("event_id")

    # future events: copies of the last day's rows, moved two days ahead, for every customer
    last = ZONE_START + timedelta(days=ZONE_DAYS - 1)
    future = last + timedelta(days=2)
    for log in ("transactions", "logins"):
        src = next((landing / log / f"date={last}").glob("*.parquet"))
        df = pl.read_parquet(src).with_columns(
            (pl.col("event_id") + "_f").alias("event_id"), pl.col("event_time") + pl.duration(days=2)
        )
        (landing / log / f"date={future}").mkdir(parents=True)
        df.write_parquet(landing / log / f"date={future}" / "part-000.parquet")
    # later on DAY itself: a burst of failed logins after the day's last transaction
    day_dir = landing / "logins" / f"date={DAY}"
    late = pl.read_parquet(next(day_dir.glob("*.parquet"))).with_columns(
        (pl.col("event_id") + "_late").alias("event_id"),
        pl.lit("login_failure").alias("event_type"),
        pl.col("event_time").dt.truncate("1d")
        + pl.duration(hours=23, minutes=59, seconds=59, microseconds=999_999),
    )
    late.write_parquet(day_dir / "part-999.parquet")
    validate_day(settings, DAY)
    validate_day(settings, last + timedelta(days=1))
    validate_day(settings, future)
    score_day(settings, DAY)
    after = _scores(home_copy, DAY).sort("event_id")
    assert before.select("event_id", "risk_score", "risk_rank", "alert").equals(
        after.select("event_id", "risk_score", "risk_rank", "alert")
    )
    assert before.height > 0


def test_model_uri_must_be_a_registry_uri(home_copy, small_zone, monkeypatch) -> None:
    from pipeline.config import Settings
    from pipeline.errors import UsageError
    from pipeline.score import score_day

    use_home(monkeypatch, home_copy, small_zone)
    for bad in ("/tmp/model", "runs:/abc/model", "models:/x@champion;drop", "file:///etc/passwd"):
        with pytest.raises(UsageError):
            score_day(Settings(), DAY, model_uri=bad)
