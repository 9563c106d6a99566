"""Validated days travel through FRAUDSEQ_SHARED_URL, so a worker with an empty home can score."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from features.schemas import LOGS
from pipeline.config import Settings
from pipeline.errors import FileDefectError
from pipeline.shared import list_files, remove
from pipeline.validate import publish_day, read_validated, validate_day, validated_days

from .conftest import ZONE_START
from .test_shards import _read_scores
from .test_validate import DAY as TINY_DAY
from .test_validate import login, tx, write

DAY = ZONE_START + timedelta(days=23)


@pytest.fixture(params=["path", "file", "memory"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A shared location outside every home: a plain folder, a ``file://`` URL, an fsspec memory store."""
    if request.param == "memory":
        import fsspec

        name = f"fraudseq-{uuid.uuid4().hex}"
        yield f"memory://{name}"
        fs = fsspec.filesystem("memory")
        if fs.exists(f"/{name}"):
            fs.rm(f"/{name}", recursive=True)
    else:
        folder = tmp_path / "bucket"
        yield str(folder) if request.param == "path" else folder.as_uri()


def _report_url(shared_url: str, day) -> str:
    return f"{shared_url}/reports/validation/date={day.isoformat()}.json"


@pytest.mark.slow
def test_a_worker_with_an_empty_home_scores_from_the_shared_location(
    home_copy: Path, small_zone: Path, shared_url: str, tmp_path: Path
) -> None:
    from pipeline.registry import resolve_version, use_tracking
    from pipeline.score import score_day
    from pipeline.shards import finalise_day, score_shard

    tracking = f"sqlite:///{home_copy / 'mlflow.db'}"
    local = Settings(
        home=home_copy,
        landing=small_zone,
        mlflow_tracking_uri=tracking,
        alert_budget=15,
        scores_url=f"duckdb:///{tmp_path / 'local.duckdb'}",
    )
    publishing = local.model_copy(update={"shared_url": shared_url})
    for day in validated_days(local):
        if day != DAY:
            publish_day(publishing, day)
    validate_day(publishing, DAY)  # validation publishes the day by itself
    assert validated_days(publishing) == validated_days(local)

    reference = score_day(local, DAY)  # every input read from home_copy
    expected = _read_scores(local, DAY)

    empty = tmp_path / "worker-home"
    worker = Settings(
        home=empty,
        shared_url=shared_url,
        mlflow_tracking_uri=tracking,
        alert_budget=15,
        scores_url=f"duckdb:///{tmp_path / 'worker.duckdb'}",
    )
    use_tracking(tracking)
    pinned = resolve_version(None, worker.model_name)
    outs = [score_shard(worker, DAY, k, 3, pinned) for k in range(3)]

    def shard_outputs() -> list[str]:
        return [p for p in list_files(f"{shared_url}/scores", depth=8) if p.endswith(".parquet")]

    assert len(shard_outputs()) == 3
    out = finalise_day(worker, DAY, pinned, 3, [o["path"] for o in outs])
    assert shard_outputs() == []  # the day is written: finalise removed its shard outputs
    assert not (empty / "validated").exists() and not (empty / "shared").exists()

    scores = _read_scores(worker, DAY)
    assert out["n_transactions"] == reference["n_transactions"] == scores.height > 0
    assert out["n_alerts"] == reference["n_alerts"] == 15
    assert scores["event_id"].equals(expected["event_id"])
    assert scores["risk_rank"].equals(expected["risk_rank"])
    assert scores["alert"].equals(expected["alert"])
    assert np.abs(scores["risk_score"].to_numpy() - expected["risk_score"].to_numpy()).max() < 1e-6
    assert scores.filter("alert")["reasons"].equals(expected.filter("alert")["reasons"])


def test_a_half_published_day_is_not_validated(validated_home: Path, shared_url: str, tmp_path: Path) -> None:
    source = Settings(home=validated_home)
    first, second = validated_days(source)[:2]
    for day in (first, second):
        publish_day(source.model_copy(update={"shared_url": shared_url}), day)
    reader = Settings(home=tmp_path / "empty", shared_url=shared_url)
    for log in LOGS:
        assert validated_days(reader, log) == [first, second]
        ours = read_validated(reader, log, [first, second]).collect()
        assert ours.equals(read_validated(source, log, [first, second]).collect())

    remove(_report_url(shared_url, second))  # partitions there, commit marker not (yet)
    for log in LOGS:
        assert validated_days(reader, log) == [first]
        ours = read_validated(reader, log, [first, second]).collect()
        assert ours.equals(read_validated(source, log, [first]).collect())
    from pipeline.errors import MissingInputError
    from pipeline.sequences import check_days

    with pytest.raises(MissingInputError, match=second.isoformat()):
        check_days(reader, [second], [first])

    # a report without its partition lists nothing either
    remove(f"{shared_url}/validated/logins/date={first.isoformat()}/part-0.parquet")
    assert validated_days(reader, "logins") == []
    assert validated_days(reader, "transactions") == [first]
    assert not (tmp_path / "empty").exists()


def test_revalidation_replaces_the_published_day_and_a_failure_withdraws_it(
    tmp_path: Path, shared_url: str
) -> None:
    landing = tmp_path / "landing"
    settings = Settings(home=tmp_path / "home", landing=landing, shared_url=shared_url)
    reader = Settings(home=tmp_path / "empty", shared_url=shared_url)
    write(landing, "transactions", "part-000.csv", [tx("t1"), tx("t2", amount="-1")])
    write(landing, "logins", "part-000.csv", [login("l1")])

    validate_day(settings, TINY_DAY)
    assert validated_days(reader) == [TINY_DAY]
    assert read_validated(reader, "transactions", [TINY_DAY]).collect()["event_id"].to_list() == ["t1"]

    write(landing, "transactions", "part-001.csv", [tx("t3")])
    validate_day(settings, TINY_DAY)
    published = read_validated(reader, "transactions", [TINY_DAY]).collect()
    assert sorted(published["event_id"].to_list()) == ["t1", "t3"]
    local = settings.validated_dir / "transactions" / f"date={TINY_DAY.isoformat()}" / "part-0.parquet"
    # local files stay where the contract puts them (with the customer hash, a storage detail)
    assert published.equals(pl.read_parquet(local).select(published.columns))
    names = [p.rsplit("/", 1)[-1] for p in list_files(shared_url, depth=5)]
    assert not [n for n in names if n.endswith(".tmp")]

    (landing / "logins" / f"date={TINY_DAY.isoformat()}" / "part-001.parquet").write_bytes(b"")
    with pytest.raises(FileDefectError):
        validate_day(settings, TINY_DAY)
    assert validated_days(reader) == validated_days(settings.model_copy(update={"shared_url": None})) == []
    assert read_validated(reader, "transactions", [TINY_DAY]).collect().height == 0


def test_without_a_shared_url_validation_publishes_nothing(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    settings = Settings(home=tmp_path / "home", landing=landing)
    write(landing, "transactions", "part-000.csv", [tx("t1")])
    validate_day(settings, TINY_DAY)
    assert validated_days(settings) == [TINY_DAY]
    assert not (settings.home_dir / "shared").exists()
