"""Leakage guards (issue 4, point 5) beyond the feature-level ones in test_events/test_score.

- Appending future labels (labels reported later, even flipping outcomes) changes no past score.
- Training on [S, E] never reads a label reported after E 23:59:59: the labels it selects
  examples from stop there, and labels landed later change none of its examples.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import polars as pl
import pytest

from .conftest import ZONE_DAYS, ZONE_START, use_home

DAY = ZONE_START + timedelta(days=22)
TRAIN_END = ZONE_START + timedelta(days=20)


def land_future_labels(landing: Path, reported: datetime, ids: list[str], is_fraud: list[int]) -> None:
    """A labels partition on ``reported``'s day, reporting outcomes for ``ids``."""
    folder = landing / "labels" / f"date={reported.date()}"
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"event_id": ids, "is_fraud": is_fraud, "reported_at": [reported] * len(ids)}).write_parquet(
        folder / "part-future.parquet"
    )


def flipped(home: Path, days: list) -> tuple[list[str], list[int]]:
    """Every transaction of ``days`` labelled fraud (an outcome no real label had)."""
    from pipeline.config import Settings
    from pipeline.validate import read_validated

    ids = read_validated(Settings(home=home), "transactions", days).collect()["event_id"].to_list()
    return ids, [1] * len(ids)


@pytest.fixture
def landing(small_zone: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "landing"
    shutil.copytree(small_zone, copy)
    return copy


def test_future_labels_change_no_past_score(home_copy: Path, landing: Path, monkeypatch) -> None:
    from pipeline import db
    from pipeline.config import Settings
    from pipeline.score import score_day
    from pipeline.validate import validate_day

    use_home(monkeypatch, home_copy, landing)
    settings = Settings()
    score_day(settings, DAY)
    engine = db.make_engine(settings.scores_db_url)
    before = db.read_scores(engine, DAY, DAY).drop("scored_at").sort("event_id")

    reported = datetime.combine(ZONE_START + timedelta(days=ZONE_DAYS - 1), time(12), UTC)
    ids, labels = flipped(home_copy, [DAY - timedelta(days=3), DAY])
    land_future_labels(landing, reported, ids, labels)
    validate_day(settings, reported.date())
    score_day(settings, DAY)

    after = db.read_scores(engine, DAY, DAY).drop("scored_at").sort("event_id")
    stored = db.read_labels(engine)
    engine.dispose()
    assert before.height > 0 and after.equals(before)
    # the labels did arrive (so the comparison means something)
    assert stored.filter(pl.col("event_id").is_in(ids))["is_fraud"].to_list() == [1] * len(ids)


def test_training_reads_no_label_after_its_cutoff(
    validated_home: Path, landing: Path, tmp_path, monkeypatch
) -> None:
    from pipeline import train
    from pipeline.config import Settings
    from pipeline.validate import validate_day

    home = tmp_path / "home"
    shutil.copytree(validated_home, home)
    use_home(monkeypatch, home, landing)
    settings = Settings()
    seen: list[tuple[pl.DataFrame, object]] = []

    class Stop(Exception):
        pass

    real = train.select_examples

    def spy(data, labels, *args, **kwargs):
        seen.append((labels, real(data, labels, *args, **kwargs)))
        raise Stop  # the examples are what we check; no need to fit

    monkeypatch.setattr(train, "select_examples", spy)
    with pytest.raises(Stop):
        train.train_model(settings, ZONE_START, TRAIN_END, progress=False)

    # labels reported the day after the cut-off, flipping every training transaction to fraud
    reported = datetime.combine(TRAIN_END + timedelta(days=1), time(0), UTC)
    days = [ZONE_START + timedelta(days=k) for k in range(21)]
    land_future_labels(landing, reported, *flipped(home, days))
    validate_day(settings, reported.date())
    with pytest.raises(Stop):
        train.train_model(settings, ZONE_START, TRAIN_END, progress=False)

    cutoff = datetime.combine(TRAIN_END + timedelta(days=1), time(0), UTC)
    (labels_a, ex_a), (labels_b, ex_b) = seen
    assert labels_b["reported_at"].max() < cutoff
    assert labels_a.equals(labels_b)
    assert (ex_a.rows == ex_b.rows).all() and (ex_a.y == ex_b.y).all()
    assert 0 < ex_a.y.sum() < len(ex_a.y)
