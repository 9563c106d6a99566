"""The scores database (contract section 4): schema, replace-a-day writes, label upserts, reads.

One module for both backends. DuckDB (the default, a local file) and PostgreSQL
(``postgresql+psycopg://``, for analysts who share the data) get the same
tables, the same view and the same guarantees:

- Re-writing a day for a model version deletes and bulk-inserts in one
  transaction, so a reader sees the old day or the new day, never half of one.
- Timestamps are stored as naive ``TIMESTAMP`` values that mean UTC. Frames
  going in may be tz-aware (converted to UTC) or naive (taken as UTC); frames
  coming out carry ``time_zone="UTC"``.
- Values always travel as bound parameters or through the bulk loaders
  (Arrow for DuckDB, ``COPY`` for PostgreSQL); only constant table names are
  spliced into SQL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

from pipeline.errors import UsageError
from pipeline.faults import checkpoint

log = logging.getLogger(__name__)

SCORES_TABLE = "transaction_scores"
CUSTOMER_TABLE = "customer_daily_risk"
LABELS_TABLE = "fraud_labels"
CURRENT_VIEW = "current_scores"
_LABEL_STAGE = "fraudseq_label_stage"

# Column name -> Polars type, in table order. The SQL types below must agree.
SCORE_COLUMNS: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "customer_id": pl.String(),
    "event_time": pl.Datetime("us"),
    "score_date": pl.Date(),
    "risk_score": pl.Float64(),
    "risk_rank": pl.Int32(),
    "alert": pl.Boolean(),
    "reasons": pl.String(),
    "model_name": pl.String(),
    "model_version": pl.String(),
    "scored_at": pl.Datetime("us"),
}
CUSTOMER_COLUMNS: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "score_date": pl.Date(),
    "max_risk_score": pl.Float64(),
    "n_transactions": pl.Int32(),
    "n_alerts": pl.Int32(),
    "model_version": pl.String(),
}
LABEL_COLUMNS: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "is_fraud": pl.Int32(),
    "reported_at": pl.Datetime("us"),
}

_TABLE_DDL: dict[str, str] = {
    SCORES_TABLE: """
        CREATE TABLE IF NOT EXISTS transaction_scores (
            event_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            event_time TIMESTAMP NOT NULL,
            score_date DATE NOT NULL,
            risk_score DOUBLE PRECISION NOT NULL,
            risk_rank INTEGER NOT NULL,
            alert BOOLEAN NOT NULL,
            reasons TEXT NOT NULL,
            model_name TEXT NOT NULL,
            model_version TEXT NOT NULL,
            scored_at TIMESTAMP NOT NULL,
            PRIMARY KEY (event_id, model_version)
        )""",
    CUSTOMER_TABLE: """
        CREATE TABLE IF NOT EXISTS customer_daily_risk (
            customer_id TEXT NOT NULL,
            score_date DATE NOT NULL,
            max_risk_score DOUBLE PRECISION NOT NULL,
            n_transactions INTEGER NOT NULL,
            n_alerts INTEGER NOT NULL,
            model_version TEXT NOT NULL,
            PRIMARY KEY (customer_id, score_date, model_version)
        )""",
    LABELS_TABLE: """
        CREATE TABLE IF NOT EXISTS fraud_labels (
            event_id TEXT PRIMARY KEY,
            is_fraud INTEGER NOT NULL,
            reported_at TIMESTAMP NOT NULL
        )""",
}

# Per day, the version whose rows carry the latest scored_at; ties go to the
# larger version string so the choice is deterministic.
_VIEW_DDL = """
    CREATE VIEW current_scores AS
    SELECT s.*
    FROM transaction_scores AS s
    JOIN (
        SELECT score_date, model_version
        FROM (
            SELECT score_date, model_version,
                   ROW_NUMBER() OVER (
                       PARTITION BY score_date ORDER BY MAX(scored_at) DESC, model_version DESC
                   ) AS recency
            FROM transaction_scores
            GROUP BY score_date, model_version
        ) AS ranked
        WHERE recency = 1
    ) AS latest
      ON latest.score_date = s.score_date AND latest.model_version = s.model_version
"""

# The (score_date, model_version, risk_rank) index also serves plain score_date
# filters on transaction_scores, since score_date is its leading column.
_INDEX_DDL: dict[str, str] = {
    "ix_transaction_scores_day_version_rank": (
        "CREATE INDEX IF NOT EXISTS ix_transaction_scores_day_version_rank "
        "ON transaction_scores (score_date, model_version, risk_rank)"
    ),
    "ix_transaction_scores_customer_id": (
        "CREATE INDEX IF NOT EXISTS ix_transaction_scores_customer_id ON transaction_scores (customer_id)"
    ),
    "ix_customer_daily_risk_score_date": (
        "CREATE INDEX IF NOT EXISTS ix_customer_daily_risk_score_date ON customer_daily_risk (score_date)"
    ),
}

# Example queries for analysts (shown in the README, run by the tests on both backends).
ANALYST_QUERIES: dict[str, str] = {
    "top_alerts": """
        SELECT risk_rank, event_id, customer_id, event_time, risk_score, reasons, model_version
        FROM current_scores
        WHERE score_date = :day AND alert
        ORDER BY risk_rank
    """,
    "customer_history": """
        SELECT r.score_date, r.max_risk_score, r.n_transactions, r.n_alerts, r.model_version
        FROM customer_daily_risk AS r
        JOIN (SELECT DISTINCT score_date, model_version FROM current_scores) AS c
          ON c.score_date = r.score_date AND c.model_version = r.model_version
        WHERE r.customer_id = :customer_id
        ORDER BY r.score_date DESC
    """,
    "alert_precision_by_week": """
        SELECT CAST(date_trunc('week', CAST(s.score_date AS TIMESTAMP)) AS DATE) AS week_start,
               COUNT(*) AS n_alerts,
               COUNT(l.event_id) AS n_labelled,
               SUM(CASE WHEN l.is_fraud = 1 THEN 1 ELSE 0 END) AS n_fraud,
               CAST(SUM(CASE WHEN l.is_fraud = 1 THEN 1 ELSE 0 END) AS DOUBLE PRECISION)
                   / COUNT(*) AS alert_precision
        FROM current_scores AS s
        LEFT JOIN fraud_labels AS l ON l.event_id = s.event_id
        WHERE s.alert
        GROUP BY 1
        ORDER BY 1
    """,
}

_ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


# ---------------------------------------------------------------- connecting


def make_engine(url: str) -> sa.Engine:
    """An engine for ``duckdb:///path`` or ``postgresql+psycopg://...`` (plain ``postgresql://`` too).

    A DuckDB file's folder is created if missing. PostgreSQL sessions run in
    UTC so that ``now()`` and any timestamptz arithmetic agree with what we store.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise UsageError(f"bad scores database URL {redact_url(url)}: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "duckdb":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return sa.create_engine(parsed)
    if backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # the one driver we install
        # The URL's own ``options`` (say, a search_path) are kept, not overridden.
        given = parsed.query.get("options", ())
        options = " ".join([*((given,) if isinstance(given, str) else given), "-c timezone=UTC"])
        parsed = parsed.difference_update_query(["options"])
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"options": options})
    raise UsageError(
        f"unsupported scores database URL {redact_url(url)}: use duckdb:/// or postgresql+psycopg://"
    )


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``, safe for logs."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _is_postgres(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _driver(conn: sa.Connection) -> Any:
    """The driver's own connection (duckdb or psycopg) behind an open SQLAlchemy connection."""
    driver = conn.connection.driver_connection
    if driver is None:
        raise RuntimeError("the database connection is closed")
    return driver


# ---------------------------------------------------------------- schema


def init_schema(engine: sa.Engine) -> None:
    """Create the three tables, the current_scores view and, on PostgreSQL, the indexes; safe to repeat.

    Only missing objects are created, so a PostgreSQL writer role without
    CREATE rights can call this once an admin has run it.
    """
    with engine.begin() as conn:
        relations = _existing_relations(conn)
        for name, ddl in _TABLE_DDL.items():
            if name not in relations:
                conn.exec_driver_sql(ddl)
        if CURRENT_VIEW not in relations:
            conn.exec_driver_sql(_VIEW_DDL)
        indexes = _existing_indexes(conn)
        if _is_postgres(conn):
            for name, ddl in _INDEX_DDL.items():
                if name not in indexes:
                    conn.exec_driver_sql(ddl)
        else:
            # DuckDB filters by its row groups' min/max, and its ART indexes make replacing a
            # scored day slow (``write_scored_day``): a file made before this drops them
            for name in set(_INDEX_DDL) & indexes:
                conn.exec_driver_sql(f"DROP INDEX {name}")


def _existing_relations(conn: sa.Connection) -> set[str]:
    """Tables and views in the connection's current schema."""
    rows = conn.execute(
        sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
    )
    return {r[0] for r in rows}


def _existing_indexes(conn: sa.Connection) -> set[str]:
    if _is_postgres(conn):
        query = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    else:
        query = "SELECT index_name FROM duckdb_indexes() WHERE schema_name = current_schema()"
    return {r[0] for r in conn.execute(sa.text(query))}


# ---------------------------------------------------------------- shaping frames


def _naive_utc(frame: pl.DataFrame, column: str) -> pl.Expr:
    """The column as naive microsecond UTC: tz-aware values are converted, naive ones kept."""
    expr = pl.col(column)
    dtype = frame.schema[column]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        expr = expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return expr.cast(pl.Datetime("us"))


def _conform(frame: pl.DataFrame, columns: dict[str, pl.DataType], what: str) -> pl.DataFrame:
    """Select ``columns`` in table order with the table's types; raise if any is missing or null."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing}")
    exprs = [
        _naive_utc(frame, name) if isinstance(dtype, pl.Datetime) else pl.col(name).cast(dtype, strict=True)
        for name, dtype in columns.items()
    ]
    out = frame.select(exprs)
    nulls = [c for c, n in zip(out.columns, out.null_count().row(0), strict=True) if n]
    if nulls:
        raise ValueError(f"{what}: null values in {nulls}")
    return out


def _with_day_and_version(
    frame: pl.DataFrame, score_date: date, model_version: str, what: str
) -> pl.DataFrame:
    """Fill score_date/model_version from the call, or check that the frame agrees with it."""
    for name, value in (("score_date", score_date), ("model_version", model_version)):
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(value).alias(name))
        elif frame.height and frame.get_column(name).cast(pl.String).ne(str(value)).any():
            raise ValueError(f"{what}: {name} differs from {value} in some rows")
    return frame


def customer_daily_summary(scores: pl.DataFrame) -> pl.DataFrame:
    """customer_daily_risk rows from one day's scores: max score, count and alerts per customer."""
    return (
        scores.group_by("customer_id")
        .agg(
            pl.col("risk_score").max().alias("max_risk_score"),
            pl.len().cast(pl.Int32).alias("n_transactions"),
            pl.col("alert").cast(pl.Int32).sum().alias("n_alerts"),
        )
        .sort("customer_id")
    )


# ---------------------------------------------------------------- bulk loading


@contextmanager
def _duckdb_view(conn: sa.Connection, name: str, frame: pl.DataFrame) -> Iterator[None]:
    """Expose ``frame`` to SQL on this DuckDB connection as ``name`` while the block runs."""
    raw = _driver(conn)
    raw.register(name, frame.to_arrow())
    # Not in a finally: an aborted DuckDB transaction refuses even unregister,
    # which would hide the real error. The rollback that follows drops the view.
    yield
    raw.unregister(name)


# Rows per chunk of COPY text: a chunk of the scores table is about 20 MB of CSV, so a day's
# rows never exist as one text.
COPY_CHUNK_ROWS = 100_000


def _copy_csv(conn: sa.Connection, table: str, frame: pl.DataFrame) -> None:
    """``COPY table FROM STDIN`` in CSV, written by Polars chunk by chunk.

    The CSV is what PostgreSQL reads back to the same values: an empty string is written
    quoted (``""``) and a null unquoted and empty, which CSV COPY reads as NULL; a text with a
    comma, quote, CR or LF is quoted; floats are written in the shortest form that reads back
    to the same double (NaN and infinities as ``NaN``, ``inf``, ``-inf``); timestamps (naive,
    UTC, see ``_conform``) to the microsecond. Passing one Python tuple a row to psycopg's
    ``write_row`` cost 5.3x the client CPU for a new 1M-row day (9.2 s against 1.75 s); the
    wall time, about 15 s either way, is the server's index upkeep (``python -m bench.db_write``).
    """
    columns = ", ".join(frame.columns)
    raw = _driver(conn)
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy,
    ):
        for chunk in frame.iter_slices(COPY_CHUNK_ROWS):
            copy.write(
                chunk.write_csv(
                    include_header=False,
                    datetime_format="%Y-%m-%d %H:%M:%S%.6f",
                    date_format="%Y-%m-%d",
                    null_value="",
                    quote_style="necessary",
                )
            )


def _bulk_insert(
    conn: sa.Connection, table: str, frame: pl.DataFrame, replace_on: tuple[str, ...] = ()
) -> None:
    """Append ``frame`` (columns named and typed as the table) inside the open transaction.

    ``replace_on`` (DuckDB only): the primary key; a row whose key is already stored replaces
    that row's other columns.
    """
    if frame.is_empty():
        return
    if _is_postgres(conn):
        _copy_csv(conn, table, frame)
        return
    columns = ", ".join(frame.columns)
    stage = f"{table}_incoming"
    upsert = ""
    if replace_on:  # names only: the table's constant columns (``_conform``) and keys (``_KEYS``)
        keys = ", ".join(replace_on)
        updates = ", ".join(f"{c} = excluded.{c}" for c in frame.columns if c not in replace_on)
        upsert = f" ON CONFLICT ({keys}) DO UPDATE SET {updates}"
    with _duckdb_view(conn, stage, frame):
        conn.exec_driver_sql(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage}{upsert}")


# ---------------------------------------------------------------- writing


def write_scored_day(
    engine: sa.Engine,
    scores: pl.DataFrame,
    customer_risk: pl.DataFrame,
    score_date: date,
    model_version: str,
) -> int:
    """Replace ``score_date``'s rows for ``model_version`` in both tables, in one transaction.

    ``scores`` needs the transaction_scores columns; ``score_date`` and
    ``model_version`` may be left out (they are filled in), and so may
    ``scored_at`` (now, UTC). ``customer_risk`` needs the customer_daily_risk
    columns, with the same leniency. ``reasons`` must already be JSON text.
    On any failure nothing changes. Returns the number of score rows written.
    """
    model_version = str(model_version)
    if "scored_at" not in scores.columns:
        scores = scores.with_columns(pl.lit(datetime.now(UTC).replace(tzinfo=None)).alias("scored_at"))
    scores = _conform(
        _with_day_and_version(scores, score_date, model_version, SCORES_TABLE),
        SCORE_COLUMNS,
        SCORES_TABLE,
    )
    customer_risk = _conform(
        _with_day_and_version(customer_risk, score_date, model_version, CUSTOMER_TABLE),
        CUSTOMER_COLUMNS,
        CUSTOMER_TABLE,
    )
    _check_unique_keys(SCORES_TABLE, scores)
    _check_unique_keys(CUSTOMER_TABLE, customer_risk)
    day = {"day": score_date, "version": model_version}
    with engine.begin() as conn:
        if _is_postgres(conn):
            for table in (SCORES_TABLE, CUSTOMER_TABLE):
                conn.execute(
                    sa.text(f"DELETE FROM {table} WHERE score_date = :day AND model_version = :version"),
                    day,
                )
            checkpoint("score.deleted")
            _bulk_insert(conn, SCORES_TABLE, scores)
            _bulk_insert(conn, CUSTOMER_TABLE, customer_risk)
        else:
            _replace_day_duckdb(conn, {SCORES_TABLE: scores, CUSTOMER_TABLE: customer_risk}, day)
        checkpoint("score.inserted")
    log.info(
        "wrote %d scores for %s, model version %s",
        scores.height,
        score_date,
        model_version,
    )
    return scores.height


_KEYS = {
    SCORES_TABLE: ("event_id", "model_version"),
    CUSTOMER_TABLE: ("customer_id", "score_date", "model_version"),
}


def _replace_day_duckdb(conn: sa.Connection, frames: dict[str, pl.DataFrame], day: dict[str, Any]) -> None:
    """Replace the day's rows in DuckDB: delete only the rows the new frames no longer hold,
    then insert the rest, replacing on the primary key the rows stored already.

    Deleting the whole day first, as on PostgreSQL, makes DuckDB's commit remove every deleted
    row from the primary-key index: re-scoring a 1M-transaction day took 82 s at commit that
    way, against about 1 s this way (a re-run keeps the same event ids). The keys were checked
    unique first (``_check_unique_keys``): DuckDB's ON CONFLICT would keep one of two rows
    with the same key without an error.
    """
    for table, frame in frames.items():
        keys = _KEYS[table]
        stage = f"{table}_kept"
        with _duckdb_view(conn, stage, frame.select(keys)):
            match = " AND ".join(f"n.{k} = {table}.{k}" for k in keys)
            conn.execute(
                sa.text(
                    f"DELETE FROM {table} WHERE score_date = :day AND model_version = :version "
                    f"AND NOT EXISTS (SELECT 1 FROM {stage} AS n WHERE {match})"
                ),
                day,
            )
    checkpoint("score.deleted")
    for table, frame in frames.items():
        _bulk_insert(conn, table, frame, replace_on=_KEYS[table])


def _check_unique_keys(table: str, frame: pl.DataFrame) -> None:
    dup = frame.filter(pl.struct(_KEYS[table]).is_duplicated()).select(_KEYS[table]).head(1)
    if dup.height:
        key = ", ".join(f"{k}={v}" for k, v in dup.row(0, named=True).items())
        raise ValueError(f"{table}: duplicate primary key ({key}) among the rows to write")


def latest_labels(labels: pl.DataFrame) -> pl.DataFrame:
    """One row per event_id: the latest reported_at wins; at equal times a fraud label wins."""
    frame = _conform(labels, LABEL_COLUMNS, LABELS_TABLE)
    return frame.sort(["event_id", "reported_at", "is_fraud"]).unique(
        subset="event_id", keep="last", maintain_order=True
    )


_DELETE_SUPERSEDED = f"""
    DELETE FROM {LABELS_TABLE}
    WHERE EXISTS (
        SELECT 1 FROM {_LABEL_STAGE} AS n
        WHERE n.event_id = {LABELS_TABLE}.event_id AND n.reported_at >= {LABELS_TABLE}.reported_at
    )
"""
_COUNT_WINNERS = f"""
    SELECT COUNT(*) FROM {_LABEL_STAGE} AS n
    WHERE NOT EXISTS (
        SELECT 1 FROM {LABELS_TABLE} AS f WHERE f.event_id = n.event_id AND f.reported_at > n.reported_at
    )
"""
_INSERT_NEW = f"""
    INSERT INTO {LABELS_TABLE} (event_id, is_fraud, reported_at)
    SELECT n.event_id, n.is_fraud, n.reported_at
    FROM {_LABEL_STAGE} AS n
    WHERE NOT EXISTS (SELECT 1 FROM {LABELS_TABLE} AS f WHERE f.event_id = n.event_id)
"""


def upsert_labels(engine: sa.Engine, labels: pl.DataFrame) -> int:
    """Merge labels into fraud_labels so each event keeps its latest-reported label.

    An incoming label replaces a stored one reported at the same time or
    earlier; an older label arriving late is ignored. Implemented as
    DELETE + INSERT so a writer role needs no UPDATE right. Returns the number
    of labels inserted or replaced.
    """
    incoming = latest_labels(labels)
    if incoming.is_empty():
        return 0
    with engine.begin() as conn:
        if _is_postgres(conn):
            conn.exec_driver_sql(
                f"CREATE TEMP TABLE {_LABEL_STAGE} "
                "(event_id TEXT, is_fraud INTEGER, reported_at TIMESTAMP) ON COMMIT DROP"
            )
            _bulk_insert(conn, _LABEL_STAGE, incoming)
            return _merge_staged_labels(conn)
        with _duckdb_view(conn, _LABEL_STAGE, incoming):
            return _merge_staged_labels(conn)


def _merge_staged_labels(conn: sa.Connection) -> int:
    """Apply the staged labels; returns how many of them won against what was stored."""
    winners = conn.exec_driver_sql(_COUNT_WINNERS).scalar_one()
    conn.exec_driver_sql(_DELETE_SUPERSEDED)
    conn.exec_driver_sql(_INSERT_NEW)
    return int(winners)


# ---------------------------------------------------------------- reading


def read_scores(engine: sa.Engine, start: date, end: date, model_version: str | None = None) -> pl.DataFrame:
    """Scores with start <= score_date <= end, ordered by day and rank.

    With no ``model_version`` this reads current_scores (each day's most
    recent version); otherwise that version's rows from transaction_scores.
    Timestamps come back tz-aware UTC.
    """
    columns = ", ".join(SCORE_COLUMNS)
    params: dict[str, Any] = {"start": start, "end": end}
    if model_version is None:
        query = f"SELECT {columns} FROM {CURRENT_VIEW} WHERE score_date BETWEEN :start AND :end"
    else:
        query = (
            f"SELECT {columns} FROM {SCORES_TABLE} "
            "WHERE score_date BETWEEN :start AND :end AND model_version = :version"
        )
        params["version"] = str(model_version)
    query += " ORDER BY score_date, model_version, risk_rank, event_id"
    with engine.connect() as conn:
        rows = conn.execute(sa.text(query), params).fetchall()
    frame = pl.DataFrame([tuple(r) for r in rows], schema=SCORE_COLUMNS, orient="row")
    return frame.with_columns(pl.col("event_time", "scored_at").dt.replace_time_zone("UTC"))


def read_labels(engine: sa.Engine) -> pl.DataFrame:
    """All of fraud_labels (event_id, is_fraud, reported_at as UTC)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT event_id, is_fraud, reported_at FROM {LABELS_TABLE}")).fetchall()
    frame = pl.DataFrame([tuple(r) for r in rows], schema=LABEL_COLUMNS, orient="row")
    return frame.with_columns(pl.col("reported_at").dt.replace_time_zone("UTC")).sort("event_id")


def latest_score_date(engine: sa.Engine) -> date | None:
    """The most recent score_date in transaction_scores, or None when nothing is scored."""
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT MAX(score_date) FROM {SCORES_TABLE}")).scalar()


# ---------------------------------------------------------------- roles (PostgreSQL)


def init_roles(admin_url: str, writer_role: str, writer_password: str | None) -> None:
    """As admin: create the schema and a writer role limited to SELECT, INSERT and DELETE.

    The role gets SELECT, INSERT, DELETE on the three tables, SELECT on the
    view and USAGE on the schema: it can score and upsert labels, never
    UPDATE, DROP or CREATE. An existing role is kept (its password is reset
    when one is given). PostgreSQL only.
    """
    from psycopg import sql

    if not _ROLE_NAME.match(writer_role):
        raise UsageError(f"bad role name {writer_role!r}: use letters, digits and _ (at most 63)")
    engine = make_engine(admin_url)
    if engine.dialect.name != "postgresql":
        raise UsageError("database roles need PostgreSQL; DuckDB has no users")
    init_schema(engine)
    role = sql.Identifier(writer_role)
    with engine.begin() as conn:
        cursor = _driver(conn).cursor()
        schema = sql.Identifier(cursor.execute("SELECT current_schema()").fetchone()[0])
        exists = cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (writer_role,)).fetchone()
        if not exists:
            cursor.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        if writer_password is not None:
            cursor.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, sql.Literal(writer_password)))
        cursor.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role))
        for table in (SCORES_TABLE, CUSTOMER_TABLE, LABELS_TABLE):
            target = sql.Identifier(table)
            cursor.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(target, role))
            cursor.execute(sql.SQL("GRANT SELECT, INSERT, DELETE ON {} TO {}").format(target, role))
        view = sql.Identifier(CURRENT_VIEW)
        cursor.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(view, role))
        cursor.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(view, role))
        can_create = cursor.execute(
            "SELECT has_schema_privilege(%s, current_schema(), 'CREATE')",
            (writer_role,),
        ).fetchone()[0]
    engine.dispose()
    if can_create:
        log.warning(
            "role %s can still CREATE in the schema through PUBLIC; revoke it there",
            writer_role,
        )
