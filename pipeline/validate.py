"""Validation stage: one landing day in, validated + quarantined partitions and a report out.

CONTRACT.md section 2. A file that cannot be trusted fails the whole day and
leaves earlier output as it was; a bad value quarantines its row with the first
failing reason code in ``features.schemas.REASON_CODES`` order (that order *is*
the documented priority). Great Expectations runs the row checks on a small
pandas frame of parsed helper columns built with Polars; its results also
render the day's Data Docs next to the JSON report.

With ``FRAUDSEQ_SHARED_URL`` set, a committed day is also published there (its validated
partitions, then its report), and downstream stages read validated days from there, so a
worker on another machine needs nothing under its own FRAUDSEQ_HOME.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.hashing import HASH_COLUMN, row_group_size, with_customer_hash
from features.landing import (
    REASON,
    SOURCE_FILE,
    SOURCE_ROW,
    LandingFileError,
    blank_required,
    days_from,
    is_blank,
    longest_id,
    normalise,
    parsed_values,
    partition_dir,
    partition_files,
    quarantine_schema,
    read_landing_file,
    read_partition,
    validated_schema,
    with_optional_columns,
)
from features.schemas import CHANNELS, LOGIN_EVENT_TYPES, LOGS, MAX_AMOUNT, MAX_ID_LEN, REASON_CODES, SCHEMAS
from pipeline import shared
from pipeline.config import Settings
from pipeline.errors import FileDefectError, MissingInputError
from pipeline.faults import checkpoint

PART_FILE = "part-0.parquet"
HASHED_LOGS = ("transactions", "logins")  # stored with the customer hash, sorted by it (features.hashing)
# COMPLETE is the only format that lists failing row indexes; the failing values themselves are
# left out, since copying and serialising a million of them costs more than the checks.
RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
}
LOGS_THAT_SHOULD_EXIST = ("transactions", "logins")


# ---------------------------------------------------------------- row checks


@dataclass(frozen=True)
class RowCheck:
    """One Great Expectations expectation on a helper column, and the reason code it quarantines with."""

    reason: str
    column: str
    rule: str  # not_null | between | in_set | match_regex
    args: dict[str, Any] = field(default_factory=dict)


_MISSING = RowCheck("missing_value", "blank_required_values", "between", {"max_value": 0})
_TIMESTAMP = RowCheck("bad_timestamp", "event_time", "not_null")
_PARTITION = RowCheck("out_of_partition", "days_from_partition", "between", {"min_value": 0, "max_value": 0})
_ID_LENGTH = RowCheck("id_too_long", "longest_id_length", "between", {"max_value": MAX_ID_LEN})
_DUPLICATE = RowCheck("duplicate_event_id", "first_occurrence", "in_set", {"value_set": [True]})

CHECKS: dict[str, tuple[RowCheck, ...]] = {
    "transactions": (
        _MISSING,
        RowCheck("bad_number", "amount", "not_null"),
        _TIMESTAMP,
        _PARTITION,
        RowCheck("negative_amount", "amount", "between", {"min_value": 0}),
        RowCheck("amount_out_of_range", "amount", "between", {"max_value": MAX_AMOUNT}),
        RowCheck("unknown_category", "channel", "in_set", {"value_set": list(CHANNELS)}),
        RowCheck("bad_code", "currency", "match_regex", {"regex": r"^[A-Z]{3}$"}),
        RowCheck("bad_code", "country", "match_regex", {"regex": r"^[A-Z]{2}$"}),
        _ID_LENGTH,
        _DUPLICATE,
    ),
    "logins": (
        _MISSING,
        _TIMESTAMP,
        _PARTITION,
        RowCheck("unknown_category", "event_type", "in_set", {"value_set": list(LOGIN_EVENT_TYPES)}),
        RowCheck("bad_code", "country", "match_regex", {"regex": r"^[A-Z]{2}$"}),
        _ID_LENGTH,
        _DUPLICATE,
    ),
    "labels": (
        _MISSING,
        RowCheck("bad_number", "is_fraud", "not_null"),
        RowCheck("bad_timestamp", "reported_at", "not_null"),
        _PARTITION,
        _ID_LENGTH,
        _DUPLICATE,
        RowCheck("bad_label", "is_fraud", "in_set", {"value_set": [0, 1]}),
        RowCheck("unknown_event_id", "transaction_known", "in_set", {"value_set": [True]}),
    ),
}


def _blank_to_null(column: str) -> pl.Expr:
    """Null for a blank value (missing_value reports it); categorical, since pandas hashes those fast."""
    return pl.when(is_blank(column)).then(None).otherwise(pl.col(column)).cast(pl.Categorical).alias(column)


_CHECKED_STRINGS = {"transactions": ("channel", "currency", "country"), "logins": ("event_type", "country")}


def helper_columns(
    raw: pl.DataFrame, parsed: pl.DataFrame, log: str, day: date, known_ids: pl.Series | None = None
) -> pl.DataFrame:
    """The columns the row checks of ``log`` look at, one row per landing row.

    ``parsed`` holds the typed values (``features.landing.parsed_values``). Duplicates are keyed
    on ``event_id``; for labels on (``event_id``, ``reported_at``), since several labels of one
    event may legitimately arrive and the latest one wins downstream.
    """
    schema = SCHEMAS[log]
    time_name = schema.time_column or "event_time"
    key = pl.struct("event_id", time_name) if log == "labels" else pl.col("event_id")
    strings = raw.select(
        blank_required(schema).alias("blank_required_values"),
        longest_id(schema, raw.columns).alias("longest_id_length"),
        *[_blank_to_null(c) for c in _CHECKED_STRINGS.get(log, ())],
    )
    typed = parsed.with_columns(raw["event_id"]).select(
        pl.exclude("event_id"),
        days_from(pl.col(time_name), day).alias("days_from_partition"),
        key.is_first_distinct().alias("first_occurrence"),
    )
    if log == "labels":
        known = known_ids if known_ids is not None else pl.Series(dtype=pl.String)
        typed = typed.with_columns(raw["event_id"].is_in(known.implode()).alias("transaction_known"))
    return pl.concat([strings, typed], how="horizontal")


# ---------------------------------------------------------------- Great Expectations


class _GxRunner:
    """An ephemeral GX context with one pandas asset and one expectation suite per log.

    Results are kept in the context's validation results store (without the full failing
    index lists) until ``build_data_docs`` renders and forgets them.
    """

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.enable_analytics(False)
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self.context.data_sources.add_pandas("fraudseq_landing")
        self.batches = {}
        self.suites = {}
        for log, checks in CHECKS.items():
            self.batches[log] = source.add_dataframe_asset(log).add_batch_definition_whole_dataframe("day")
            suite = self.context.suites.add(gx.ExpectationSuite(name=log))
            for check in checks:
                suite.add_expectation(self._expectation(check))
            self.suites[log] = suite

    def _expectation(self, check: RowCheck) -> Any:
        kinds = {
            "not_null": self.gx.expectations.ExpectColumnValuesToNotBeNull,
            "between": self.gx.expectations.ExpectColumnValuesToBeBetween,
            "in_set": self.gx.expectations.ExpectColumnValuesToBeInSet,
            "match_regex": self.gx.expectations.ExpectColumnValuesToMatchRegex,
        }
        return kinds[check.rule](
            column=check.column, meta={"reason": check.reason}, description=check.reason, **check.args
        )

    def row_reasons(self, helpers: pl.DataFrame, log: str, day: date) -> pl.Series:
        """Run the log's suite on ``helpers``; the first failing reason per row (null when clean)."""
        batch = self.batches[log].get_batch(batch_parameters={"dataframe": helpers.to_pandas()})
        results = batch.validate(self.suites[log], result_format=RESULT_FORMAT)
        reasons = reasons_from_results(results, helpers.height)
        self._keep_for_docs(results, log, day, batch.id)
        return reasons

    def _keep_for_docs(self, results: Any, log: str, day: date, batch_id: str) -> None:
        """Store the results for Data Docs; the full index lists are dropped, the partial ones stay."""
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
            ValidationResultIdentifier,
        )

        for result in results.results:
            result.result.pop("unexpected_index_list", None)
        run_id = RunIdentifier(run_name=f"date={day.isoformat()}", run_time=datetime.now(UTC))
        results.meta.update(run_id=run_id, validation_time=run_id.run_time)
        suite_id = ExpectationSuiteIdentifier(name=log)
        key = ValidationResultIdentifier(
            expectation_suite_identifier=suite_id, run_id=run_id, batch_identifier=batch_id
        )
        self.context.validation_results_store.set(key, results)

    def build_data_docs(self, target: Path) -> None:
        """Render the results kept since the last build into a static site at ``target``, then forget them."""
        site = "fraudseq_day"
        backend = {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(target)}
        config: Any = {"class_name": "SiteBuilder", "store_backend": backend}
        self.context.add_data_docs_site(site_name=site, site_config=config)
        try:
            self.context.build_data_docs(site_names=[site])
        finally:
            self.context.delete_data_docs_site(site)
            store = self.context.validation_results_store
            for key in list(store.list_keys()):
                store.remove_key(key)
        _prune_static_assets(target)


def _prune_static_assets(site: Path) -> None:
    """Drop GX's bundled fonts and images (about 4 MB a day); pages render without them."""
    for folder in ("fonts", "images"):
        shutil.rmtree(site / "static" / folder, ignore_errors=True)


@functools.cache
def _gx_runner() -> _GxRunner:
    return _GxRunner()


def reasons_from_results(results: Any, n_rows: int) -> pl.Series:
    """First failing reason per row by REASON_CODES priority; null for a clean row."""
    priority = np.full(n_rows, len(REASON_CODES), dtype=np.int16)
    for result in results.results:
        if result.exception_info.get("raised_exception"):
            message = result.exception_info.get("exception_message")
            raise RuntimeError(f"expectation {result.expectation_config.type} failed to run: {message}")
        failing = np.asarray(result.result.get("unexpected_index_list") or [], dtype=np.int64)
        code = REASON_CODES.index(result.expectation_config.meta["reason"])
        priority[failing] = np.minimum(priority[failing], code)
    codes = pl.Series(REASON, [*REASON_CODES, None], dtype=pl.String)
    return codes.gather(pl.Series(priority, dtype=pl.UInt32))


# ---------------------------------------------------------------- one log


@dataclass(frozen=True)
class LogOutcome:
    """Validated and quarantined rows of one log and day."""

    rows_in: int
    kept: pl.DataFrame
    quarantined: pl.DataFrame

    def __post_init__(self) -> None:
        assert self.kept.height + self.quarantined.height == self.rows_in, "every row is kept or quarantined"

    def counts(self) -> dict[str, Any]:
        """The report entry of this log; kept + quarantined always equals rows in."""
        reasons = self.quarantined[REASON].value_counts()
        found = dict(zip(reasons[REASON].to_list(), reasons["count"].to_list(), strict=True))
        return {
            "rows_in": self.rows_in,
            "rows_kept": self.kept.height,
            "rows_quarantined": self.quarantined.height,
            "reasons": {code: found[code] for code in REASON_CODES if code in found},
        }


def validate_log(raw: pl.DataFrame, log: str, day: date, known_ids: pl.Series | None = None) -> LogOutcome:
    """Split one log's landing rows into normalised kept rows and quarantined rows with a reason."""
    raw = with_optional_columns(raw, log)
    parsed = parsed_values(raw, log, day)
    helpers = helper_columns(raw, parsed, log, day, known_ids)
    reasons = _gx_runner().row_reasons(helpers, log, day)
    flagged = raw.with_columns(reasons)
    keep = reasons.is_null()
    kept = normalise(flagged.filter(keep), parsed.filter(keep), log)
    order = [c for c in flagged.columns if c not in (REASON, SOURCE_FILE, SOURCE_ROW)]
    quarantined = flagged.filter(pl.col(REASON).is_not_null()).select(
        [*order, REASON, SOURCE_FILE, SOURCE_ROW]
    )
    return LogOutcome(rows_in=raw.height, kept=kept, quarantined=quarantined)


def known_transaction_ids(
    settings: Settings, day: date, labels: pl.DataFrame, today: pl.Series, landing: Path
) -> pl.Series:
    """Which labelled event_ids belong to a transaction landed on ``day`` or an earlier day.

    Kept and quarantined transactions count alike (both were landed), so the answer does not
    depend on the order days are validated in: an earlier day already validated is read from
    its validated and quarantine partitions (together exactly its landed rows), one not
    validated yet (a range mapped in parallel, say) from its landing files. ``today`` holds
    the event_ids landed on ``day``.
    """
    wanted = labels["event_id"].drop_nulls().unique().implode()
    found = [today.drop_nulls().filter(today.drop_nulls().is_in(wanted))]
    if not labels.height:
        return pl.concat(found).unique()
    done = {d for d in _passing_days(str(settings.home_dir), "transactions") if d < day}
    outputs = [_final(root, "transactions", d) / PART_FILE for d in sorted(done) for root in
               (settings.validated_dir, settings.quarantine_dir)]  # fmt: skip
    scans = [pl.scan_parquet(p).select(pl.col("event_id").cast(pl.String)) for p in outputs if p.is_file()]
    if scans:
        found.append(pl.concat(scans).filter(pl.col("event_id").is_in(wanted)).unique().collect()["event_id"])
    for earlier in _landed_days(landing, "transactions"):
        if earlier >= day or earlier in done:
            continue
        for path in partition_files(partition_dir(landing, "transactions", earlier)):
            try:
                frame = read_landing_file(path, SCHEMAS["transactions"])
            except LandingFileError:
                continue  # that file fails its own day, not this one
            if "event_id" in frame.columns:
                ids = frame["event_id"].drop_nulls()
                found.append(ids.filter(ids.is_in(wanted)))
    return pl.concat(found).unique()


def _landed_days(landing: Path, log: str) -> list[date]:
    folder = landing / log
    days = []
    for partition in folder.iterdir() if folder.is_dir() else ():
        match = re.fullmatch(r"date=(\d{4}-\d{2}-\d{2})", partition.name)
        if match:
            days.append(date.fromisoformat(match.group(1)))
    return sorted(days)


# ---------------------------------------------------------------- atomic output


def _final(root: Path, log: str, day: date) -> Path:
    return root / log / f"date={day.isoformat()}"


def report_path(settings: Settings, day: date) -> Path:
    """Where the JSON report of ``day`` lives."""
    return settings.reports_dir / "validation" / f"date={day.isoformat()}.json"


def data_docs_dir(settings: Settings, day: date) -> Path:
    """The Data Docs site of ``day``, next to its JSON report."""
    return settings.reports_dir / "validation" / f"date={day.isoformat()}"


def _day_targets(settings: Settings, day: date) -> list[Path]:
    folders = [
        _final(root, log, day) for root in (settings.validated_dir, settings.quarantine_dir) for log in LOGS
    ]
    return [*folders, data_docs_dir(settings, day), report_path(settings, day)]


def recover_leftovers(final: Path) -> None:
    """Undo what a killed run left beside ``final``: staged copies go, a renamed-away old copy returns."""
    if not final.parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(tmp|old)-[0-9a-f]+$")
    for leftover in sorted(final.parent.iterdir()):
        match = pattern.match(leftover.name)
        if not match:
            continue
        if match.group(1) == "old" and not final.exists():
            os.rename(leftover, final)
        elif leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _exchange(staged: Path, final: Path) -> bool:
    """Atomically swap two existing directories (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, bytes(staged), at_fdcwd, bytes(final), rename_exchange) == 0


def swap_in(staged: Path, final: Path) -> None:
    """Replace directory ``final`` by ``staged`` so a reader sees the old or the new one, whole."""
    if not final.exists():
        os.rename(staged, final)
        return
    if _exchange(staged, final):
        shutil.rmtree(staged)  # now holds the old copy
        return
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex}")
    os.rename(final, old)  # a kill here is undone by recover_leftovers on the next run
    os.rename(staged, final)
    shutil.rmtree(old)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON through a temporary file and os.replace, so readers never see half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _staging(final: Path, token: str) -> Path:
    staged = final.with_name(f".{final.name}.tmp-{token}")
    staged.mkdir(parents=True)
    return staged


def journal_path(settings: Settings, day: date) -> Path:
    """The commit journal of ``day``: present only while a validated day is being swapped in."""
    return settings.reports_dir / "validation" / f".date={day.isoformat()}.journal.json"


def _commit_pair(staged: Path, final: Path, token: str) -> None:
    """Move ``staged`` to ``final``, parking an existing ``final`` as ``.old-TOKEN``; safe to repeat.

    While ``staged`` exists, ``final`` still holds the previous copy (or nothing), so a
    repeat after a kill at any step reaches the same end state.
    """
    if not staged.exists():
        return
    if final.exists():
        os.rename(final, final.with_name(f".{final.name}.old-{token}"))
    os.rename(staged, final)


def _apply_journal(journal: Path) -> None:
    """Finish a day's commit from its journal: swap every staged folder in, write the report."""
    entry = json.loads(journal.read_text(encoding="utf-8"))
    token = entry["token"]
    pairs = [(Path(s), Path(f)) for s, f in entry["pairs"]]
    for number, (staged, final) in enumerate(pairs):
        _commit_pair(staged, final, token)
        if number == 0:
            checkpoint("validate.swapping")
    checkpoint("validate.before_report")
    write_json_atomic(Path(entry["report_path"]), entry["report"])
    for _, final in pairs:
        shutil.rmtree(final.with_name(f".{final.name}.old-{token}"), ignore_errors=True)
    journal.unlink()


def recover_day(settings: Settings, day: date) -> None:
    """Bring ``day`` back to a whole state after a killed run.

    A journal means the run had staged everything and decided to commit: the commit is
    rolled forward. Without one, staged folders of an unfinished run are dropped and the
    previous output stays as it was.
    """
    journal = journal_path(settings, day)
    if journal.is_file():
        _apply_journal(journal)
    for final in _day_targets(settings, day):
        recover_leftovers(final)
    for leftover in journal.parent.glob(f".{journal.name}.tmp-*"):
        leftover.unlink(missing_ok=True)


def write_day(settings: Settings, day: date, outcomes: dict[str, LogOutcome], report: dict[str, Any]) -> None:
    """Stage every output of the day, then commit them all through a journal.

    Writing the journal (atomically, fsync'd) is the commit point: a kill before it leaves
    the previous day untouched (the staging is dropped on the next run); a kill after it
    is rolled forward by ``recover_day``. Readers skip a day whose journal is present.
    """
    token = uuid.uuid4().hex
    staged: dict[Path, Path] = {}
    for log, outcome in outcomes.items():
        for root, frame in (
            (settings.validated_dir, outcome.kept),
            (settings.quarantine_dir, outcome.quarantined),
        ):
            final = _final(root, log, day)
            staged[final] = _staging(final, token)
            if root == settings.validated_dir and log in HASHED_LOGS:
                # sorted by the customer hash in row groups: a shard reads only its own range
                frame = with_customer_hash(frame)
                frame.write_parquet(staged[final] / PART_FILE, row_group_size=row_group_size(frame.height))
            else:
                frame.write_parquet(staged[final] / PART_FILE)
    docs = data_docs_dir(settings, day)
    staged[docs] = _staging(docs, token)
    _gx_runner().build_data_docs(staged[docs])
    checkpoint("validate.staged")
    journal = journal_path(settings, day)
    entry = {
        "token": token,
        "pairs": [[str(s), str(f)] for f, s in staged.items()],
        "report_path": str(report_path(settings, day)),
        "report": report,
    }
    write_json_atomic(journal, entry)
    _apply_journal(journal)


# ---------------------------------------------------------------- the stage


def _report(
    day: date, logs: dict[str, Any], error: str | None, warnings: list[str], docs: Path | None
) -> dict:
    return {
        "date": day.isoformat(),
        "status": "failed" if error else "ok",
        "logs": logs,
        "error": error,
        "warnings": warnings,
        "data_docs": str(docs / "index.html") if docs else None,
    }


def _absent_partition_warnings(landing: Path, day: date) -> list[str]:
    return [
        f"no {log} files for {day.isoformat()} in {partition_dir(landing, log, day)}: 0 rows"
        for log in LOGS_THAT_SHOULD_EXIST
        if not partition_files(partition_dir(landing, log, day))
    ]


def check_inside(landing: Path, day: date) -> None:
    """Refuse a landing file of ``day`` that resolves outside ``landing`` (a symlink pointing away)."""
    for log in LOGS:
        for path in partition_files(partition_dir(landing, log, day)):
            if not path.resolve().is_relative_to(landing):
                raise LandingFileError(f"{path}: resolves outside the landing folder {landing}")


def validate_day(settings: Settings, day: date, landing: Path | None = None) -> dict:
    """Validate every log of ``day`` and replace that day's outputs as a whole; return the report.

    Raises FileDefectError (with the failed report as ``.report``) when a file cannot be
    trusted; earlier outputs of the day then stay as they were.
    """
    landing = (landing or settings.landing_dir()).expanduser().resolve()
    if not landing.is_dir():
        raise MissingInputError(f"landing folder {landing} does not exist")
    recover_day(settings, day)
    warnings = _absent_partition_warnings(landing, day)
    try:
        check_inside(landing, day)
        raw = {log: read_partition(landing, SCHEMAS[log], day) for log in LOGS}
    except LandingFileError as defect:
        report = _report(day, {}, str(defect), warnings, None)
        write_json_atomic(report_path(settings, day), report)
        if settings.shared_url is not None:
            publish_day(settings, day)
        error = FileDefectError(str(defect))
        error.report = report  # type: ignore[attr-defined]
        raise error from defect
    outcomes = {log: validate_log(raw[log], log, day) for log in ("transactions", "logins")}
    landed_today = raw["transactions"]["event_id"].cast(pl.String)
    known = known_transaction_ids(settings, day, raw["labels"], landed_today, landing)
    outcomes["labels"] = validate_log(raw["labels"], "labels", day, known)
    logs = {log: outcomes[log].counts() for log in LOGS}
    report = _report(day, logs, None, warnings, data_docs_dir(settings, day))
    write_day(settings, day, outcomes, report)
    if settings.shared_url is not None:
        publish_day(settings, day)
    return report


# ---------------------------------------------------------------- the shared location


def publish_day(settings: Settings, day: date) -> None:
    """Copy ``day``'s committed local output to the shared location, its report last.

    The shared copy has the local layout (``validated/<log>/date=D/part-0.parquet``,
    ``reports/validation/date=D.json``) and its report is the commit marker: the old report
    goes first and the new one comes last, so a reader sees the old day, no day, or the new
    day, never a mix. A failed report is published alone, so the day stops being listed.
    """
    root = settings.shared_location
    report = report_path(settings, day).read_bytes()
    shared.remove(_report_url(root, day))
    if json.loads(report).get("status") == "ok":
        for log in LOGS:
            local = _final(settings.validated_dir, log, day) / PART_FILE
            shared.put_atomic(local.read_bytes(), _part_url(root, log, day))
    checkpoint("validate.publishing")
    shared.put_atomic(report, _report_url(root, day))


# ---------------------------------------------------------------- for downstream stages


def _data_root(settings: Settings) -> str:
    """Where downstream stages read validated days: the shared location when one is set."""
    return settings.shared_location if settings.shared_url is not None else str(settings.home_dir)


def _part_url(root: str, log: str, day: date) -> str:
    return f"{root}/validated/{log}/date={day.isoformat()}/{PART_FILE}"


def _report_url(root: str, day: date) -> str:
    return f"{root}/reports/validation/date={day.isoformat()}.json"


_PART = re.compile(rf"(?:^|/)date=(\d{{4}}-\d{{2}}-\d{{2}})/{re.escape(PART_FILE)}$")
_JOURNAL = re.compile(r"(?:^|/)\.date=(\d{4}-\d{2}-\d{2})\.journal\.json$")


def _matching_days(paths: list[str], pattern: re.Pattern[str]) -> set[date]:
    return {date.fromisoformat(m.group(1)) for m in map(pattern.search, paths) if m}


@dataclass
class _View:
    """The folder listings and validation reports read so far in a ``one_view_of_validated_days``."""

    listings: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    reports: dict[str, bytes | None] = field(default_factory=dict)

    def list_files(self, url: str, depth: int = 1) -> list[str]:
        key = (url, depth)
        if key not in self.listings:
            self.listings[key] = shared.list_files(url, depth=depth)
        return self.listings[key]

    def read_existing(self, urls: list[str]) -> list[bytes | None]:
        unread = [u for u in urls if u not in self.reports]
        self.reports.update(zip(unread, shared.read_existing(unread), strict=True))
        return [self.reports[u] for u in urls]


_VIEW: ContextVar[_View | None] = ContextVar("fraudseq_validated_view", default=None)


@contextmanager
def one_view_of_validated_days() -> Iterator[None]:
    """Inside the block, which days passed validation is read once: each folder listing and
    each validation report at most once, however many reads the block makes.

    A scoring run holds one (``score_day``, ``score_shard``, ``finalise_day``): its shards, its
    reasons and its report then read the same set of days, even if a day's validation status
    changes while it runs (the next run sees the new status), and a daily run of 32 shards
    lists the folders once instead of about a hundred times. The files themselves are opened by
    each read: a day validated again mid-run is read as its files are at that moment (each file
    is replaced whole), so validate history days again between runs, not during one. Outside a
    block every read lists again. A block inside a block shares the outer one. The view belongs
    to the thread (a ``ContextVar``) that opened it.
    """
    if _VIEW.get() is not None:
        yield
        return
    token = _VIEW.set(_View())
    try:
        yield
    finally:
        _VIEW.reset(token)


def _passing_days(root: str, log: str, among: set[date] | None = None) -> list[date]:
    """Days (of ``among``, if given) under ``root`` with a partition of ``log`` and a passing report.

    A day whose commit journal is present is mid-commit (or was cut short) and is left out.
    Inside ``one_view_of_validated_days``, what the view has already read is not read again.
    """
    view = _VIEW.get() or _View()  # outside a block: a view of this call alone
    days = _matching_days(view.list_files(f"{root}/validated/{log}", depth=2), _PART)
    days -= _matching_days(view.list_files(f"{root}/reports/validation"), _JOURNAL)
    candidates = sorted(days if among is None else days & among)
    reports = view.read_existing([_report_url(root, d) for d in candidates])
    return [d for d, text in zip(candidates, reports, strict=True) if _passed(text)]


def _passed(report: bytes | None) -> bool:
    try:
        return report is not None and json.loads(report).get("status") == "ok"
    except ValueError:
        return False


def validated_days(settings: Settings, log: str = "transactions") -> list[date]:
    """Days, oldest first, with a validated partition of ``log`` and a passing report.

    Read from the shared location when ``FRAUDSEQ_SHARED_URL`` is set, else from FRAUDSEQ_HOME.
    """
    return _passing_days(_data_root(settings), log)


def hashed_days(settings: Settings, days: list[date]) -> bool:
    """Whether every validated transactions and logins file of ``days`` carries ``HASH_COLUMN``.

    Days validated before the column existed do not; their shards fall back to other reads.
    """
    import fsspec
    import pyarrow.parquet as pq

    root = _data_root(settings)
    for log in HASHED_LOGS:
        for d in _passing_days(root, log, set(days)):
            fs, path = fsspec.core.url_to_fs(_part_url(root, log, d))
            # pyarrow seeks to the footer; Polars would read a file object to its end first
            with fs.open(path, "rb") as fh:
                if HASH_COLUMN not in pq.ParquetFile(fh).schema_arrow.names:
                    return False
    return True


def read_validated(
    settings: Settings, log: str, days: list[date], where: pl.Expr | None = None
) -> pl.LazyFrame:
    """Scan of the validated rows of ``log`` on those of ``days`` that passed validation.

    Days that are not validated are skipped; callers that need every day compare with
    ``validated_days``. With no day left, an empty frame with the validated schema. Read
    from the same place as ``validated_days``. The columns are ``validated_schema(log)``:
    the stored ``HASH_COLUMN`` is a layout detail, which ``where`` may filter on (a shard's
    hash range, ``features.hashing.in_shard``; only on days that all carry it, ``hashed_days``).
    """
    root = _data_root(settings)
    ok = _passing_days(root, log, set(days))
    if not ok:
        return pl.LazyFrame(schema=validated_schema(log))
    scan = shared.scan_parquet([_part_url(root, log, d) for d in ok])
    if where is not None:
        scan = scan.filter(where)  # before the projection: the reader skips whole row groups
    return scan.select(validated_schema(log).names())


def read_quarantine(settings: Settings, log: str, day: date) -> pl.DataFrame:
    """The quarantined rows of one log and day (empty with the base schema when there are none)."""
    path = _final(settings.quarantine_dir, log, day) / PART_FILE
    return pl.read_parquet(path) if path.is_file() else quarantine_schema(log).to_frame()
