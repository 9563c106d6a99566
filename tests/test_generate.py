"""The synthetic landing zone: contract conformance, determinism, late labels, and honesty.

Honesty means fraud hides in the order of events: no single raw column separates it,
while a few sequence facts (a fresh device, a risky account event just before, new
merchants in a burst, an online payment with no login) do.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from features.schemas import CHANNELS, LABELS, LOGIN_EVENT_TYPES, LOGINS, TRANSACTIONS
from pipeline.errors import UsageError
from pipeline.generate import FRAUD_SCENARIOS, GENUINE_SCENARIOS, generate_frames, generate_landing

START = date(2026, 1, 5)


@pytest.fixture(scope="module")
def zone(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("landing")
    return generate_landing(out, customers=150, days=10, start=START, seed=3)


@pytest.fixture(scope="module")
def big() -> dict[str, pl.DataFrame]:
    """About 2000 customers over 28 days, in memory (the files are tested on the small zone)."""
    return generate_frames(2000, 28, START, seed=0)


def read_log(folder: Path, suffix: str = "parquet") -> pl.DataFrame:
    """Every partition file of one log, with the partition's date as ``partition``."""
    frames = []
    for path in sorted(folder.glob(f"date=*/part-000.{suffix}")):
        df = pl.read_parquet(path) if suffix == "parquet" else pl.read_csv(path, infer_schema=False)
        frames.append(df.with_columns(partition=pl.lit(date.fromisoformat(path.parent.name[5:]))))
    return pl.concat(frames)


# ---------------------------------------------------------------- contract


def test_every_day_has_a_partition_for_every_log(zone) -> None:
    days = {f"date={(START + timedelta(days=d)).isoformat()}" for d in range(10)}
    for log in ("transactions", "logins", "labels"):
        assert {p.name for p in (zone.out / log).iterdir()} == days
        assert all((zone.out / log / d / "part-000.parquet").is_file() for d in days)


def test_columns_and_types_follow_the_contract(zone) -> None:
    for log, schema in (("transactions", TRANSACTIONS), ("logins", LOGINS), ("labels", LABELS)):
        df = read_log(zone.out / log).drop("partition")
        assert tuple(df.columns) == schema.columns
        for col in schema.id_columns:
            assert df.schema[col] == pl.String, (log, col)
        if schema.time_column:
            assert df.schema[schema.time_column] == pl.Datetime("us", "UTC")
        assert df.select(pl.col(schema.required).null_count()).sum_horizontal().item() == 0


def test_values_are_in_their_vocabularies(zone) -> None:
    tx = read_log(zone.out / "transactions")
    logins = read_log(zone.out / "logins")
    assert set(tx["channel"]) <= set(CHANNELS) and set(tx["channel"]) == set(CHANNELS)
    assert set(logins["event_type"]) == set(LOGIN_EVENT_TYPES)
    assert tx["amount"].min() >= 0
    assert (tx["currency"].str.len_chars() == 3).all() and (tx["country"].str.len_chars() == 2).all()
    assert tx["customer_id"].str.contains(r"^C\d{6}$").all()
    online = tx.filter(pl.col("channel").is_in(["ecom", "transfer"]))
    assert online["device_id"].null_count() == 0 and online["ip_address"].null_count() == 0
    assert tx.filter(pl.col("channel") != "transfer")["card_id"].null_count() == 0
    assert (
        tx.filter(pl.col("channel").is_in(["pos", "atm"]))["device_id"].null_count()
        == tx.filter(pl.col("channel").is_in(["pos", "atm"])).height
    )
    assert logins["ip_address"].drop_nulls().str.contains(r"^\d{1,3}(\.\d{1,3}){3}$").all()


def test_events_sit_in_their_partition_and_ids_are_unique(zone) -> None:
    for log in ("transactions", "logins"):
        df = read_log(zone.out / log)
        assert (df["event_time"].dt.date() == df["partition"]).all()
        assert df["event_id"].n_unique() == df.height
    tx, logins = read_log(zone.out / "transactions"), read_log(zone.out / "logins")
    assert not set(tx["event_id"]) & set(logins["event_id"])
    assert tx.height == zone.n_transactions and logins.height == zone.n_logins


def test_labels_reference_transactions_and_sit_in_their_reported_day(zone) -> None:
    labels = read_log(zone.out / "labels")
    tx = read_log(zone.out / "transactions")
    assert set(labels["event_id"]) <= set(tx["event_id"])
    assert (labels["reported_at"].dt.date() == labels["partition"]).all()
    assert set(labels["is_fraud"]) == {0, 1}
    assert labels.height == zone.n_labels


def test_truth_lies_outside_the_logs_and_covers_every_transaction(zone) -> None:
    assert zone.truth_path.parent.name == "_truth"
    truth = pl.read_parquet(zone.truth_path)
    tx = read_log(zone.out / "transactions")
    assert truth["event_id"].sort().equals(tx["event_id"].sort())
    assert set(truth["scenario"]) <= set(GENUINE_SCENARIOS + FRAUD_SCENARIOS)
    assert truth["is_fraud"].sum() == zone.n_frauds > 0
    assert (truth.filter(pl.col("is_fraud") == 1)["scenario"].is_in(FRAUD_SCENARIOS)).all()


def test_csv_zone_holds_the_same_rows(zone, tmp_path: Path) -> None:
    summary = generate_landing(tmp_path, customers=150, days=10, start=START, seed=3, file_format="csv")
    as_csv = read_log(tmp_path / "transactions", "csv")
    as_parquet = read_log(zone.out / "transactions")
    assert summary.n_transactions == zone.n_transactions
    assert as_csv["event_id"].equals(as_parquet["event_id"])
    assert as_csv["merchant_id"].equals(as_parquet["merchant_id"])
    parsed = as_csv["event_time"].str.to_datetime(time_zone="UTC", time_unit="us")
    assert parsed.equals(as_parquet["event_time"], check_names=False)
    assert not list(tmp_path.glob("*/date=*/*.parquet"))


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        generate_landing(tmp_path, customers=0, days=3, start=START)
    with pytest.raises(UsageError):
        generate_landing(tmp_path, customers=5, days=3, start=START, file_format="json")


def test_chunked_zone_has_unique_ids_and_one_truth_file(tmp_path: Path) -> None:
    from pipeline.validate import validate_day

    summary = generate_landing(
        tmp_path / "landing", customers=130, days=4, start=START, seed=2, chunk_customers=50
    )
    day = tmp_path / "landing" / "transactions" / f"date={START.isoformat()}"
    assert sorted(p.name for p in day.iterdir()) == [
        "part-000.parquet",
        "part-001.parquet",
        "part-002.parquet",
    ]
    tx = pl.read_parquet(tmp_path / "landing" / "transactions" / "*" / "*.parquet")
    logins = pl.read_parquet(tmp_path / "landing" / "logins" / "*" / "*.parquet")
    truth = pl.read_parquet(summary.truth_path)
    assert tx.height == summary.n_transactions == truth.height
    assert logins.height == summary.n_logins
    assert tx["event_id"].n_unique() == tx.height and logins["event_id"].n_unique() == logins.height
    assert tx["customer_id"].n_unique() <= 130 and tx["customer_id"].str.slice(1, 3).n_unique() == 3
    assert set(truth["event_id"]) == set(tx["event_id"]) and truth["is_fraud"].sum() == summary.n_frauds
    assert not list((tmp_path / "landing" / "_truth").glob(".*"))  # the chunks' parts are gone
    report = validate_day(settings_in(tmp_path), START)  # every part of a day is read and kept
    assert report["logs"]["transactions"]["rows_quarantined"] == 0
    assert (
        report["logs"]["transactions"]["rows_in"] == tx.filter(pl.col("event_time").dt.date() == START).height
    )


def settings_in(tmp_path: Path):  # noqa: ANN201
    from pipeline.config import Settings

    return Settings(home=tmp_path / "home", landing=tmp_path / "landing")


def test_chunk_sizes_split_customers_and_reject_nonsense() -> None:
    from pipeline.generate import chunk_sizes

    assert chunk_sizes(130, 50) == [50, 50, 30]
    assert chunk_sizes(130, None) == [130] == chunk_sizes(130, 500)
    with pytest.raises(UsageError):
        chunk_sizes(130, 0)
    with pytest.raises(UsageError):
        chunk_sizes(10**6, 10)


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_the_same_frames_and_another_seed_does_not() -> None:
    a, b = generate_frames(80, 5, START, seed=7), generate_frames(80, 5, START, seed=7)
    for name in a:
        assert a[name].equals(b[name]), name
    assert not a["transactions"].equals(generate_frames(80, 5, START, seed=8)["transactions"])


def test_same_seed_writes_identical_files(tmp_path: Path) -> None:
    for run in ("a", "b"):
        generate_landing(tmp_path / run, customers=40, days=3, start=START, seed=1)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.parquet"))
    assert len(files) == 3 * 3 + 1
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


# ---------------------------------------------------------------- behaviour


def test_fraud_rate_and_spread(big) -> None:
    truth = big["truth"]
    assert 0.005 <= truth["is_fraud"].mean() <= 0.015
    per_day = truth.group_by(pl.col("event_time").dt.date()).agg(pl.col("is_fraud").sum())
    assert per_day.height == 28 and per_day["is_fraud"].min() > 0
    assert set(truth["scenario"]) == set(GENUINE_SCENARIOS + FRAUD_SCENARIOS)
    per_customer_day = (big["transactions"].height + big["logins"].height) / (2000 * 28)
    assert 1 <= per_customer_day <= 4


def test_labels_arrive_late_and_only_when_known(big) -> None:
    truth = big["truth"]
    fraud = truth.filter(pl.col("is_fraud") == 1)
    assert fraud["label_reported_at"].null_count() == 0
    delay = (fraud["label_reported_at"] - fraud["event_time"]).dt.total_hours() / 24
    assert delay.min() >= 1 and delay.max() <= 21
    last_day = START + timedelta(days=27)
    unknown = fraud.filter(~pl.col("label_written"))
    assert unknown.height > 0 and (unknown["label_reported_at"].dt.date() > last_day).all()
    labels = big["labels"]
    assert labels["reported_at"].dt.date().max() <= last_day
    assert labels.height == truth["label_written"].sum()
    assert 0 < (labels["is_fraud"] == 0).sum() < (labels["is_fraud"] == 1).sum()


def test_online_payments_usually_follow_a_login_on_the_same_device(big) -> None:
    tx = big["transactions"].join(big["truth"].select("event_id", "scenario"), on="event_id")
    online = tx.filter(
        pl.col("channel").is_in(["ecom", "transfer"]) & (pl.col("scenario") == "genuine")
    ).sort("event_time")
    last_login = (
        big["logins"]
        .filter(pl.col("event_type") == "login_success")
        .select("customer_id", "device_id", pl.col("event_time"), login_time=pl.col("event_time"))
        .sort("event_time")
    )
    joined = online.join_asof(
        last_login, on="event_time", by=["customer_id", "device_id"], check_sortedness=False
    )
    recent = (joined["event_time"] - joined["login_time"]).dt.total_minutes() <= 15
    assert 0.75 <= recent.mean() <= 0.95


def _split(big) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Transactions with outcome, split by day: encodings fit on the first half, AUC on the second."""
    tx = big["transactions"].join(big["truth"].select("event_id", "is_fraud", "scenario"), on="event_id")
    half = START + timedelta(days=14)
    return tx.filter(pl.col("event_time").dt.date() < half), tx.filter(pl.col("event_time").dt.date() >= half)


def test_no_raw_column_separates_fraud(big) -> None:
    fit, test = _split(big)
    edges = np.quantile(fit["amount"].to_numpy(), np.linspace(0.05, 0.95, 19))
    derived = [
        pl.col("amount")
        .map_batches(lambda a: pl.Series(np.searchsorted(edges, a.to_numpy())))
        .alias("amount_bin"),
        pl.col("event_time").dt.hour().alias("hour"),
        pl.col("event_time").dt.weekday().alias("weekday"),
        *(pl.col(c).is_not_null().alias(f"has_{c}") for c in ("card_id", "device_id", "ip_address")),
    ]
    fit, test = fit.with_columns(derived), test.with_columns(derived)
    prior = fit["is_fraud"].mean()
    y = test["is_fraud"].to_numpy()
    columns = [
        "amount_bin",
        "channel",
        "merchant_category",
        "country",
        "currency",
        "hour",
        "weekday",
        "has_card_id",
        "has_device_id",
        "has_ip_address",
        "merchant_id",
    ]
    aucs = {}
    for col in columns:
        rates = fit.group_by(col).agg(rate=(pl.col("is_fraud").sum() + 10 * prior) / (pl.len() + 10))
        score = test.join(rates, on=col, how="left", maintain_order="left")["rate"].fill_null(prior)
        aucs[col] = roc_auc_score(y, score.to_numpy())
    raw = roc_auc_score(y, test["amount"].to_numpy())
    aucs["amount"] = max(raw, 1 - raw)
    assert max(aucs.values()) <= 0.65, aucs


def test_the_order_of_events_reveals_fraud(big) -> None:
    _, test = _split(big)
    logins = big["logins"].sort("event_time")

    def last(kinds: list[str], name: str) -> pl.DataFrame:
        ev = logins.filter(pl.col("event_type").is_in(kinds))
        return ev.select("customer_id", "event_time", pl.col("event_time").alias(name))

    first_seen = (
        pl.concat(
            [
                big["transactions"].select("customer_id", "device_id", "event_time"),
                logins.select("customer_id", "device_id", "event_time"),
            ]
        )
        .group_by("customer_id", "device_id")
        .agg(first_seen=pl.col("event_time").min())
    )
    tx = (
        big["transactions"]
        .sort("event_time")
        .join_asof(
            last(["login_failure", "password_reset", "mfa_change", "profile_change"], "risky"),
            on="event_time",
            by="customer_id",
            check_sortedness=False,
        )
        .join_asof(
            last(["login_success"], "login"), on="event_time", by="customer_id", check_sortedness=False
        )
        .join(first_seen, on=["customer_id", "device_id"], how="left")
        .with_columns(
            new_merchant=(
                pl.col("event_time") == pl.col("event_time").min().over("customer_id", "merchant_id")
            )
        )
        .with_columns(
            fresh_device=(pl.col("first_seen") >= pl.col("event_time") - pl.duration(hours=2)).fill_null(
                False
            ),
            risky=(pl.col("risky") >= pl.col("event_time") - pl.duration(hours=2)).fill_null(False),
            no_login=(pl.col("channel") == "ecom")
            & ~(pl.col("login") >= pl.col("event_time") - pl.duration(minutes=30)).fill_null(False),
            burst=pl.col("new_merchant")
            .cast(pl.Int32)
            .rolling_sum_by("event_time", window_size="3h")
            .over("customer_id")
            >= 2,
        )
    )
    tx = tx.join(test.select("event_id", "is_fraud"), on="event_id")
    facts = ["fresh_device", "risky", "new_merchant", "no_login", "burst"]
    score = tx.select(pl.sum_horizontal([pl.col(c).cast(pl.Int32) for c in facts])).to_series()
    assert roc_auc_score(tx["is_fraud"].to_numpy(), score.to_numpy()) >= 0.85
