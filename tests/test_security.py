"""Security (issue 4, point 6): parameterised SQL, no secrets in logs or MLflow, no path escapes,
registry-only model URIs."""

from __future__ import annotations

import ast
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from .conftest import ROOT, ZONE_START
from .test_db import _pg_schema_url, pg_url  # noqa: F401 - pg_url is a fixture used through request
from .test_kill import ok, run_cli
from .test_postgres_stack import fresh_database  # noqa: F401 - a fixture, used through request

DAY = ZONE_START + timedelta(days=22)
INJECTION_IDS = ["x'); DROP TABLE transaction_scores;--", "1 OR 1=1", 'quote"d\\back', "é 🙂 \t tab"]

# Names that may be spliced into SQL text: constant table/column names and SQL built from them.
SQL_NAMES = {
    "table", "columns", "stage", "query", "SCORES_TABLE", "CUSTOMER_TABLE", "LABELS_TABLE",
    "CURRENT_VIEW", "_LABEL_STAGE",
    # DuckDB's replace of a day: primary-key and column names joined (``db._KEYS``, the columns)
    "keys", "updates", "upsert", "match",
}  # fmt: skip
SQL_CALLS = {"text", "exec_driver_sql", "execute", "copy"}


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _sql_fstrings() -> list[tuple[str, int, set[str]]]:
    """(file, line, spliced names) of every f-string given to an SQL call or assigned as SQL text."""
    found = []
    for path in sorted((ROOT / "pipeline").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and _call_name(node) in SQL_CALLS:
                roots: list[ast.AST] = list(node.args)
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.JoinedStr):
                roots = [node.value]
            else:
                continue
            for root in roots:
                for sub in ast.walk(root):
                    if not isinstance(sub, ast.JoinedStr):
                        continue
                    text = "".join(v.value for v in sub.values if isinstance(v, ast.Constant)).upper()
                    if not any(
                        k in text for k in ("SELECT ", "INSERT ", "DELETE ", "UPDATE ", "COPY ", "CREATE ")
                    ):
                        continue
                    names = {ast.unparse(v.value) for v in sub.values if isinstance(v, ast.FormattedValue)}
                    found.append((path.name, sub.lineno, names))
    return found


def test_sql_text_splices_only_constant_names() -> None:
    spliced = _sql_fstrings()
    assert spliced, "the scan should see the SQL of pipeline/db.py"
    for name, line, names in spliced:
        assert names <= SQL_NAMES, f"{name}:{line} splices {names - SQL_NAMES} into SQL"


def test_table_and_column_names_spliced_are_constants() -> None:
    """``table`` and ``columns`` come only from the module's constants, never from data."""
    from pipeline import db

    for columns in (db.SCORE_COLUMNS, db.CUSTOMER_COLUMNS, db.LABEL_COLUMNS):
        assert all(c.isidentifier() for c in columns)
    for table in (db.SCORES_TABLE, db.CUSTOMER_TABLE, db.LABELS_TABLE, db.CURRENT_VIEW, db._LABEL_STAGE):
        assert table.isidentifier()
    columns_of = {db.SCORES_TABLE: db.SCORE_COLUMNS, db.CUSTOMER_TABLE: db.CUSTOMER_COLUMNS}
    for table, keys in db._KEYS.items():
        assert set(keys) <= set(columns_of[table])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
def test_injection_looking_ids_travel_verbatim_from_landing_to_scores(
    backend: str, home_copy: Path, small_zone: Path, tmp_path: Path, request
) -> None:
    """Landed ids that look like SQL come out of validation and scoring byte for byte."""
    landing = tmp_path / "landing"
    shutil.copytree(small_zone, landing)
    folder = landing / "transactions" / f"date={DAY}"
    base = pl.read_parquet(next(folder.glob("*.parquet"))).head(len(INJECTION_IDS))
    base.with_columns(pl.Series("event_id", INJECTION_IDS)).write_parquet(folder / "odd-ids.parquet")
    env_home = home_copy
    if backend == "postgresql":
        url = _pg_schema_url(request.getfixturevalue("pg_url"))
    else:
        url = f"duckdb:///{tmp_path / 'scores.duckdb'}"

    ok(run_cli(env_home, landing, "validate", "--date", str(DAY)))
    ok(run_cli(env_home, landing, "score", "--date", str(DAY), extra_env={"FRAUDSEQ_SCORES_URL": url}))

    from pipeline import db

    engine = db.make_engine(url)
    try:
        stored = db.read_scores(engine, DAY, DAY)["event_id"].to_list()
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert set(INJECTION_IDS) <= set(stored)
    assert tables == 4  # three tables and the view, nothing dropped or added


# ---------------------------------------------------------------- secrets


@pytest.mark.slow
def test_database_passwords_never_reach_logs_or_mlflow(home_copy: Path, small_zone: Path, request) -> None:
    """Train and score with PostgreSQL URLs carrying a password; grep every output for it."""
    make = request.getfixturevalue("fresh_database")
    secret = f"Pw{uuid.uuid4().hex[:12]}"
    with_password = {
        name: make(name).replace("postgresql+psycopg://postgres@", f"postgresql+psycopg://postgres:{secret}@")
        for name in ("mlflow", "scores")
    }
    env = {"MLFLOW_TRACKING_URI": with_password["mlflow"], "FRAUDSEQ_SCORES_URL": with_password["scores"]}
    outputs = []
    for args in (
        ("train", "--train-start", str(ZONE_START), "--train-end",
         str(ZONE_START + timedelta(days=20)), "--epochs", "1"),
        ("score", "--date", str(DAY)),
        ("status",),
        ("db", "init"),
    ):  # fmt: skip
        proc = run_cli(home_copy, small_zone, *args, extra_env=env, json_output=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs.append(proc.stdout + proc.stderr)
    # a failing connection names the server, not the password
    bad = with_password["scores"].replace(":5432/", ":1/")
    proc = run_cli(
        home_copy, small_zone, "score", "--date", str(DAY), extra_env={**env, "FRAUDSEQ_SCORES_URL": bad}
    )
    assert proc.returncode != 0
    outputs.append(proc.stdout + proc.stderr)
    for text in outputs:
        assert secret not in text

    mlflow_db = sa.create_engine(with_password["mlflow"].replace(f":{secret}@", "@"))
    try:
        with mlflow_db.connect() as conn:
            stored = [
                str(value)
                for table, column in (
                    ("params", "value"), ("tags", "value"), ("model_versions", "description"),
                    ("model_version_tags", "value"), ("runs", "name"), ("experiments", "artifact_location"),
                )
                for (value,) in conn.execute(sa.text(f"SELECT {column} FROM {table}"))  # noqa: S608
            ]  # fmt: skip
    finally:
        mlflow_db.dispose()
    assert len(stored) > 20
    assert not [v for v in stored if secret in v]
    artifacts = [p for p in (home_copy / "mlartifacts").rglob("*") if p.is_file() and p.stat().st_size < 5e6]
    artifacts += [p for p in home_copy.rglob("*.json") if p.is_file()]
    assert not [p for p in artifacts if secret.encode() in p.read_bytes()]


# ---------------------------------------------------------------- paths and URIs


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("validate", "--date", "../../etc"), "--date '../../etc'"),
        (("score", "--date", "2026-01-27", "--model-uri", "file:///etc/passwd"), "--model-uri"),
        (("score", "--date", "2026-01-27", "--model-uri", "runs:/abc/model"), "--model-uri"),
        (("score", "--date", "2026-01-27", "--model-uri", "models:/../../x/1"), "--model-uri"),
    ],
)
def test_cli_refuses_paths_and_uris_that_escape(args, fragment, tmp_path: Path) -> None:
    (tmp_path / "landing").mkdir()
    proc = run_cli(tmp_path / "home", tmp_path / "landing", *args)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("fraudseq: error:")]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "etc").exists()


def test_landing_symlink_pointing_outside_fails_the_day(tmp_path: Path) -> None:
    from pipeline.config import Settings
    from pipeline.errors import FileDefectError
    from pipeline.validate import validate_day

    secret = tmp_path / "secret.csv"
    secret.write_text("event_id,customer_id\n1,2\n")
    folder = tmp_path / "landing" / "logins" / f"date={DAY}"
    folder.mkdir(parents=True)
    (folder / "part-000.csv").symlink_to(secret)
    settings = Settings(home=tmp_path / "home", landing=tmp_path / "landing")

    with pytest.raises(FileDefectError, match="resolves outside the landing folder"):
        validate_day(settings, DAY)
    assert not (settings.validated_dir / "logins").exists()
