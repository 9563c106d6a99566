"""A catalogue of bad landing inputs and how validation handles each (CONTRACT.md section 2).

``CATALOGUE`` lists (case, handling, reason code or file-defect message); the README
renders it as a table. Row-level and accepted cases share one landing day, validated
once; each file-defect case gets a landing of its own (they fail before any row check).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from pipeline.config import Settings
from pipeline.errors import FileDefectError
from pipeline.validate import read_quarantine, read_validated, validate_day

DAY = date(2026, 1, 5)
SQL_ID = "x'); DROP TABLE t;--"
LONG_ID = "c" * 10_000


def tx(event_id: str, **values: str) -> dict[str, str]:
    """One good transaction of DAY as strings, with ``values`` overriding columns."""
    row = {
        "event_id": event_id,
        "customer_id": "c1",
        "event_time": "2026-01-05T10:00:00Z",
        "amount": "12.5",
        "currency": "EUR",
        "merchant_id": "m1",
        "merchant_category": "5411",
        "channel": "pos",
        "country": "FR",
    }
    return {**row, **values}


def login(event_id: str, **values: str) -> dict[str, str]:
    row = {
        "event_id": event_id,
        "customer_id": "c1",
        "event_time": "2026-01-05T09:00:00",
        "event_type": "login_success",
    }
    return {**row, **values}


def folder(landing: Path, log: str) -> Path:
    path = landing / log / f"date={DAY.isoformat()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def rows_to(log: str, name: str, rows: list[dict[str, str]]) -> Callable[[Path], None]:
    """A writer of ``rows`` into file ``name`` (CSV or Parquet by suffix) of the log's partition."""

    def write(landing: Path) -> None:
        path = folder(landing, log) / name
        frame = pl.DataFrame(rows)
        frame.write_csv(path) if name.endswith(".csv") else frame.write_parquet(path)

    return write


def bytes_to(log: str, name: str, content: bytes) -> Callable[[Path], None]:
    def write(landing: Path) -> None:
        (folder(landing, log) / name).write_bytes(content)

    return write


def labelled(name: str, tx_id: str, label: dict[str, str]) -> Callable[[Path], None]:
    """A transaction ``tx_id`` plus one label row; each case's label points at its own transaction."""

    def write(landing: Path) -> None:
        rows_to("transactions", f"{name}-tx.csv", [tx(tx_id)])(landing)
        rows_to("labels", f"{name}.csv", [label])(landing)

    return write


def empty_parquet(landing: Path) -> None:
    pl.DataFrame(schema=dict.fromkeys(tx("x"), pl.String)).write_parquet(
        folder(landing, "transactions") / "empty.parquet"
    )


def truncated_parquet(landing: Path) -> None:
    path = folder(landing, "transactions") / "truncated.parquet"
    pl.DataFrame([tx(f"t{i}") for i in range(50)]).write_parquet(path)
    path.write_bytes(path.read_bytes()[:-40])


def symlink_outside(landing: Path) -> None:
    """A well-formed CSV outside the landing folder, linked into the day's partition."""
    outside = landing.parent / "outside.csv"
    outside.write_text(csv_text([tx("outside")], BASE_COLUMNS))
    (folder(landing, "transactions") / "escape.csv").symlink_to(outside)


def csv_text(rows: list[dict[str, str]], columns: list[str]) -> str:
    lines = [",".join(columns)] + [",".join(r[c] for c in columns) for r in rows]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Case:
    """One bad input: how it is written, how it is handled, which ids end up where."""

    name: str
    handling: str  # "quarantined" | "kept" | "day fails"
    reason: str  # the reason code, "-" when kept, or the file-defect message fragment
    log: str
    write: Callable[[Path], None]
    kept: tuple[str, ...] = ()
    quarantined: tuple[str, ...] = ()
    check: Callable[[Settings], None] | None = None


def _times_normalised(settings: Settings) -> None:
    rows = read_validated(settings, "transactions", [DAY]).filter(
        pl.col("event_id").str.starts_with("offset-")
    )
    assert rows.collect()["event_time"].to_list() == [datetime(2026, 1, 5, 8, tzinfo=UTC)] * 2


def _second_file_quarantined(settings: Settings) -> None:
    bad = read_quarantine(settings, "transactions", DAY).filter(pl.col("event_id") == "dup-across")
    assert bad["source_file"].to_list() == ["transactions/date=2026-01-05/dup-across-2.parquet"]


def _stored_verbatim(settings: Settings) -> None:
    ids = read_validated(settings, "transactions", [DAY]).collect()["event_id"].to_list()
    assert SQL_ID in ids and "007" in ids


def _label_value(event_id: str, expected: int) -> Callable[[Settings], None]:
    def check(settings: Settings) -> None:
        labels = read_validated(settings, "labels", [DAY]).filter(pl.col("event_id") == event_id).collect()
        assert labels["is_fraud"].to_list() == [expected]

    return check


T, L, B = "transactions", "logins", "labels"
BASE_COLUMNS = list(tx("x"))

CASES = [
    # ---- accepted as they are
    Case(
        "extra column",
        "kept",
        "-",
        T,
        rows_to(T, "extra.csv", [{**tx("extra-ok"), "loyalty": "gold"}]),
        ("extra-ok",),
    ),
    Case("0-row Parquet file", "kept", "-", T, empty_parquet, ()),
    Case(
        "header-only CSV",
        "kept",
        "-",
        T,
        bytes_to(T, "header.csv", (",".join(BASE_COLUMNS) + "\n").encode()),
        (),
    ),
    Case(
        "UTF-8 CSV with BOM",
        "kept",
        "-",
        T,
        bytes_to(
            T,
            "bom.csv",
            b"\xef\xbb\xbf" + csv_text([tx("bom-ok", merchant_id="caf\u00e9")], BASE_COLUMNS).encode(),
        ),
        ("bom-ok",),
    ),
    Case(
        "shuffled columns",
        "kept",
        "-",
        T,
        bytes_to(T, "shuffled.csv", csv_text([tx("shuffled-ok")], BASE_COLUMNS[::-1]).encode()),
        ("shuffled-ok",),
    ),
    Case(
        "mixed UTC offsets",
        "kept",
        "-",
        T,
        rows_to(
            T,
            "offsets.csv",
            [
                tx("offset-a", event_time="2026-01-05T10:00:00+02:00"),
                tx("offset-b", event_time="2026-01-05T03:00:00-05:00"),
            ],
        ),
        ("offset-a", "offset-b"),
        check=_times_normalised,
    ),
    Case(
        "SQL-injection-looking and numeric-looking ids",
        "kept",
        "-",
        T,
        rows_to(T, "odd-ids.csv", [tx(SQL_ID, merchant_id="1; DELETE FROM x"), tx("007")]),
        (SQL_ID, "007"),
        check=_stored_verbatim,
    ),
    Case(
        "is_fraud written as 1.0",
        "kept",
        "-",
        B,
        labelled("label-float", "label-float-tx", {"event_id": "label-float-tx", "is_fraud": "1.0"}),
        ("label-float-tx",),
        check=_label_value("label-float-tx", 1),
    ),
    # ---- row defects: quarantined with a reason
    Case(
        "non-numeric amount",
        "quarantined",
        "bad_number",
        T,
        rows_to(T, "amount-text.csv", [tx("amt-text", amount="12,50")]),
        quarantined=("amt-text",),
    ),
    Case(
        "negative amount",
        "quarantined",
        "negative_amount",
        T,
        rows_to(T, "amount-neg.csv", [tx("amt-neg", amount="-0.01")]),
        quarantined=("amt-neg",),
    ),
    Case(
        "NaN amount",
        "quarantined",
        "bad_number",
        T,
        rows_to(T, "amount-nan.csv", [tx("amt-nan", amount="NaN")]),
        quarantined=("amt-nan",),
    ),
    Case(
        "1e15 amount",
        "quarantined",
        "amount_out_of_range",
        T,
        rows_to(T, "amount-huge.csv", [tx("amt-huge", amount="1e15")]),
        quarantined=("amt-huge",),
    ),
    Case(
        "unparsable timestamp",
        "quarantined",
        "bad_timestamp",
        T,
        rows_to(T, "ts-bad.csv", [tx("ts-bad", event_time="05/01/2026 10h")]),
        quarantined=("ts-bad",),
    ),
    Case(
        "timestamp of another day",
        "quarantined",
        "out_of_partition",
        T,
        rows_to(T, "ts-day.csv", [tx("ts-day", event_time="2026-01-04T23:59:59Z")]),
        quarantined=("ts-day",),
    ),
    Case(
        "far-future timestamp",
        "quarantined",
        "out_of_partition",
        T,
        rows_to(T, "ts-future.csv", [tx("ts-future", event_time="2999-01-05T10:00:00Z")]),
        quarantined=("ts-future",),
    ),
    Case(
        "offset moving the UTC date out of the partition",
        "quarantined",
        "out_of_partition",
        T,
        rows_to(T, "ts-offset.csv", [tx("ts-offset", event_time="2026-01-05T01:00:00+02:00")]),
        quarantined=("ts-offset",),
    ),
    Case(
        "empty customer_id",
        "quarantined",
        "missing_value",
        T,
        rows_to(T, "no-customer.csv", [tx("no-customer", customer_id="")]),
        quarantined=("no-customer",),
    ),
    Case(
        "duplicate event_id within a file",
        "quarantined",
        "duplicate_event_id",
        T,
        rows_to(T, "dup-file.csv", [tx("dup-file"), tx("dup-file", amount="99")]),
        kept=("dup-file",),
        quarantined=("dup-file",),
    ),
    Case(
        "duplicate event_id across files",
        "quarantined",
        "duplicate_event_id",
        T,
        lambda landing: (
            rows_to(T, "dup-across-1.csv", [tx("dup-across")])(landing),
            rows_to(T, "dup-across-2.parquet", [tx("dup-across")])(landing),
        ),
        kept=("dup-across",),
        quarantined=("dup-across",),
        check=_second_file_quarantined,
    ),
    Case(
        "unknown channel",
        "quarantined",
        "unknown_category",
        T,
        rows_to(T, "channel.csv", [tx("channel-bad", channel="crypto")]),
        quarantined=("channel-bad",),
    ),
    Case(
        "unknown login event_type",
        "quarantined",
        "unknown_category",
        L,
        rows_to(L, "event-type.parquet", [login("login-ok"), login("login-bad", event_type="logout")]),
        kept=("login-ok",),
        quarantined=("login-bad",),
    ),
    Case(
        "bad currency code",
        "quarantined",
        "bad_code",
        T,
        rows_to(T, "currency.csv", [tx("currency-bad", currency="EURO")]),
        quarantined=("currency-bad",),
    ),
    Case(
        "bad country code",
        "quarantined",
        "bad_code",
        T,
        rows_to(T, "country.csv", [tx("country-bad", country="FRA")]),
        quarantined=("country-bad",),
    ),
    Case(
        "10 KB id",
        "quarantined",
        "id_too_long",
        T,
        rows_to(T, "long-id.csv", [tx("long-id", customer_id=LONG_ID)]),
        quarantined=("long-id",),
    ),
    Case(
        "label for an unknown transaction",
        "quarantined",
        "unknown_event_id",
        B,
        rows_to(B, "label-unknown.csv", [{"event_id": "never-seen", "is_fraud": "1"}]),
        quarantined=("never-seen",),
    ),
    Case(
        "is_fraud = 2",
        "quarantined",
        "bad_label",
        B,
        labelled("label-two", "label-two-tx", {"event_id": "label-two-tx", "is_fraud": "2"}),
        quarantined=("label-two-tx",),
    ),
    Case(
        "is_fraud = abc",
        "quarantined",
        "bad_number",
        B,
        labelled("label-abc", "label-abc-tx", {"event_id": "label-abc-tx", "is_fraud": "abc"}),
        quarantined=("label-abc-tx",),
    ),
    Case(
        "label reported on another day",
        "quarantined",
        "out_of_partition",
        B,
        labelled(
            "label-day",
            "label-day-tx",
            {"event_id": "label-day-tx", "is_fraud": "0", "reported_at": "2026-01-06T00:00:00Z"},
        ),
        quarantined=("label-day-tx",),
    ),
    # ---- file defects: the day fails, naming the file
    Case(
        "missing required column",
        "day fails",
        "missing required column(s) amount",
        T,
        rows_to(T, "no-amount.csv", [{k: v for k, v in tx("x").items() if k != "amount"}]),
    ),
    Case("0-byte file", "day fails", "file is empty (0 bytes)", T, bytes_to(T, "zero.csv", b"")),
    Case("truncated Parquet", "day fails", "unreadable Parquet", T, truncated_parquet),
    Case(
        "CSV with ';' delimiter",
        "day fails",
        "the header is not comma-separated",
        T,
        bytes_to(T, "semicolon.csv", csv_text([tx("s")], BASE_COLUMNS).replace(",", ";").encode()),
    ),
    Case(
        "latin-1 CSV",
        "day fails",
        "unreadable CSV",
        T,
        bytes_to(
            T, "latin1.csv", csv_text([tx("l", merchant_id="caf\u00e9")], BASE_COLUMNS).encode("latin-1")
        ),
    ),
    Case(
        "ragged CSV row",
        "day fails",
        "unreadable CSV",
        T,
        bytes_to(T, "ragged.csv", (csv_text([tx("r")], BASE_COLUMNS) + "a,b,c,d,e,f,g,h,i,j,k,l\n").encode()),
    ),
    Case(
        "symlink to a file outside the landing folder",
        "day fails",
        "resolves outside the landing folder",
        T,
        symlink_outside,
    ),
    Case(
        "file that is neither Parquet nor CSV",
        "day fails",
        "unsupported file type .json",
        L,
        bytes_to(L, "events.json", b"[]"),
    ),
]

CATALOGUE: list[tuple[str, str, str]] = [(c.name, c.handling, c.reason) for c in CASES]
ROW_CASES = [c for c in CASES if c.handling != "day fails"]
DEFECT_CASES = [c for c in CASES if c.handling == "day fails"]


@pytest.fixture(scope="module")
def shared_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict]:
    """Every accepted and row-defect case written into one landing day, validated once."""
    root = tmp_path_factory.mktemp("catalogue")
    settings = Settings(home=root / "home", landing=root / "landing")
    for case in ROW_CASES:
        case.write(root / "landing")
    return settings, validate_day(settings, DAY)


def test_catalogue_is_large_and_uses_contract_codes() -> None:
    from features.schemas import REASON_CODES

    assert len(CATALOGUE) >= 24
    assert len({name for name, _, _ in CATALOGUE}) == len(CATALOGUE)
    assert {c.reason for c in ROW_CASES if c.handling == "quarantined"} <= set(REASON_CODES)


def test_shared_day_passes_and_balances(shared_day: tuple[Settings, dict]) -> None:
    _, report = shared_day
    assert report["status"] == "ok"
    for entry in report["logs"].values():
        assert entry["rows_kept"] + entry["rows_quarantined"] == entry["rows_in"]
    expected = sum(len(c.quarantined) for c in ROW_CASES)
    assert sum(e["rows_quarantined"] for e in report["logs"].values()) == expected


@pytest.mark.parametrize("case", ROW_CASES, ids=[c.name for c in ROW_CASES])
def test_row_case(case: Case, shared_day: tuple[Settings, dict]) -> None:
    settings, _ = shared_day
    kept = read_validated(settings, case.log, [DAY]).collect()["event_id"].to_list()
    quarantine = read_quarantine(settings, case.log, DAY)
    for event_id in case.kept:
        assert kept.count(event_id) == 1, f"{event_id} should be kept once"
    for event_id in case.quarantined:
        reasons = quarantine.filter(pl.col("event_id") == event_id)["reason"].to_list()
        assert reasons == [case.reason]
        assert event_id in case.kept or event_id not in kept
    if case.handling == "kept":
        assert quarantine.filter(pl.col("event_id").is_in(list(case.kept))).height == 0
    if case.check:
        case.check(settings)


@pytest.mark.parametrize("case", DEFECT_CASES, ids=[c.name for c in DEFECT_CASES])
def test_file_defect_case(case: Case, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", landing=tmp_path / "landing")
    rows_to(T, "a-good.csv", [tx("good")])(tmp_path / "landing")
    case.write(tmp_path / "landing")

    with pytest.raises(FileDefectError) as raised:
        validate_day(settings, DAY)

    message = str(raised.value)
    assert case.reason in message and "\n" not in message
    assert f"{case.log}/date=2026-01-05/" in message
    assert raised.value.report["status"] == "failed"  # type: ignore[attr-defined]
    assert not (settings.validated_dir / T / "date=2026-01-05").exists()


def test_data_docs_html_sits_next_to_the_json_report(shared_day: tuple[Settings, dict]) -> None:
    from pipeline.validate import data_docs_dir, report_path

    settings, report = shared_day
    index = Path(report["data_docs"])
    assert index == data_docs_dir(settings, DAY) / "index.html" and index.is_file()
    assert data_docs_dir(settings, DAY).parent == report_path(settings, DAY).parent
    pages = " ".join(p.read_text(errors="replace") for p in index.parent.rglob("*.html"))
    for reason in {c.reason for c in ROW_CASES if c.handling == "quarantined"}:
        assert reason in pages, reason


# ---------------------------------------------------------------- docs/failure-modes.md

DOC = Path(__file__).resolve().parents[1] / "docs" / "failure-modes.md"
BEGIN, END = "<!-- generated: bad inputs -->", "<!-- end generated -->"
CRASH_BEGIN = "<!-- generated: crash points -->"

# How each crash point is handled and what tests/test_kill.py asserts after the kill and the re-run.
CRASH_HANDLING: dict[str, tuple[str, str]] = {
    "validate.staged": (
        "staging folders dropped on the next run",
        "previous day byte-identical and still validated",
    ),
    "validate.swapping": (
        "journal written: the next run rolls the commit forward",
        "day hidden from readers until then; re-run equals an uninterrupted run",
    ),
    "validate.before_report": (
        "journal written: the next run rolls the commit forward",
        "day hidden from readers until then; re-run equals an uninterrupted run",
    ),
    "validate.publishing": (
        "the shared report is written last: without it readers on the URL skip the day",
        "day absent from the shared copy until the re-run publishes it again, same files",
    ),
    "score.deleted": ("DB transaction never committed: rolled back", "old rows intact, scored_at included"),
    "score.inserted": ("DB transaction never committed: rolled back", "old rows intact, scored_at included"),
    "score.labels": (
        "day's scores committed whole; labels merged by the re-run",
        "scores whole, same values",
    ),
    "train.logged": ("run left unregistered; champion untouched", "no new version, champion unchanged"),
    "train.registered": ("version registered, alias not moved; gate reruns", "champion unchanged"),
}


def measured_rows(case: Case, settings: Settings) -> tuple[int, int, int]:
    """(rows the case landed, rows of it found kept, rows of it found quarantined) in the output."""
    ids = set(case.kept) | set(case.quarantined)
    kept = (
        read_validated(settings, case.log, [DAY]).collect().filter(pl.col("event_id").is_in(list(ids))).height
    )
    quarantined = read_quarantine(settings, case.log, DAY).filter(pl.col("event_id").is_in(list(ids))).height
    return len(case.kept) + len(case.quarantined), kept, quarantined


def failure_modes_tables(settings: Settings) -> tuple[str, str]:
    """The two generated tables of docs/failure-modes.md, measured on the shared catalogue day."""
    lines = [
        "| # | case | log | handling | reason code / error | rows in | kept | quarantined | lost | test |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lost_total = 0
    for number, case in enumerate(CASES, 1):
        if case.handling == "day fails":
            counts = "— | 0 | 0 | 0: nothing written, earlier output kept"
            test = "test_file_defect_case"
        else:
            n_in, kept, quarantined = measured_rows(case, settings)
            counts = f"{n_in} | {kept} | {quarantined} | {n_in - kept - quarantined}"
            lost_total += n_in - kept - quarantined
            test = "test_row_case"
        reason = f"`{case.reason}`" if case.reason != "-" else "—"
        lines.append(
            f"| {number} | {case.name} | {case.log} | {case.handling} | {reason} | {counts} | `{test}` |"
        )
    bad_inputs = "\n".join(lines) + (
        f"\n\n{len(CASES)} cases tried ({len(ROW_CASES)} row-level, {len(DEFECT_CASES)} file defects);"
        f" rows lost: {lost_total}.\n"
    )
    from pipeline.faults import CHECKPOINTS

    crash = [
        "| crash point (`FRAUDSEQ_TEST_KILL_AT`) | where | handling | after kill + re-run | rows lost | duplicates |",
        "|---|---|---|---|---|---|",
    ]
    for name, where in CHECKPOINTS.items():
        handling, outcome = CRASH_HANDLING[name]
        crash.append(f"| `{name}` | {where} | {handling} | {outcome} | 0 | 0 |")
    return bad_inputs, "\n".join(crash) + "\n"


def test_failure_modes_doc_matches_the_catalogue(shared_day: tuple[Settings, dict]) -> None:
    """docs/failure-modes.md and the README hold the measured tables; WRITE_DOCS=1 regenerates them."""
    import os

    settings, _ = shared_day
    bad_inputs, crash = failure_modes_tables(settings)
    assert bad_inputs.rstrip().endswith("rows lost: 0."), bad_inputs
    for doc in (DOC, DOC.parents[1] / "README.md"):  # the README carries the same section
        text = doc.read_text()
        head, rest = text.split(BEGIN)
        _, tail = rest.split(END, 1)
        middle, crash_rest = tail.split(CRASH_BEGIN)
        _, crash_tail = crash_rest.split(END, 1)
        wanted = f"{head}{BEGIN}\n{bad_inputs}{END}{middle}{CRASH_BEGIN}\n{crash}{END}{crash_tail}"
        if os.environ.get("WRITE_DOCS") == "1":
            doc.write_text(wanted)
        assert text == wanted, f"{doc.name} is stale: rerun this test with WRITE_DOCS=1"
    assert set(CRASH_HANDLING) == set(__import__("pipeline.faults").faults.CHECKPOINTS)
