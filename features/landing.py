"""Reading and normalising landing-zone files (CONTRACT.md sections 1 and 2).

Pure data code: every landing file is read with all columns as strings, so ids
stay exactly as written and a bad value can be quarantined as it came in. The
parsed helper columns that validation checks, and the normalised types that
downstream stages read, are built from those strings here.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from features.schemas import SCHEMAS, LogSchema

SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"
REASON = "reason"
RESERVED_COLUMNS = (SOURCE_FILE, SOURCE_ROW, REASON)

UTC_US = pl.Datetime("us", "UTC")

# ISO-8601 date, optional time (seconds and fraction optional), optional offset.
_TIMESTAMP_PATTERN = (
    r"^(?<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?<hm>\d{2}:\d{2})(?<sec>:\d{2}(?:\.\d+)?)?)?"
    r"\s*(?<offset>Z|z|(?<sign>[+-])(?<oh>\d{2})(?::?(?<om>\d{2}))?)?$"
)


class LandingFileError(ValueError):
    """A landing file that cannot be trusted as a whole; the message names file and problem."""


def validated_schema(log: str) -> pl.Schema:
    """Column types of a validated partition of ``log``."""
    types = {"event_time": UTC_US, "reported_at": UTC_US, "amount": pl.Float64(), "is_fraud": pl.Int8()}
    return pl.Schema({c: types.get(c, pl.String()) for c in SCHEMAS[log].columns})


def quarantine_schema(log: str) -> pl.Schema:
    """Column types of an empty quarantine partition (real ones also carry extra source columns)."""
    cols: dict[str, pl.DataType] = {c: pl.String() for c in SCHEMAS[log].columns}
    return pl.Schema({**cols, REASON: pl.String(), SOURCE_FILE: pl.String(), SOURCE_ROW: pl.Int64()})


# ---------------------------------------------------------------- reading files


def partition_dir(landing: Path, log: str, day: date) -> Path:
    """The Hive-style partition folder of one log and day."""
    return landing / log / f"date={day.isoformat()}"


def partition_files(folder: Path) -> list[Path]:
    """Data files of a partition in name order; hidden and ``_``-prefixed marker files are skipped."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_")))


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip()


def _as_strings(df: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Cast every column to String; datetimes keep their offset so parsing sees the same instant."""
    exprs = []
    for name, dtype in df.schema.items():
        col = pl.col(name)
        if dtype == pl.String:
            exprs.append(col)
        elif isinstance(dtype, pl.Datetime):
            fmt = "%Y-%m-%dT%H:%M:%S%.f" + ("%:z" if dtype.time_zone else "")
            exprs.append(col.dt.to_string(fmt))
        elif dtype == pl.Date:
            exprs.append(col.dt.to_string("%Y-%m-%d"))
        elif dtype == pl.Boolean:
            exprs.append(col.cast(pl.Int8).cast(pl.String))
        elif dtype.is_numeric() or dtype in (pl.Null, pl.Categorical) or isinstance(dtype, pl.Enum):
            exprs.append(col.cast(pl.String))
        else:
            raise LandingFileError(f"{path}: column {name!r} has unsupported type {dtype}")
    return df.select(exprs)


def _read_csv(path: Path) -> pl.DataFrame:
    try:
        return pl.read_csv(path, infer_schema=False, encoding="utf8", separator=",")
    except Exception as error:  # polars raises several classes for unreadable CSV
        raise LandingFileError(f"{path}: unreadable CSV ({_first_line(error)})") from error


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        df = pl.read_parquet(path)
    except Exception as error:
        raise LandingFileError(f"{path}: unreadable Parquet ({_first_line(error)})") from error
    return _as_strings(df, path)


def _clean_header(df: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Strip blanks around column names; a name used twice makes the file ambiguous."""
    names = [c.strip() for c in df.columns]
    if len(set(names)) != len(names):
        raise LandingFileError(
            f"{path}: duplicate column names {sorted(n for n in names if names.count(n) > 1)}"
        )
    return df.rename(dict(zip(df.columns, names, strict=True)))


def _check_required(df: pl.DataFrame, schema: LogSchema, path: Path) -> None:
    missing = [c for c in schema.required if c not in df.columns]
    if not missing:
        return
    hint = ""
    if any(sep in c for c in df.columns for sep in (";", "\t", "|")):
        hint = " (the header is not comma-separated)"
    raise LandingFileError(f"{path}: missing required column(s) {', '.join(missing)}{hint}")


def read_landing_file(path: Path, schema: LogSchema) -> pl.DataFrame:
    """One landing file as an all-string frame, or LandingFileError naming the file and the problem."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise LandingFileError(
            f"{path}: unsupported file type {suffix or '(none)'} (expected .parquet or .csv)"
        )
    if path.stat().st_size == 0:
        raise LandingFileError(f"{path}: file is empty (0 bytes)")
    df = _read_csv(path) if suffix == ".csv" else _read_parquet(path)
    df = _clean_header(df, path)
    _check_required(df, schema, path)
    return df.drop([c for c in RESERVED_COLUMNS if c in df.columns])


def read_partition(landing: Path, schema: LogSchema, day: date) -> pl.DataFrame:
    """All files of one partition, concatenated in name order, with ``source_file`` and ``source_row``.

    ``source_file`` is relative to the landing folder; ``source_row`` is the 0-based data row
    of that file (the CSV header is not counted). Columns absent from a file are null.
    """
    frames = [quarantine_schema(schema.name).to_frame()]
    for path in partition_files(partition_dir(landing, schema.name, day)):
        df = read_landing_file(path, schema)
        frames.append(
            df.with_columns(
                pl.lit(path.relative_to(landing).as_posix()).alias(SOURCE_FILE),
                pl.int_range(pl.len(), dtype=pl.Int64).alias(SOURCE_ROW),
            )
        )
    return pl.concat(frames, how="diagonal").drop(REASON)


# ---------------------------------------------------------------- parsing values


def is_blank(column: str) -> pl.Expr:
    """Null, empty or whitespace-only: a missing value."""
    return pl.col(column).is_null() | (pl.col(column).str.strip_chars() == "")


def parse_number(column: str) -> pl.Expr:
    """Float64 of a string, null when it is not a number or is NaN."""
    value = pl.col(column).str.strip_chars().cast(pl.Float64, strict=False)
    return pl.when(value.is_nan()).then(None).otherwise(value).alias(column)


def _timestamps_by_pattern(text: pl.Series) -> pl.Series:
    """The general ISO-8601 parser: split with a regex, then shift the local time by its offset."""
    parts = text.str.extract_groups(_TIMESTAMP_PATTERN).struct.unnest()
    local_text = parts["date"] + "T" + parts["hm"].fill_null("00:00") + parts["sec"].fill_null(":00")
    local = local_text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", time_unit="us", strict=False)
    hours = parts["oh"].cast(pl.Int64).fill_null(0)
    minutes = parts["om"].cast(pl.Int64).fill_null(0)
    sign = (parts["sign"] == "-").fill_null(False).cast(pl.Int64) * -2 + 1
    shift = pl.Series((sign * (hours * 60 + minutes)).cast(pl.Int64) * 60_000_000).cast(pl.Duration("us"))
    utc = (local - shift).dt.replace_time_zone("UTC")
    offset_ok = (hours <= 23) & (minutes <= 59)
    return utc.zip_with(offset_ok, pl.Series(dtype=UTC_US).extend_constant(None, len(utc)))


def parse_timestamps(values: pl.Series) -> pl.Series:
    """UTC datetimes of ISO-8601 strings; no offset means UTC; null when a value cannot be parsed.

    The two common shapes go through Polars' format parser; only the rows they miss (other
    separators, missing seconds, bare dates, bad values) pay for the general regex parser.
    """
    text = values.cast(pl.String).str.strip_chars()
    result = text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%#z", time_unit="us", time_zone="UTC", strict=False)
    for parser in (
        lambda t: t.str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.f", time_unit="us", strict=False
        ).dt.replace_time_zone("UTC"),
        _timestamps_by_pattern,
    ):
        todo = (result.is_null() & text.is_not_null()).arg_true()
        if todo.len() == 0:
            break
        result = result.scatter(todo, parser(text.gather(todo)))
    return result.alias(values.name)


def days_from(timestamp: pl.Expr, day: date) -> pl.Expr:
    """Whole days between a UTC timestamp's date and ``day`` (0 inside the partition)."""
    return (timestamp.dt.date() - pl.lit(day)).dt.total_days()


def longest_id(schema: LogSchema, present: list[str]) -> pl.Expr:
    """Length in characters of the longest id value of a row."""
    lengths = [pl.col(c).str.len_chars().fill_null(0) for c in schema.id_columns if c in present]
    return pl.max_horizontal(lengths).cast(pl.Int64)


def blank_required(schema: LogSchema) -> pl.Expr:
    """Number of required values that are missing in a row."""
    return pl.sum_horizontal([is_blank(c).cast(pl.Int64) for c in schema.required])


def with_optional_columns(raw: pl.DataFrame, log: str) -> pl.DataFrame:
    """Add the log's columns that no file had, as null strings."""
    absent = [c for c in SCHEMAS[log].columns if c not in raw.columns]
    return raw.with_columns([pl.lit(None, dtype=pl.String).alias(c) for c in absent])


def parsed_values(raw: pl.DataFrame, log: str, day: date) -> pl.DataFrame:
    """The typed columns of ``log`` parsed from their strings, null where a value does not parse.

    A label without ``reported_at`` gets the partition's date at 00:00 UTC.
    """
    columns = []
    for name, dtype in validated_schema(log).items():
        if dtype == UTC_US:
            parsed = parse_timestamps(raw[name])
            if name == "reported_at":
                default = pl.lit(day).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
                parsed = raw.select(pl.when(is_blank(name)).then(default).otherwise(parsed)).to_series()
            columns.append(parsed.alias(name))
        elif dtype != pl.String:
            columns.append(raw.select(parse_number(name)).to_series())
    return pl.DataFrame(columns)


def normalise(kept: pl.DataFrame, parsed: pl.DataFrame, log: str) -> pl.DataFrame:
    """Kept rows in validated types (``parsed`` holds their typed values); blank strings become null."""
    exprs: list[pl.Expr | pl.Series] = []
    for name, dtype in validated_schema(log).items():
        if dtype == pl.String:
            exprs.append(pl.when(is_blank(name)).then(None).otherwise(pl.col(name)).alias(name))
        else:
            exprs.append(parsed[name].cast(dtype))
    return kept.select(exprs)
