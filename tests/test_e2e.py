"""End to end through the real DAGs (dag.test on SQLite): the tables hold to the contract."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
import sqlalchemy as sa

from .conftest import use_home


def record_collector_tuning(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions that call ``pipeline.heap.tune_collector`` from here on."""
    import sys

    from pipeline import heap

    callers: list[str] = []
    tune = heap.tune_collector

    def recorded() -> tuple[int, int, int]:
        callers.append(sys._getframe(1).f_code.co_name)
        return tune()

    monkeypatch.setattr(heap, "tune_collector", recorded)
    return callers


@pytest.mark.slow
def test_demo_runs_the_dags_and_the_tables_hold_to_the_contract(tmp_path, monkeypatch) -> None:
    from pipeline import db
    from pipeline.config import Settings
    from pipeline.demo import run_demo
    from pipeline.validate import read_validated

    use_home(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("FRAUDSEQ_ALERT_BUDGET", "25")
    tuned_by = record_collector_tuning(monkeypatch)
    settings = Settings()
    out = run_demo(settings, customers=150, days=28, seed=3)
    # each task that does the work runs with a batch process's collector (pipeline.heap)
    assert {"validate", "train", "score_shard", "finalise"} <= set(tuned_by)
    assert out["quality"]["average_precision"] is not None
    start, end = date.fromisoformat(out["scored"]["start"]), date.fromisoformat(out["scored"]["end"])
    settings = Settings(landing=tmp_path / "home" / "landing")

    engine = db.make_engine(settings.scores_db_url)
    try:
        scores = db.read_scores(engine, start, end)
        with engine.connect() as conn:
            risk = pl.DataFrame(conn.execute(sa.text("SELECT * FROM customer_daily_risk")).mappings().all())
            n_labels = conn.execute(sa.text("SELECT COUNT(*) FROM fraud_labels")).scalar_one()
    finally:
        engine.dispose()
    days = pl.date_range(start, end, eager=True).to_list()
    kept = read_validated(settings, "transactions", days).collect()
    assert scores.height == kept.height > 0
    assert scores["event_id"].n_unique() == scores.height
    for day, group in scores.group_by("score_date"):
        assert sorted(group["risk_rank"].to_list()) == list(range(1, group.height + 1)), day
        assert int(group["alert"].sum()) == min(25, group.height)
    assert risk.select("customer_id", "score_date", "model_version").n_unique() == risk.height
    assert int(risk["n_transactions"].sum()) == scores.height
    assert n_labels > 0
    assert "average precision on that week" in out["summary"]
