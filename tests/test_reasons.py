"""Reasons: occlusion over the alert's window names the events that drove its score."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.reasons import describe_event, occlusion_weights

from .conftest import ZONE_START, use_home

DAY = ZONE_START + timedelta(days=24)


def test_occlusion_weights_find_the_event_a_model_depends_on() -> None:
    """A toy 'model' that scores high only when feature 0 is set somewhere in the window."""

    def predict(windows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return windows[:, :, 0].max(axis=1)

    w = np.zeros((2, 6, 2), dtype=np.float32)
    w[0, 3, 0] = 1.0  # window 0: the culprit sits at position 3
    w[:, :, 1] = 1.0
    lengths = np.array([6, 3])  # window 1 is padded on the left: positions 0..2 are not events
    weights = occlusion_weights(w, lengths, predict)
    assert weights.shape == (2, 6)
    assert int(np.argmax(weights[0])) == 3 and weights[0, 3] == pytest.approx(1.0)
    assert np.count_nonzero(weights[0]) == 1
    assert (weights[1, :3] == 0).all()


def test_grouped_occlusion_credits_redundant_events_together() -> None:
    """Two events carry the same signal: alone each looks harmless, removed together they matter."""

    def predict(windows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return windows[:, :, 0].max(axis=1)

    w = np.zeros((1, 5, 1), dtype=np.float32)
    w[0, 1, 0] = w[0, 2, 0] = 1.0
    lengths = np.array([5])
    assert (occlusion_weights(w, lengths, predict) == 0).all()
    groups = np.array([[0, 1, 1, 2, 3]])
    weights = occlusion_weights(w, lengths, predict, groups)
    assert weights[0].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]


def test_sessions_group_same_device_account_events_close_in_time() -> None:
    from pipeline.reasons import session_groups

    t = datetime(2026, 1, 29, 10, 0, tzinfo=timezone.utc)
    events = pl.DataFrame(
        {
            "source": [0, 0, 0, 1, 0, 0, 0],
            "device_id": ["A", "A", "A", "A", "A", "B", "B"],
            "event_time": [t + timedelta(minutes=m) for m in (0, 1, 2, 3, 4, 5, 50)],
        }
    )
    rows = np.array([[-1, 0, 1, 2, 3, 4, 5, 6]])
    # logins 0-2 one session; the transaction alone; login 4 after it starts anew; device B
    # starts another; 45 minutes later is a new session
    assert session_groups(events, rows).tolist() == [[-1, 0, 0, 0, 1, 2, 3, 4]]


def test_session_text_counts_the_other_events() -> None:
    from pipeline.reasons import _session_text

    kinds = ["login_failure", "login_failure", "profile_change", "login_success"]
    assert (
        _session_text([{"kind": k} for k in kinds], "login_success")
        == ", in a session with 2 login failures and a profile change and another login success"
    )
    assert _session_text([{"kind": "login_success"}] * 2, "login_success") == (
        ", in a session with 2 more login successes"
    )
    assert _session_text([], "login_success") == ""


def test_reason_sentences_are_readable() -> None:
    t = datetime(2026, 1, 29, 10, 6, tzinfo=timezone.utc)
    target = {"event_id": "t9", "event_time": t}
    login = {
        "event_id": "l1",
        "event_time": t - timedelta(minutes=4),
        "source": 0,
        "kind": "login_success",
        "country": "RO",
        "new_device": 1.0,
        "new_country": 1.0,
    }
    kind, text = describe_event(login, target, None)
    assert kind == "login_success"
    assert text == "login success from a new device and a new country (RO), 4 minutes before"
    transfer = {
        "event_id": "t9",
        "event_time": t,
        "source": 1,
        "kind": "tx_transfer",
        "channel": "transfer",
        "amount": 1400.0,
        "currency": "EUR",
        "country": "RO",
        "new_merchant": 1.0,
    }
    kind, text = describe_event(transfer, target, 100.0)
    assert kind == "tx_transfer"
    assert text == ("this transfer of 1,400.00 EUR in RO, amount 14× this customer's median, to a new payee")


# ---------------------------------------------------------------- a scripted account takeover


def genuine_customer(landing: Path, day: date) -> str:
    """The busiest customer before ``day`` who never had a fraud label."""
    tx = pl.read_parquet(landing / "transactions" / "**" / "*.parquet", hive_partitioning=False)
    labels = pl.read_parquet(landing / "labels" / "**" / "*.parquet", hive_partitioning=False)
    frauds = tx.join(labels.filter(pl.col("is_fraud") == 1), on="event_id")["customer_id"].unique()
    before = tx.filter(pl.col("event_time").dt.date() < day, ~pl.col("customer_id").is_in(frauds.implode()))
    return str(before.group_by("customer_id").len().sort("len", "customer_id", descending=True)[0, 0])


def append_takeover(landing: Path, day: date, customer: str) -> dict[str, str]:
    """Failed logins, a new-device login from RO, a profile change, then a big transfer to a new payee."""
    tx = pl.read_parquet(landing / "transactions" / "**" / "*.parquet", hive_partitioning=False)
    own = tx.filter(pl.col("customer_id") == customer, pl.col("event_time").dt.date() < day)
    median = float(own["amount"].median())  # type: ignore[arg-type]
    t0 = datetime.combine(day, datetime.min.time(), timezone.utc) + timedelta(hours=23, minutes=30)
    ids = {
        "fail1": "ato-l1",
        "fail2": "ato-l2",
        "login": "ato-l3",
        "profile": "ato-l4",
        "transfer": "ato-t1",
    }
    device, ip = "ATO-DEVICE-1", "185.220.101.7"
    logins = pl.DataFrame(
        {
            "event_id": [ids["fail1"], ids["fail2"], ids["login"], ids["profile"]],
            "customer_id": [customer] * 4,
            "event_time": [
                t0,
                t0 + timedelta(minutes=1),
                t0 + timedelta(minutes=2),
                t0 + timedelta(minutes=4),
            ],
            "event_type": ["login_failure", "login_failure", "login_success", "profile_change"],
            "device_id": [device] * 4,
            "ip_address": [ip] * 4,
            "country": ["RO"] * 4,
            "user_agent": ["Mozilla/5.0 (X11; Linux x86_64)"] * 4,
        }
    )
    transfer = pl.DataFrame(
        {
            "event_id": [ids["transfer"]],
            "customer_id": [customer],
            "event_time": [t0 + timedelta(minutes=6)],
            "amount": [round(max(median, 20.0) * 14, 2)],
            "currency": [own["currency"][0]],
            "merchant_id": ["PAYEE-RO-0001"],
            "merchant_category": ["4829"],
            "channel": ["transfer"],
            "country": ["RO"],
            "card_id": [None],
            "device_id": [device],
            "ip_address": [ip],
        },
        schema=tx.schema,
    )
    logins.write_parquet(landing / "logins" / f"date={day}" / "part-ato.parquet")
    transfer.write_parquet(landing / "transactions" / f"date={day}" / "part-ato.parquet")
    return ids


@pytest.mark.slow
def test_a_scripted_takeover_is_explained_by_its_new_device_login(
    home_copy, small_zone, tmp_path, monkeypatch
) -> None:
    from pipeline import db
    from pipeline.config import Settings
    from pipeline.score import score_day
    from pipeline.validate import validate_day

    landing = tmp_path / "landing"
    shutil.copytree(small_zone, landing)
    use_home(monkeypatch, home_copy, landing)
    customer = genuine_customer(landing, DAY)
    ids = append_takeover(landing, DAY, customer)
    settings = Settings()
    assert validate_day(settings, DAY)["status"] == "ok"
    score_day(settings, DAY)

    engine = db.make_engine(settings.scores_db_url)
    try:
        scores = db.read_scores(engine, DAY, DAY)
    finally:
        engine.dispose()
    row = scores.filter(pl.col("event_id") == ids["transfer"]).row(0, named=True)
    assert row["alert"], f"the takeover transfer ranked {row['risk_rank']} of {scores.height}"
    reasons = json.loads(row["reasons"])
    assert 1 <= len(reasons) <= 3
    assert [r["weight"] for r in reasons] == sorted((r["weight"] for r in reasons), reverse=True)
    top_ids = [r["event_id"] for r in reasons[:2]]
    assert ids["login"] in top_ids, reasons
    login = next(r for r in reasons if r["event_id"] == ids["login"])
    assert login["kind"] == "login_success"
    assert "new device" in login["text"] and "RO" in login["text"] and "minutes before" in login["text"]
    assert login["weight"] > 0
    # the genuine rest of the day keeps its scores: appending a takeover touches one customer only
    others = scores.filter(pl.col("customer_id") != customer, pl.col("alert"))
    assert all(ids["login"] not in r for r in others["reasons"].to_list())
