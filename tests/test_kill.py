"""A real SIGKILL at each crash point of the real CLI leaves the previous state whole; a re-run finishes.

Each test runs ``fraudseq`` in a subprocess with ``FRAUDSEQ_TEST_KILL_AT`` set to one of
``pipeline.faults.CHECKPOINTS``; the process kills itself there with SIGKILL (no cleanup
code runs). The test then checks what a reader sees (validated files, score rows, the
champion) and runs the same command again without the variable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from pipeline.faults import CHECKPOINTS, KILL_ENV

from .conftest import ROOT, ZONE_START

DAY = ZONE_START + timedelta(days=22)
NEXT = DAY + timedelta(days=1)
CLI = "from pipeline.cli import app; app()"


def run_cli(
    home: Path,
    landing: Path,
    *args: str,
    kill_at: str | None = None,
    extra_env: dict[str, str] | None = None,
    json_output: bool = True,
) -> subprocess.CompletedProcess:
    """``fraudseq ARGS [--json]`` in a fresh interpreter with this checkout first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUDSEQ_", "MLFLOW_"))}
    env.update(FRAUDSEQ_HOME=str(home), FRAUDSEQ_LANDING=str(landing), PYTHONPATH=str(ROOT))
    env.update(extra_env or {})
    if kill_at:
        env[KILL_ENV] = kill_at
    return subprocess.run(
        [sys.executable, "-c", CLI, *args, *(["--json"] if json_output else [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=home.parent,
    )


def killed(proc: subprocess.CompletedProcess, point: str) -> bool:
    """Died by SIGKILL, at ``point`` (not elsewhere, say by the OOM killer)."""
    assert f"fraudseq: fault injection: SIGKILL at {point}" in proc.stderr, proc.stderr[-3000:]
    return proc.returncode == -signal.SIGKILL


def ok(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def day_files(home: Path, day) -> dict[str, str]:
    """Digest of every file a reader of ``day`` sees (validated, quarantine, report), by relative path."""
    out = {}
    for root in ("validated", "quarantine"):
        for path in sorted((home / root).glob(f"*/date={day}/*")):
            out[str(path.relative_to(home))] = hashlib.sha256(path.read_bytes()).hexdigest()
    report = home / "reports" / "validation" / f"date={day}.json"
    out["report"] = hashlib.sha256(report.read_bytes()).hexdigest() if report.exists() else ""
    return out


def hidden_leftovers(home: Path) -> list[str]:
    return [str(p) for p in home.rglob(".*") if any(t in p.name for t in (".tmp-", ".old-", ".journal"))]


def score_rows(home: Path, day, with_scored_at: bool = True) -> pl.DataFrame:
    from pipeline import db
    from pipeline.config import Settings

    engine = db.make_engine(Settings(home=home).scores_db_url)
    try:
        rows = db.read_scores(engine, day, day)
    finally:
        engine.dispose()
    return (rows if with_scored_at else rows.drop("scored_at")).sort("event_id")


@pytest.fixture
def landing(small_zone: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "landing"
    shutil.copytree(small_zone, copy)
    return copy


def add_transactions(landing: Path, day, suffix: str) -> None:
    """Land a second file on ``day``: copies of its transactions with new ids (a changed day)."""
    folder = landing / "transactions" / f"date={day}"
    frame = pl.read_parquet(next(folder.glob("*.parquet")))
    frame.with_columns(pl.col("event_id") + suffix).write_parquet(folder / f"extra{suffix}.parquet")


def test_every_checkpoint_is_called_in_the_code() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "pipeline").glob("*.py") if p.name != "faults.py")
    for name in CHECKPOINTS:
        assert f'checkpoint("{name}")' in source, name


@pytest.mark.slow
@pytest.mark.parametrize("point", ["validate.staged", "validate.swapping", "validate.before_report"])
def test_kill_while_validating(point: str, home_copy: Path, landing: Path) -> None:
    before = day_files(home_copy, DAY)
    add_transactions(landing, DAY, "-x")
    clean = home_copy.parent / "clean"
    shutil.copytree(home_copy, clean)

    assert killed(run_cli(home_copy, landing, "validate", "--date", str(DAY), kill_at=point), point)

    from pipeline.config import Settings
    from pipeline.validate import validated_days

    settings = Settings(home=home_copy)
    if point == "validate.staged":
        # before the commit point: the previous day is untouched and still validated
        assert day_files(home_copy, DAY) == before
        assert DAY in validated_days(settings)
    else:
        # after it: readers skip the half-swapped day until a run rolls the commit forward
        assert DAY not in validated_days(settings)

    report = ok(run_cli(home_copy, landing, "validate", "--date", str(DAY)))
    assert report["status"] == "ok"
    assert hidden_leftovers(home_copy) == []
    assert DAY in validated_days(settings)
    # the re-run equals an uninterrupted validation of the changed landing day
    ok(run_cli(clean, landing, "validate", "--date", str(DAY)))
    mine, theirs = day_files(home_copy, DAY), day_files(clean, DAY)
    assert {k: v for k, v in mine.items() if k != "report"} == {
        k: v for k, v in theirs.items() if k != "report"
    }
    assert (
        report["logs"] == json.loads((clean / "reports/validation" / f"date={DAY}.json").read_text())["logs"]
    )


@pytest.mark.slow
def test_kill_while_publishing_to_the_shared_location(home_copy: Path, landing: Path, tmp_path: Path) -> None:
    from pipeline.config import Settings
    from pipeline.validate import validated_days

    shared = tmp_path / "shared"
    env = {"FRAUDSEQ_SHARED_URL": str(shared)}
    point = "validate.publishing"
    assert killed(
        run_cli(home_copy, landing, "validate", "--date", str(DAY), kill_at=point, extra_env=env), point
    )

    local = Settings(home=home_copy)
    on_url = Settings(home=tmp_path / "empty", shared_url=str(shared))
    assert DAY in validated_days(local)  # committed locally before publishing began
    assert DAY not in validated_days(on_url)  # partitions there, report not: readers skip the day
    assert (shared / "validated" / "transactions" / f"date={DAY}" / "part-0.parquet").is_file()

    assert ok(run_cli(home_copy, landing, "validate", "--date", str(DAY), extra_env=env))["status"] == "ok"
    assert DAY in validated_days(on_url)
    for log in ("transactions", "logins", "labels"):
        part = f"validated/{log}/date={DAY}/part-0.parquet"
        assert (shared / part).read_bytes() == (home_copy / part).read_bytes()
    assert [p for p in shared.rglob("*.tmp")] == []


@pytest.mark.parametrize("point", ["score.deleted", "score.inserted", "score.labels"])
def test_kill_while_scoring(point: str, home_copy: Path, landing: Path) -> None:
    first = ok(run_cli(home_copy, landing, "score", "--date", str(DAY)))
    before = score_rows(home_copy, DAY)
    assert before.height == first["n_transactions"] > 0

    assert killed(run_cli(home_copy, landing, "score", "--date", str(DAY), kill_at=point), point)

    after_kill = score_rows(home_copy, DAY)
    if point == "score.labels":
        # the day's transaction had committed: a new scored_at, the same scores
        assert after_kill.drop("scored_at").equals(before.drop("scored_at"))
    else:
        assert after_kill.equals(before)  # the old rows, scored_at included: nothing committed

    again = ok(run_cli(home_copy, landing, "score", "--date", str(DAY)))
    rescored = score_rows(home_copy, DAY)
    assert again["n_transactions"] == rescored.height == before.height
    assert rescored["event_id"].n_unique() == rescored.height
    assert rescored.drop("scored_at").equals(before.drop("scored_at"))


def registry_state(home: Path) -> tuple[set[str], str | None]:
    """(registered versions, champion version) read straight from the MLflow SQLite store.

    A fresh connection each time: an MLflow client kept in this process may keep serving
    what it read before the subprocess wrote.
    """
    import sqlite3

    with sqlite3.connect(home / "mlflow.db") as conn:
        versions = {str(v) for (v,) in conn.execute("SELECT version FROM model_versions")}
        alias = conn.execute(
            "SELECT version FROM registered_model_aliases WHERE alias = 'champion'"
        ).fetchone()
    return versions, (str(alias[0]) if alias else None)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["train.logged", "train.registered"])
def test_kill_while_training(point: str, home_copy: Path, landing: Path) -> None:
    args = ("train", "--train-start", str(ZONE_START), "--train-end", str(ZONE_START + timedelta(days=20)))
    assert registry_state(home_copy) == ({"1"}, "1")

    assert killed(run_cli(home_copy, landing, *args, "--epochs", "1", kill_at=point), point)

    versions, champion = registry_state(home_copy)
    assert champion == "1"  # the champion never moved
    assert versions == ({"1"} if point == "train.logged" else {"1", "2"})

    out = ok(run_cli(home_copy, landing, *args, "--epochs", "1"))
    assert out["version"] == str(len(versions) + 1)
    assert registry_state(home_copy) == (
        {*versions, out["version"]},
        out["version"] if out["promoted"] else "1",
    )
    # scoring still resolves a whole, loadable champion
    ok(run_cli(home_copy, landing, "score", "--date", str(DAY)))


@pytest.mark.slow
def test_day_failing_after_passing_keeps_its_output_and_scores(home_copy: Path, landing: Path) -> None:
    ok(run_cli(home_copy, landing, "score", "--date", str(DAY)))
    files_before = {k: v for k, v in day_files(home_copy, DAY).items() if k != "report"}
    scores_before = score_rows(home_copy, DAY)
    (landing / "logins" / f"date={DAY}" / "part-001.parquet").write_bytes(b"PAR1 truncated")

    proc = run_cli(home_copy, landing, "validate", "--date", str(DAY))

    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("fraudseq: error:")]
    assert len(lines) == 1 and "part-001.parquet" in lines[0]
    assert {k: v for k, v in day_files(home_copy, DAY).items() if k != "report"} == files_before
    assert score_rows(home_copy, DAY).equals(scores_before)
    assert hidden_leftovers(home_copy) == []
