"""The validation stage end to end on tiny hand-written landing days (CONTRACT.md section 2)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from features.landing import parse_timestamps, validated_schema
from pipeline.config import Settings
from pipeline.errors import FileDefectError
from pipeline.validate import (
    read_quarantine,
    read_validated,
    recover_leftovers,
    report_path,
    swap_in,
    validate_day,
    validated_days,
)

DAY = date(2026, 1, 5)


def tx(event_id: str, day: date = DAY, **values: str) -> dict[str, str]:
    """One good transaction row as strings, with ``values`` overriding columns."""
    row = {
        "event_id": event_id,
        "customer_id": "c1",
        "event_time": f"{day.isoformat()}T10:00:00Z",
        "amount": "12.5",
        "currency": "EUR",
        "merchant_id": "m1",
        "merchant_category": "5411",
        "channel": "pos",
        "country": "FR",
    }
    return {**row, **values}


def login(event_id: str, day: date = DAY, **values: str) -> dict[str, str]:
    """One good login row as strings."""
    row = {
        "event_id": event_id,
        "customer_id": "c1",
        "event_time": f"{day.isoformat()}T09:00:00",
        "event_type": "login_success",
    }
    return {**row, **values}


def write(landing: Path, log: str, name: str, rows: list[dict[str, str]], day: date = DAY) -> Path:
    """Write rows as CSV or Parquet (by ``name``'s suffix) into the log's partition."""
    folder = landing / log / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(rows)
    path = folder / name
    frame.write_csv(path) if name.endswith(".csv") else frame.write_parquet(path)
    return path


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", landing=tmp_path / "landing")


@pytest.fixture()
def landing(settings: Settings) -> Path:
    """A day with a clean and a bad transaction, two logins and two labels."""
    root = settings.landing_dir()
    write(root, "transactions", "part-000.csv", [tx("t1"), tx("t2", amount="-1"), tx("t3", card_id="k1")])
    write(root, "logins", "part-000.parquet", [login("l1"), login("l2", event_type="logout")])
    write(
        root,
        "labels",
        "part-000.csv",
        [{"event_id": "t1", "is_fraud": "1"}, {"event_id": "nope", "is_fraud": "0"}],
    )
    return root


def test_happy_path_report_counts_and_format(settings: Settings, landing: Path) -> None:
    report = validate_day(settings, DAY)

    assert set(report) >= {"date", "status", "logs", "error"}
    assert (report["date"], report["status"], report["error"]) == ("2026-01-05", "ok", None)
    assert report["logs"]["transactions"] == {
        "rows_in": 3,
        "rows_kept": 2,
        "rows_quarantined": 1,
        "reasons": {"negative_amount": 1},
    }
    assert report["logs"]["logins"]["reasons"] == {"unknown_category": 1}
    assert report["logs"]["labels"]["reasons"] == {"unknown_event_id": 1}
    for entry in report["logs"].values():
        assert entry["rows_kept"] + entry["rows_quarantined"] == entry["rows_in"]
    assert json.loads(report_path(settings, DAY).read_text()) == report
    assert Path(report["data_docs"]).is_file()
    assert "negative_amount" in Path(report["data_docs"]).read_text() or any(
        "negative_amount" in p.read_text() for p in Path(report["data_docs"]).parent.rglob("*.html")
    )


def test_validated_types_and_quarantine_provenance(settings: Settings, landing: Path) -> None:
    validate_day(settings, DAY)

    for log in ("transactions", "logins", "labels"):
        frame = read_validated(settings, log, [DAY]).collect()
        assert frame.schema == validated_schema(log)
    transactions = read_validated(settings, "transactions", [DAY]).collect()
    assert transactions["event_id"].to_list() == ["t1", "t3"]
    assert transactions["card_id"].to_list() == [None, "k1"]
    assert transactions["event_time"][0] == datetime(2026, 1, 5, 10, tzinfo=UTC)
    labels = read_validated(settings, "labels", [DAY]).collect()
    assert labels.row(0) == ("t1", 1, datetime(2026, 1, 5, tzinfo=UTC))

    bad = read_quarantine(settings, "transactions", DAY)
    assert bad.select("event_id", "amount", "reason", "source_file", "source_row").row(0) == (
        "t2",
        "-1",
        "negative_amount",
        "transactions/date=2026-01-05/part-000.csv",
        1,
    )


def test_rerun_is_idempotent_and_leaves_no_temp_dirs(settings: Settings, landing: Path) -> None:
    first = validate_day(settings, DAY)
    rows = read_validated(settings, "transactions", [DAY]).collect()
    second = validate_day(settings, DAY)

    assert first["logs"] == second["logs"]
    assert read_validated(settings, "transactions", [DAY]).collect().equals(rows)
    hidden = [p for p in settings.home_dir.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]
    assert hidden == []


def test_file_defect_fails_day_and_keeps_earlier_output(settings: Settings, landing: Path) -> None:
    validate_day(settings, DAY)
    before = read_validated(settings, "transactions", [DAY]).collect()
    write(landing, "transactions", "part-001.csv", [tx("t9")])
    (landing / "logins" / "date=2026-01-05" / "part-001.parquet").write_bytes(b"")

    with pytest.raises(FileDefectError) as raised:
        validate_day(settings, DAY)

    message = str(raised.value)
    assert "part-001.parquet" in message and "0 bytes" in message and "\n" not in message
    report = json.loads(report_path(settings, DAY).read_text())
    assert report["status"] == "failed" and report["error"] == message
    assert raised.value.report == report  # type: ignore[attr-defined]
    validated = settings.validated_dir / "transactions" / "date=2026-01-05" / "part-0.parquet"
    assert pl.read_parquet(validated).select(before.columns).equals(before)  # the earlier output, whole
    assert validated_days(settings) == []
    assert read_validated(settings, "transactions", [DAY]).collect().height == 0


def test_absent_partitions_mean_zero_rows(settings: Settings) -> None:
    root = settings.landing_dir()
    write(root, "transactions", "part-000.csv", [tx("t1")])

    report = validate_day(settings, DAY)

    assert report["status"] == "ok"
    assert report["logs"]["logins"]["rows_in"] == 0 and report["logs"]["labels"]["rows_in"] == 0
    assert len(report["warnings"]) == 1 and "logins" in report["warnings"][0]
    assert read_validated(settings, "logins", [DAY]).collect().schema == validated_schema("logins")


def test_labels_match_transactions_of_earlier_days(settings: Settings) -> None:
    root = settings.landing_dir()
    day2 = date(2026, 1, 6)
    write(root, "transactions", "a.csv", [tx("old")])
    write(root, "transactions", "a.csv", [tx("new", day=day2)], day=day2)
    labels = [{"event_id": "old", "is_fraud": "1", "reported_at": "2026-01-06T08:00:00+01:00"}]
    labels += [{"event_id": "later", "is_fraud": "0", "reported_at": ""}]
    write(root, "labels", "a.csv", labels, day=day2)

    validate_day(settings, DAY)
    report = validate_day(settings, day2)

    assert report["logs"]["labels"]["rows_kept"] == 1
    assert report["logs"]["labels"]["reasons"] == {"unknown_event_id": 1}
    assert validated_days(settings) == [DAY, day2]
    both = read_validated(settings, "transactions", [DAY, day2, date(2026, 1, 7)]).collect()
    assert both["event_id"].to_list() == ["old", "new"]
    kept = read_validated(settings, "labels", [day2]).collect()
    assert kept["reported_at"].to_list() == [datetime(2026, 1, 6, 7, tzinfo=UTC)]


def test_read_validated_without_days_is_empty_with_schema(settings: Settings) -> None:
    frame = read_validated(settings, "labels", [DAY]).collect()
    assert frame.height == 0 and frame.schema == validated_schema("labels")


def test_parse_timestamps_normalises_iso_variants_to_utc() -> None:
    values = pl.Series(
        [
            "2026-01-05T10:00:00+02:00",
            "2026-01-05 08:00",
            "2026-01-05T03:30:00-0430",
            "2026-01-05",
            "05/01/2026",
            None,
        ]
    )
    parsed = parse_timestamps(values).to_list()
    eight = datetime(2026, 1, 5, 8, tzinfo=UTC)
    assert parsed == [eight, eight, eight, datetime(2026, 1, 5, tzinfo=UTC), None, None]


def test_recover_leftovers_restores_old_copy_and_drops_staging(tmp_path: Path) -> None:
    final = tmp_path / "date=2026-01-05"
    old = tmp_path / ".date=2026-01-05.old-ab12"
    staged = tmp_path / ".date=2026-01-05.tmp-cd34"
    old.mkdir()
    (old / "part-0.parquet").write_text("old")
    staged.mkdir()

    recover_leftovers(final)

    assert (final / "part-0.parquet").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["date=2026-01-05"]


def test_swap_in_replaces_a_whole_folder(tmp_path: Path) -> None:
    final, staged = tmp_path / "date=D", tmp_path / ".date=D.tmp-1"
    final.mkdir()
    (final / "stale.parquet").write_text("old")
    staged.mkdir()
    (staged / "part-0.parquet").write_text("new")

    swap_in(staged, final)

    assert [p.name for p in final.iterdir()] == ["part-0.parquet"]
    assert not staged.exists()


def test_leftovers_of_a_killed_run_are_cleaned(settings: Settings, landing: Path) -> None:
    validated = settings.validated_dir / "transactions"
    (validated / ".date=2026-01-05.tmp-0a1b").mkdir(parents=True)
    reports = settings.reports_dir / "validation"
    reports.mkdir(parents=True)
    (reports / ".date=2026-01-05.json.tmp-2c3d").write_text("{")

    validate_day(settings, DAY)

    assert [p.name for p in validated.iterdir()] == ["date=2026-01-05"]
    assert sorted(p.name for p in reports.iterdir()) == ["date=2026-01-05", "date=2026-01-05.json"]


def test_label_outcome_does_not_depend_on_validation_order(tmp_path: Path) -> None:
    """A range validated in parallel may reach day 2 before day 1: labels must come out the same."""
    landing = tmp_path / "landing"
    day2 = date(2026, 1, 6)
    write(landing, "transactions", "a.csv", [tx("old"), tx("bad-amount", amount="-5")])
    write(landing, "transactions", "a.csv", [tx("new", day=day2)], day=day2)
    labels = [{"event_id": e, "is_fraud": "1"} for e in ("old", "bad-amount", "new", "never")]
    write(landing, "labels", "a.csv", labels, day=day2)
    in_order = Settings(home=tmp_path / "a", landing=landing)
    out_of_order = Settings(home=tmp_path / "b", landing=landing)

    validate_day(in_order, DAY)
    validate_day(in_order, day2)
    validate_day(out_of_order, day2)
    validate_day(out_of_order, DAY)

    for log in ("labels",):
        a = read_validated(in_order, log, [day2]).collect()
        b = read_validated(out_of_order, log, [day2]).collect()
        assert a.equals(b)
        assert sorted(a["event_id"].to_list()) == ["bad-amount", "new", "old"]  # a quarantined tx was landed
        assert read_quarantine(in_order, log, day2)["event_id"].to_list() == ["never"]
        assert read_quarantine(out_of_order, log, day2)["reason"].to_list() == ["unknown_event_id"]
