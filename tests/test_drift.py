"""Drift: PSI over quantile bins fixed at training, the warning, and the retraining asset."""

from __future__ import annotations

import json
import logging
import math
import shutil
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from pipeline.drift import bin_shares, build_reference, day_drift, psi, quantile_edges, summarise

from .conftest import ROOT, ZONE_START, use_home

DAY = ZONE_START + timedelta(days=24)


def test_psi_of_hand_made_shares() -> None:
    assert psi([0.25, 0.25, 0.5], [0.25, 0.25, 0.5]) == 0.0
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(expected)  # 0.879
    # symmetric in its two arguments, always >= 0
    assert psi([0.9, 0.1], [0.5, 0.5]) == pytest.approx(expected)
    # an empty bin is floored at 1e-4, not infinite
    assert psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.5 * math.log(2) + 0.4999 * math.log(0.5 / 1e-4))


def test_quantile_bins_split_into_tenths_and_merge_ties() -> None:
    values = np.arange(1000, dtype=float)
    edges = quantile_edges(values)
    assert len(edges) == 9
    assert bin_shares(values, edges) == pytest.approx([0.1] * 10, abs=0.002)
    flags = np.array([0.0] * 700 + [1.0] * 300)
    flag_edges = quantile_edges(flags)
    assert flag_edges == [0.0, 1.0]
    assert bin_shares(flags, flag_edges).tolist() == pytest.approx([0.7, 0.3, 0.0])
    assert quantile_edges(np.array([np.nan])) == []


def test_same_distribution_is_stable_and_a_shift_is_not() -> None:
    rng = np.random.default_rng(0)
    names = ("log_amount", "new_device")
    train = np.column_stack([rng.normal(3, 1, 20_000), rng.random(20_000) < 0.05]).astype(float)
    ref = build_reference(train, names, rng.beta(1, 20, 20_000))
    same = np.column_stack([rng.normal(3, 1, 2_000), rng.random(2_000) < 0.05]).astype(float)
    stable = day_drift(ref, same, names, rng.beta(1, 20, 2_000))
    assert set(stable) == {"risk_score", "log_amount", "new_device"}
    assert max(stable.values()) < 0.05
    moved = same.copy()
    moved[:, 0] += 1.0  # amounts e-times larger
    moved[:, 1] = rng.random(2_000) < 0.4  # a wave of new devices
    shifted = day_drift(ref, moved, names, rng.beta(1, 3, 2_000))
    assert shifted["log_amount"] > 0.2 and shifted["new_device"] > 0.2 and shifted["risk_score"] > 0.2
    record = summarise(DAY, shifted, 0.2, 2_000)
    assert set(record["drifted"]) == {"log_amount", "new_device", "risk_score"}
    assert record["max_psi"] == max(shifted.values())


def test_reference_is_stored_in_the_registered_bundle(trained_home) -> None:
    from pipeline.config import Settings
    from pipeline.registry import load_bundle, resolve_version, use_tracking

    settings = Settings(home=trained_home)
    use_tracking(settings.tracking_uri)
    bundle = load_bundle(*resolve_version(None, settings.model_name))
    ref = bundle.drift_reference
    assert ref is not None and ref["n_bins"] == 10
    assert {"risk_score", "log_amount", "new_device"} <= set(ref["columns"])
    for col in ref["columns"].values():
        assert len(col["expected"]) == len(col["edges"]) + 1
        assert sum(col["expected"]) == pytest.approx(1.0, abs=1e-4)
    assert len(ref["columns"]["log_amount"]["edges"]) == 9


@pytest.mark.slow
def test_a_shifted_day_trips_the_threshold_and_a_normal_one_does_not(
    home_copy, small_zone, tmp_path, monkeypatch, caplog
) -> None:
    from pipeline.config import Settings
    from pipeline.drift import latest_drift
    from pipeline.score import score_day
    from pipeline.validate import validate_day

    landing = tmp_path / "landing"
    shutil.copytree(small_zone, landing)
    use_home(monkeypatch, home_copy, landing)
    settings = Settings()
    caplog.set_level(logging.WARNING, logger="pipeline.drift")
    normal = score_day(settings, DAY)
    assert normal["drifted"] == [] and 0 < normal["drift_max_psi"] <= 0.2
    assert not [r for r in caplog.records if r.name == "pipeline.drift"]

    # the next day's amounts arrive in cents instead of units: a feed bug that only drift sees
    shifted_day = DAY + timedelta(days=1)
    part = next((landing / "transactions" / f"date={shifted_day}").glob("*.parquet"))
    pl.read_parquet(part).with_columns(pl.col("amount") * 100).write_parquet(part)
    validate_day(settings, shifted_day)
    shifted = score_day(settings, shifted_day)
    assert "log_amount" in shifted["drifted"] and shifted["drift_max_psi"] > 0.2
    warnings = [r.getMessage() for r in caplog.records if r.name == "pipeline.drift"]
    assert len(warnings) == 1 and "log_amount" in warnings[0] and str(shifted_day) in warnings[0]
    stored = latest_drift(settings.reports_dir)
    assert stored is not None and stored["date"] == str(shifted_day) and "log_amount" in stored["drifted"]
    page = (settings.reports_dir / f"{shifted_day}.html").read_text()
    assert "Drift warning" in page and "log_amount" in page

    # a stricter threshold makes the normal day drift too
    monkeypatch.setenv("FRAUDSEQ_DRIFT_THRESHOLD", "0.0001")
    assert score_day(Settings(), DAY)["drifted"]
    record = json.loads((settings.reports_dir / "drift" / f"date={DAY}.json").read_text())
    assert record["threshold"] == 0.0001


def test_score_dag_emits_the_drift_asset_and_train_dag_is_scheduled_on_it() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    score = bag.dags["fraudseq_score"]
    outlets = {o.name for t in score.tasks for o in t.outlets}
    assert "fraudseq_drift" in outlets
    train = bag.dags["fraudseq_train"]
    condition = train.timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"  # either asset triggers a run, not only both
    assert {a.name for a in condition.objects} == {"fraudseq_drift", "fraudseq_labels"}
    assert train.timetable.timetable.expression == "0 4 * * 1"  # and the weekly cron still runs


@pytest.mark.slow
def test_score_dag_run_on_a_drifted_day_emits_the_asset(home_copy, small_zone, tmp_path, monkeypatch) -> None:
    """Through Airflow: the drifted day's run succeeds, and announce_drift emits fraudseq_drift."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from pipeline.config import Settings
    from pipeline.demo import prepare_airflow, run_dag
    from pipeline.validate import validate_day

    landing = tmp_path / "landing"
    shutil.copytree(small_zone, landing)
    use_home(monkeypatch, home_copy, landing)
    part = next((landing / "transactions" / f"date={DAY}").glob("*.parquet"))
    pl.read_parquet(part).with_columns(pl.col("amount") * 100).write_parquet(part)
    validate_day(Settings(), DAY)
    prepare_airflow(Settings())

    def drift_events() -> int:
        with create_session() as session:
            asset = session.scalar(select(AssetModel).where(AssetModel.name == "fraudseq_drift"))
            if asset is None:
                return 0
            return len(session.scalars(select(AssetEvent).where(AssetEvent.asset_id == asset.id)).all())

    before = drift_events()
    run_dag("fraudseq_score", {"date": str(DAY - timedelta(days=1))})  # a normal day: skipped, no event
    assert drift_events() == before
    run_dag("fraudseq_score", {"date": str(DAY)})
    assert drift_events() == before + 1
    assert (Settings().reports_dir / f"{DAY}.html").is_file()
