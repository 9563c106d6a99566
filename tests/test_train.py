"""Training labels, the time split, the gate, and the registry round trip."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from pipeline.sequences import EventData, latest_labels
from pipeline.train import champion_gate, select_examples

from .conftest import ZONE_START, use_home

E = date(2026, 1, 28)


def _events(days: list[int]) -> EventData:
    """One transaction per listed day offset from 2026-01-01, all of customer A."""
    times = [datetime(2026, 1, 1, 12, tzinfo=timezone.utc) + timedelta(days=d) for d in days]
    df = pl.DataFrame(
        {
            "event_id": [f"t{d}" for d in days],
            "customer_id": ["A"] * len(days),
            "event_time": times,
            "source": [1] * len(days),
        },
        schema_overrides={"event_time": pl.Datetime("us", "UTC"), "source": pl.Int8},
    )
    return EventData(df, np.zeros((len(days), 1), np.float32), np.zeros(len(days), np.int64))


def _labels(rows: list[tuple[str, int, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"event_id": pl.String, "is_fraud": pl.Int8, "reported_at": pl.Datetime("us", "UTC")},
        orient="row",
    )


def test_examples_follow_label_maturity_and_time_split() -> None:
    data = _events(list(range(0, 28)))  # 2026-01-01 .. 2026-01-28
    rep = datetime(2026, 1, 28, 9, tzinfo=timezone.utc)
    labels = _labels([("t3", 1, rep), ("t25", 1, rep), ("t20", 0, rep)])
    ex = select_examples(data, labels, date(2026, 1, 1), E, delay_days=7, validation_days=7)
    # matured through 2026-01-21 (E + 1 day - 7 days, exclusive): val = 01-15..01-21
    assert (ex.val_start, ex.val_end) == (date(2026, 1, 15), date(2026, 1, 21))
    ids = data.events["event_id"].to_numpy()[ex.rows].tolist()
    assert "t3" in ids and "t20" in ids
    assert "t22" not in ids  # unlabelled and younger than the delay: immature context only
    assert "t25" not in ids  # labelled, but after the validation window: not fitted on
    assert ex.n_immature == 6 and ex.n_dropped_after_val == 1
    y = dict(zip(ids, ex.y.tolist(), strict=True))
    assert y["t3"] == 1 and y["t20"] == 0 and y["t0"] == 0
    val_ids = {i for i, v in zip(ids, ex.is_val, strict=True) if v}
    assert val_ids == {f"t{d}" for d in range(14, 21)}


def test_latest_label_wins() -> None:
    early = datetime(2026, 1, 10, tzinfo=timezone.utc)
    late = datetime(2026, 1, 20, tzinfo=timezone.utc)
    out = latest_labels(_labels([("a", 1, late), ("a", 0, early), ("b", 0, early)]))
    assert dict(zip(out["event_id"].to_list(), out["is_fraud"].to_list(), strict=True)) == {"a": 1, "b": 0}


@pytest.mark.parametrize(
    ("new", "champ", "promoted"),
    [(0.5, None, True), (0.505, 0.5, True), (0.5049, 0.5, False), (0.4, 0.5, False)],
)
def test_champion_gate(new: float, champ: float | None, promoted: bool) -> None:
    assert champion_gate(new, champ)[0] is promoted


def test_label_reported_after_cutoff_never_reaches_training(validated_home, small_zone, monkeypatch) -> None:
    from pipeline.config import Settings
    from pipeline.sequences import read_labels

    use_home(monkeypatch, validated_home, small_zone)
    settings = Settings()
    cutoff = ZONE_START + timedelta(days=13)
    known = read_labels(settings, cutoff)
    everything = read_labels(settings, None)
    limit = datetime.combine(cutoff + timedelta(days=1), datetime.min.time(), timezone.utc)
    assert known.height > 0 and everything.height > known.height
    assert known["reported_at"].max() < limit
    late = everything.filter(pl.col("reported_at") >= limit)["event_id"].to_list()
    assert not set(late) & set(known["event_id"].to_list())


def test_retrain_on_same_data_registers_but_keeps_champion(home_copy, small_zone, monkeypatch) -> None:
    from pipeline.config import Settings
    from pipeline.registry import champion_version, use_tracking
    from pipeline.train import TrainOptions, train_model

    use_home(monkeypatch, home_copy, small_zone)
    settings = Settings()
    use_tracking(settings.tracking_uri)
    assert champion_version(settings.model_name) == "1"
    out = train_model(
        settings,
        ZONE_START,
        ZONE_START + timedelta(days=20),
        seed=0,
        options=TrainOptions(epochs=2),
        progress=False,
    )
    assert out["version"] == "2" and out["promoted"] is False
    # same seed, same data: the same model, so the champion's AP equals the new one exactly
    assert out["metrics"]["champion_val_average_precision"] == pytest.approx(
        out["metrics"]["val_average_precision"]
    )
    assert champion_version(settings.model_name) == "1"


def test_training_fails_clearly_on_an_unvalidated_day(validated_home, small_zone, monkeypatch) -> None:
    from pipeline.config import Settings
    from pipeline.errors import MissingInputError
    from pipeline.train import train_model

    use_home(monkeypatch, validated_home, small_zone)
    with pytest.raises(MissingInputError, match="day 2026-02-02 is not validated"):
        train_model(Settings(), date(2026, 1, 20), date(2026, 2, 10), progress=False)
