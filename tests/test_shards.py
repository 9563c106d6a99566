"""Sharded scoring: a stable customer hash, N-independent results, atomic shard outputs."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from pipeline.shards import shard_of

from .conftest import ZONE_START, use_home

DAY = ZONE_START + timedelta(days=23)


def test_shard_hash_is_xxhash64_and_stable() -> None:
    from features.hashing import customer_hash

    # 0xEF46DB3751D8E999 is xxh64's published digest of the empty input (seed 0)
    assert customer_hash("") == 0xEF46DB3751D8E999
    assert shard_of("", 16) == 0xE  # shard k of 16 is the k-th sixteenth of the hash space
    assert customer_hash("C000001") == 0x536A571F00F5A31A
    assert shard_of("C000001", 4) == 1 and shard_of("C000001", 16) == 5
    assert shard_of("c-42", 16) == 15
    assert all(shard_of(f"C{k:06d}", 1) == 0 for k in range(50))
    counts = np.bincount([shard_of(f"C{k:06d}", 4) for k in range(4000)], minlength=4)
    assert counts.min() > 850  # roughly even


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 32])
def test_shard_ranges_tile_the_hash_space_and_agree_with_shard_of(n: int) -> None:
    from features.hashing import HASH_SPACE, customer_hash, in_shard, shard_range

    ranges = [shard_range(k, n) for k in range(n)]
    assert ranges[0][0] == 0 and ranges[-1][1] == HASH_SPACE
    assert all(ranges[k][1] == ranges[k + 1][0] for k in range(n - 1))  # contiguous, no gap or overlap
    ids = [f"C{k:06d}" for k in range(2000)] + [""]
    hashes = pl.Series("customer_hash", [customer_hash(c) for c in ids], dtype=pl.UInt64)
    edges = [lo for lo, _ in ranges[1:]] + [lo - 1 for lo, _ in ranges[1:]] + [0, HASH_SPACE - 1]
    probe = pl.DataFrame({"customer_hash": pl.concat([hashes, pl.Series(edges, dtype=pl.UInt64)])})
    owners = [probe.select(in_shard(k, n)).to_series().to_numpy() for k in range(n)]
    assert (np.sum(owners, axis=0) == 1).all()  # every hash in exactly one shard
    for k, mine in enumerate(owners):
        by_range = [h * n >> 64 == k for h in probe["customer_hash"].to_list()]
        assert mine.tolist() == by_range
    assert [k for k in range(n) for c in ids if shard_of(c, n) == k] == sorted(shard_of(c, n) for c in ids)
    with pytest.raises(ValueError):
        shard_range(n, n)


def test_validated_days_are_stored_by_customer_hash_in_row_groups_a_shard_can_skip(
    small_zone, tmp_path, monkeypatch
) -> None:
    import pyarrow.parquet as pq

    import features.hashing as hashing
    from features.hashing import HASH_COLUMN, customer_hash, in_shard, of_customers
    from pipeline.config import Settings
    from pipeline.shards import day_customers
    from pipeline.validate import hashed_days, read_validated, validate_day

    monkeypatch.setattr(hashing, "MIN_ROW_GROUP", 50)  # the small zone's day in many row groups
    monkeypatch.setattr(hashing, "ROW_GROUPS", 16)
    settings = Settings(home=tmp_path / "home", landing=small_zone)
    validate_day(settings, DAY)
    assert hashed_days(settings, [DAY])
    for log in ("transactions", "logins"):
        path = settings.validated_dir / log / f"date={DAY}" / "part-0.parquet"
        stored = pl.read_parquet(path)
        assert stored[HASH_COLUMN].to_list() == [customer_hash(c) for c in stored["customer_id"].to_list()]
        assert stored[HASH_COLUMN].is_sorted()
        meta = pq.ParquetFile(path).metadata
        assert meta.num_row_groups >= 4
        column = stored.columns.index(HASH_COLUMN)
        stats = [meta.row_group(g).column(column).statistics for g in range(meta.num_row_groups)]
        # each row group holds its own slice of the hash space: a range filter skips the others
        assert all(a.max <= b.min for a, b in zip(stats, stats[1:], strict=False))
        every = read_validated(settings, log, [DAY]).collect()
        assert HASH_COLUMN not in every.columns  # a layout detail, not a validated column
        parts = [read_validated(settings, log, [DAY], where=in_shard(k, 5)).collect() for k in range(5)]
        assert sum(p.height for p in parts) == every.height
        for k, part in enumerate(parts):
            assert all(shard_of(c, 5) == k for c in part["customer_id"].unique().to_list())
            assert part.columns == every.columns
    # a shard's customers of the day, read from its row groups, are those shard_of gives it
    everyone = day_customers(settings, DAY)
    for k in range(5):
        assert day_customers(settings, DAY, in_shard(k, 5)) == [c for c in everyone if shard_of(c, 5) == k]
    # finalise_day reads the alerted customers' history by their stored hash
    some = everyone[::7]
    for log in ("transactions", "logins"):
        got = read_validated(settings, log, [DAY], where=of_customers(some)).collect()
        want = read_validated(settings, log, [DAY]).filter(pl.col("customer_id").is_in(some)).collect()
        assert got.height > 0 and got.sort(got.columns).equals(want.sort(want.columns))


def test_days_validated_without_the_hash_are_still_scored_through_the_split(
    home_copy, small_zone, monkeypatch
) -> None:
    """History validated before the hash column existed: read together with newer days, and a
    sharded day over it goes through ``split_history``, to the same scores."""
    from features.hashing import HASH_COLUMN
    from pipeline.config import Settings
    from pipeline.score import score_day
    from pipeline.sequences import check_days
    from pipeline.validate import hashed_days, read_validated

    use_home(monkeypatch, home_copy, small_zone)
    monkeypatch.setenv("FRAUDSEQ_SHARDS", "3")
    settings = Settings()
    days = check_days(settings, [DAY], settings.history_range(DAY))
    hashed = score_day(settings, DAY)
    assert hashed_days(settings, days) and hashed["n_shards"] == 3
    before = _read_scores(settings, DAY)
    for log in ("transactions", "logins"):  # the older half of the history, as older code wrote it
        for d in days[: len(days) // 2]:
            path = home_copy / "validated" / log / f"date={d}" / "part-0.parquet"
            pl.read_parquet(path).drop(HASH_COLUMN).write_parquet(path)
    assert not hashed_days(settings, days)
    assert read_validated(settings, "logins", days).collect().height > 0  # mixed files read as one
    split_calls = []
    import pipeline.shards as shards

    real_split = shards.split_history

    def counting_split(*args, **kwargs):
        split_calls.append(args)
        return real_split(*args, **kwargs)

    monkeypatch.setattr(shards, "split_history", counting_split)
    score_day(settings, DAY)
    assert len(split_calls) == 1
    after = _read_scores(settings, DAY)
    assert after["event_id"].equals(before["event_id"]) and after["risk_rank"].equals(before["risk_rank"])
    assert np.abs(after["risk_score"].to_numpy() - before["risk_score"].to_numpy()).max() < 1e-6


def _read_scores(settings, day):
    from pipeline import db

    engine = db.make_engine(settings.scores_db_url)
    try:
        return db.read_scores(engine, day, day).sort("event_id")
    finally:
        engine.dispose()


@pytest.mark.slow
def test_1_4_and_16_shards_give_the_same_day(home_copy, small_zone, monkeypatch) -> None:
    from pipeline import shards
    from pipeline.config import Settings
    from pipeline.registry import load_bundle, resolve_version, use_tracking
    from pipeline.score import score_day, score_events
    from pipeline.sequences import check_days, load_events
    from pipeline.validate import read_validated

    use_home(monkeypatch, home_copy, small_zone)
    monkeypatch.setenv("FRAUDSEQ_ALERT_BUDGET", "15")
    scores_dir = home_copy / "shared" / "scores"
    written: dict[int, list[int]] = {}  # rows of each shard output, read just before finalise removes them
    remove = shards.remove_shard_outputs

    def read_then_remove(settings, day, pinned, n_shards) -> None:
        files = sorted(scores_dir.rglob(f"date={day}/*/*/of-{n_shards:04d}/shard-*.parquet"))
        written[n_shards] = [pl.read_parquet(f).height for f in files]
        remove(settings, day, pinned, n_shards)

    monkeypatch.setattr(shards, "remove_shard_outputs", read_then_remove)
    runs = {}
    for n in (1, 4, 16):
        monkeypatch.setenv("FRAUDSEQ_SHARDS", str(n))
        settings = Settings()
        out = score_day(settings, DAY)
        assert out["n_shards"] == n
        runs[n] = (out, _read_scores(settings, DAY))
        assert len(written[n]) == n and sum(written[n]) == out["n_transactions"]
        assert not list(scores_dir.rglob("*.parquet"))  # and then removed

    kept = read_validated(settings, "transactions", [DAY]).collect()
    base_out, base = runs[1]
    assert base.height == kept.height == base_out["n_transactions"] > 0
    assert sorted(base["risk_rank"].to_list()) == list(range(1, base.height + 1))
    assert int(base["alert"].sum()) == 15
    for n in (4, 16):
        out, scores = runs[n]
        assert out["n_alerts"] == base_out["n_alerts"]
        assert scores["event_id"].equals(base["event_id"])
        assert scores["risk_rank"].equals(base["risk_rank"])
        assert scores["alert"].equals(base["alert"])
        assert np.abs(scores["risk_score"].to_numpy() - base["risk_score"].to_numpy()).max() < 1e-6
        assert scores.filter("alert")["reasons"].equals(base.filter("alert")["reasons"])
        assert (scores.filter(~pl.col("alert"))["reasons"] == "[]").all()

    # the reference: one process, every customer's history read (no shard, no customer filter)
    settings = Settings()
    use_tracking(settings.tracking_uri)
    name, version = resolve_version(None, settings.model_name)
    data = load_events(settings, check_days(settings, [DAY], settings.history_range(DAY)))
    ref = score_events(load_bundle(name, version), data, DAY, 15, name, version).sort("event_id")
    assert ref["event_id"].equals(base["event_id"])
    assert ref["risk_rank"].equals(base["risk_rank"])
    assert np.abs(ref["risk_score"].to_numpy() - base["risk_score"].to_numpy()).max() < 1e-6
    assert ref.filter("alert")["reasons"].equals(base.filter("alert")["reasons"])


def test_load_events_customer_filter_keeps_whole_customers(validated_home, small_zone, monkeypatch) -> None:
    from pipeline.config import Settings
    from pipeline.sequences import load_events

    use_home(monkeypatch, validated_home, small_zone)
    days = [ZONE_START + timedelta(days=k) for k in range(10)]
    settings = Settings()
    full = load_events(settings, days)
    some = sorted(set(full.events["customer_id"].to_list()))[::7]
    part = load_events(settings, days, customers=some)
    assert set(part.events["customer_id"].to_list()) == set(some)
    expected = full.events.filter(pl.col("customer_id").is_in(some))
    assert part.events.equals(expected)
    assert np.array_equal(part.matrix, full.matrix[full.events["customer_id"].is_in(some).to_numpy()])
    assert load_events(settings, days, customers=[]).events.height == 0


def test_shard_outputs_are_written_atomically_and_retries_overwrite(tmp_path, monkeypatch) -> None:
    import fsspec.implementations.local as local

    from pipeline.errors import MissingInputError
    from pipeline.shards import SHARD_SCHEMA, read_shard
    from pipeline.shared import write_atomic

    url = str(tmp_path / "shared" / "x" / "shard-0000.parquet")
    first = pl.DataFrame(
        {"event_id": ["a"], "customer_id": ["c"], "event_time": [None], "logit": [0.5]}, schema=SHARD_SCHEMA
    )
    write_atomic(first, url)
    assert read_shard(url).equals(first)

    def broken_mv(self, *args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(local.LocalFileSystem, "mv", broken_mv)
    with pytest.raises(OSError):
        write_atomic(first.with_columns(pl.lit(9.0).alias("logit")), url)
    monkeypatch.undo()
    assert read_shard(url).equals(first)  # the old file is intact
    assert [p.name for p in (tmp_path / "shared" / "x").iterdir()] == ["shard-0000.parquet"]  # no temp left

    second = first.with_columns(pl.lit(-1.0).alias("logit"))
    write_atomic(second, url)  # a retried shard replaces its file
    assert read_shard(url).equals(second)
    with pytest.raises(MissingInputError):
        read_shard(str(tmp_path / "shared" / "x" / "shard-0001.parquet"))


def test_finalise_refuses_a_missing_shard_and_leaves_the_day(home_copy, small_zone, monkeypatch) -> None:
    from pipeline.config import Settings
    from pipeline.errors import MissingInputError, UsageError
    from pipeline.registry import resolve_version, use_tracking
    from pipeline.shards import finalise_day, score_shard
    from pipeline.validate import publish_day, validated_days

    use_home(monkeypatch, home_copy, small_zone)
    monkeypatch.setenv("FRAUDSEQ_SHARED_URL", f"file://{home_copy}/elsewhere")
    settings = Settings()
    for day in validated_days(settings.model_copy(update={"shared_url": None})):
        publish_day(settings, day)  # scoring reads validated days from the shared URL too
    use_tracking(settings.tracking_uri)
    pinned = resolve_version(None, settings.model_name)
    outs = [score_shard(settings, DAY, k, 4, pinned) for k in (0, 1, 3)]
    assert all(o["path"].startswith("file://") and o["path"].endswith(".parquet") for o in outs)
    assert (home_copy / "elsewhere" / "scores").is_dir()
    with pytest.raises(MissingInputError, match="shard-0002"):
        finalise_day(settings, DAY, pinned, 4)
    assert not (home_copy / "scores.duckdb").exists() or _read_scores(settings, DAY).height == 0
    with pytest.raises(UsageError):
        score_shard(settings, DAY, 4, 4, pinned)
    written = sorted((home_copy / "elsewhere" / "scores").rglob("shard-*.parquet"))
    assert len(written) == 3  # a failed finalise leaves the outputs, for its retry
    last = score_shard(settings, DAY, 2, 4, pinned)
    out = finalise_day(settings, DAY, pinned, 4)
    # the day is written: its outputs, and the folders they alone filled, are gone
    assert not any(path.exists() for path in written)
    assert list((home_copy / "elsewhere" / "scores").iterdir()) == []
    with pytest.raises(MissingInputError, match="shard-0000"):  # run again, it needs its shards again
        finalise_day(settings, DAY, pinned, 4)
    scores = _read_scores(settings, DAY)
    assert out["n_transactions"] == scores.height == sum(o["n_transactions"] for o in [*outs, last])
    in_shard_2 = [shard_of(c, 4) == 2 for c in scores["customer_id"].to_list()]
    assert sum(in_shard_2) == last["n_transactions"]


def test_split_history_gives_each_shard_exactly_its_customers_events(
    validated_home, small_zone, monkeypatch
) -> None:
    from features.events import INPUT_COLUMNS
    from pipeline.config import Settings
    from pipeline.errors import UsageError
    from pipeline.sequences import check_days, load_events
    from pipeline.shards import day_customers, split_history
    from pipeline.validate import read_validated

    use_home(monkeypatch, validated_home, small_zone)
    settings = Settings()
    days = check_days(settings, [DAY], settings.history_range(DAY))
    customers = day_customers(settings, DAY)
    n = 3
    with split_history(settings, days, DAY, n) as split:
        folders = list(validated_home.glob(f"split-{DAY}-*"))
        assert len(folders) == 1 and any(folders[0].rglob("*.parquet"))
        for log in ("transactions", "logins"):
            every = read_validated(settings, log, days).collect()
            seen = 0
            for k in range(n):
                mine = [c for c in customers if shard_of(c, n) == k]
                assert split.customers[k] == mine
                got = split.frames(k)[0 if log == "transactions" else 1].collect()
                want = every.filter(pl.col("customer_id").is_in(pl.Series(mine).implode())).select(
                    INPUT_COLUMNS[log]
                )
                assert got.columns == list(INPUT_COLUMNS[log])
                assert got.sort("event_id").equals(want.sort("event_id"))
                seen += got.height
            # customers without a transaction on DAY are dropped, as the scan's filter drops them
            assert seen == every.filter(pl.col("customer_id").is_in(pl.Series(customers).implode())).height
            assert seen < every.height
        mine = [c for c in customers if shard_of(c, n) == 1]
        via_split = load_events(settings, days, frames=split.frames(1))
        via_scan = load_events(settings, days, customers=mine)
        assert via_split.events.equals(via_scan.events)
        assert np.array_equal(via_split.matrix, via_scan.matrix)
        with pytest.raises(UsageError):
            split.frames(n)
    assert not list(validated_home.glob(f"split-{DAY}-*"))  # removed on exit

    with pytest.raises(RuntimeError, match="boom"), split_history(settings, days, DAY, n):
        raise RuntimeError("boom")
    assert not list(validated_home.glob(f"split-{DAY}-*"))  # and when scoring fails


def test_score_shard_refuses_a_split_made_for_another_shard_count(home_copy, small_zone, monkeypatch) -> None:
    from pipeline.config import Settings
    from pipeline.errors import UsageError
    from pipeline.registry import resolve_version, use_tracking
    from pipeline.sequences import check_days
    from pipeline.shards import score_shard, split_history

    use_home(monkeypatch, home_copy, small_zone)
    settings = Settings()
    use_tracking(settings.tracking_uri)
    pinned = resolve_version(None, settings.model_name)
    days = check_days(settings, [DAY], settings.history_range(DAY))
    with split_history(settings, days, DAY, 2) as split, pytest.raises(UsageError, match="split into 2"):
        score_shard(settings, DAY, 0, 4, pinned, days=days, split=split)


def test_a_shard_read_by_hash_scores_only_its_customers(home_copy, small_zone, monkeypatch) -> None:
    """Customers picked by stored hash: any customer the hash test lets through is never scored."""
    import pipeline.shards as shards
    from features.hashing import in_shard
    from pipeline.config import Settings
    from pipeline.registry import load_bundle, resolve_version, use_tracking
    from pipeline.sequences import check_days

    use_home(monkeypatch, home_copy, small_zone)
    settings = Settings()
    use_tracking(settings.tracking_uri)
    bundle = load_bundle(*resolve_version(None, settings.model_name))
    days = check_days(settings, [DAY], settings.history_range(DAY))
    mine = shards.day_customers(settings, DAY, in_shard(1, 2))[::3]  # some of shard 1's customers
    by_id = shards.shard_logits(settings, bundle, days, DAY, mine)
    # a hash test that lets every customer of the range through, as a collision would let one
    monkeypatch.setattr(shards, "of_customers", lambda customers: pl.lit(True))
    by_hash = shards.shard_logits(settings, bundle, days, DAY, mine, where=in_shard(1, 2))
    assert by_id.height > 0 and set(by_id["customer_id"].to_list()) <= set(mine)
    assert by_hash.sort("event_id").drop(shards.FEATURES).equals(by_id.sort("event_id").drop(shards.FEATURES))


def test_a_scoring_run_lists_the_validated_days_once(home_copy, small_zone, monkeypatch) -> None:
    """score_day's shards, reasons and report share one view of which days passed validation:
    each folder listing and each validation report is read once per run, not once per read."""
    from pipeline import shared
    from pipeline.config import Settings
    from pipeline.score import score_day

    use_home(monkeypatch, home_copy, small_zone)
    monkeypatch.setenv("FRAUDSEQ_SHARDS", "4")
    listed: list[tuple[str, int]] = []
    read: list[str] = []
    list_files, read_existing = shared.list_files, shared.read_existing

    def counting_list(url: str, depth: int = 1) -> list[str]:
        listed.append((url, depth))
        return list_files(url, depth)

    def counting_read(urls: list[str]) -> list[bytes | None]:
        read.extend(urls)
        return read_existing(urls)

    monkeypatch.setattr(shared, "list_files", counting_list)
    monkeypatch.setattr(shared, "read_existing", counting_read)
    out = score_day(Settings(), DAY)
    assert out["n_transactions"] > 0 and out["n_alerts"] > 0  # shards, reasons and report all read
    validation = [u for u in listed if "/validated/" in u[0] or u[0].endswith("/reports/validation")]
    assert {u[0].rsplit("/", 1)[-1] for u in validation} >= {"transactions", "logins", "validation"}
    assert len(validation) == len(set(validation))
    reports = [u for u in read if "/reports/validation/" in u]
    assert len(reports) > 20 and len(reports) == len(set(reports))


def test_inside_a_view_the_validated_days_stay_as_first_read(validated_home, tmp_path, monkeypatch) -> None:
    """A day that fails validation again mid-run is still read by the rest of that run (every
    shard sees the same history); the next view, or a read outside any, sees the new state."""
    import json
    import shutil

    from pipeline.config import Settings
    from pipeline.validate import one_view_of_validated_days, read_validated, report_path, validated_days

    home = tmp_path / "home"
    shutil.copytree(validated_home, home)
    use_home(monkeypatch, home)
    settings = Settings()
    day = ZONE_START + timedelta(days=3)
    before = validated_days(settings)
    assert day in before
    n_rows = read_validated(settings, "transactions", [day]).collect().height
    assert n_rows > 0
    path = report_path(settings, day)
    with one_view_of_validated_days():
        assert validated_days(settings) == before
        path.write_text(json.dumps({**json.loads(path.read_text()), "status": "failed"}))
        with one_view_of_validated_days():  # a block inside a block shares the outer view
            assert validated_days(settings) == before
            assert read_validated(settings, "transactions", [day]).collect().height == n_rows
    assert validated_days(settings) == [d for d in before if d != day]
    assert read_validated(settings, "transactions", [day]).collect().height == 0
    with one_view_of_validated_days():
        assert day not in validated_days(settings)


@pytest.mark.parametrize("where", ["home", "memory"])
def test_a_pin_removes_staged_copies_no_run_pinned_for_a_week(tmp_path, where) -> None:
    """``prune_staged``: a copy is kept while some run pinned it in the last STAGED_KEEP_DAYS."""
    import fsspec

    from pipeline import shared
    from pipeline.config import Settings
    from pipeline.registry import STAGED_KEEP_DAYS, prune_staged

    shared_url = None if where == "home" else f"memory://staged-{tmp_path.name}"
    settings = Settings(home=tmp_path / "home", shared_url=shared_url)
    root = f"{settings.shared_location}/models"
    now = datetime(2026, 3, 1, tzinfo=timezone.utc)

    def stage(name: str, pinned_days_ago: float | None) -> str:
        url = f"{root}/{name}/0123456789abcdef"
        shared.put_atomic(b"{}", f"{url}/manifest.json")
        if pinned_days_ago is not None:
            shared.put_atomic(b"x", f"{url}/pinned")
            stamp = (now - timedelta(days=pinned_days_ago)).timestamp()
            fs, path = fsspec.core.url_to_fs(f"{url}/pinned")
            if where == "home":
                os.utime(path, (stamp, stamp))
            else:
                fs.store[path].modified = datetime.fromtimestamp(stamp, timezone.utc)
        return url

    current = stage("m/version=9", STAGED_KEEP_DAYS + 30)  # the one being pinned: always kept
    recent = stage("m/version=8", STAGED_KEEP_DAYS - 0.5)
    stale = stage("m/version=7", STAGED_KEEP_DAYS + 0.5)
    other = stage("other-model/version=1", STAGED_KEEP_DAYS + 1)
    unpinned = stage("m/version=6", None)  # staged before pins were timed: by its manifest (now)
    half = f"{root}/m/version=5/fedcba9876543210"
    shared.put_atomic(b"w", f"{half}/weights.pt")  # no manifest: a stage cut short, kept

    assert prune_staged(settings, keep=current, now=now) == sorted([stale, other])
    left = [p.rsplit("/", 1)[0] for p in shared.list_files(root, depth=4)]
    kept = {u.removeprefix(root) for u in (current, recent, unpinned, half)}
    assert {p[p.index("/models") + len("/models") :] for p in left} == kept
    assert prune_staged(settings, keep=current, now=now) == []  # nothing more to remove


def test_a_staged_bundle_scores_as_the_registry_s_and_is_checked_before_use(
    home_copy, small_zone, monkeypatch
) -> None:
    """The copy a DAG run stages for its workers: the registry's bytes, named by their digest."""
    from pipeline.config import Settings
    from pipeline.errors import MissingInputError
    from pipeline.registry import load_bundle, load_staged, resolve_version, stage_bundle, use_tracking

    use_home(monkeypatch, home_copy, small_zone)
    settings = Settings()
    use_tracking(settings.tracking_uri)
    pinned = resolve_version(None, settings.model_name)
    url = stage_bundle(settings, *pinned)
    assert url.startswith(f"{settings.shared_location}/models/{pinned[0]}/version={pinned[1]}/")
    folder = home_copy / "shared" / url.removeprefix(f"{settings.shared_location}/")
    written = {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name != "pinned"}
    assert {"manifest.json", "bundle.json", "weights.pt"} <= set(written)
    pinned_at = (folder / "pinned").read_text()

    x = np.random.default_rng(0).normal(size=(64, 32, 30)).astype(np.float32)
    lengths = np.full(64, 32, dtype=np.int64)
    from_registry = load_bundle(*pinned)
    x = x[:, :, : len(from_registry.normaliser.feature_names)]
    np.testing.assert_array_equal(
        load_staged(url, pinned).logits(x, lengths), from_registry.logits(x, lengths)
    )
    # staged again (the next night): the same URL, nothing rewritten but the time of the pin
    assert stage_bundle(settings, *pinned) == url
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name != "pinned"} == written
    assert (folder / "pinned").read_text() > pinned_at

    with pytest.raises(MissingInputError, match="not the pinned"):
        load_staged(url, (pinned[0], str(int(pinned[1]) + 1)))
    weights = (folder / "weights.pt").read_bytes()
    (folder / "weights.pt").write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    with pytest.raises(MissingInputError, match="weights.pt is missing or differs"):
        load_staged(url, pinned)
    assert stage_bundle(settings, *pinned) == url  # the next pin repairs the copy
    load_staged(url, pinned)
    manifest = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(manifest.replace('"model_version"', '"model_version" '))
    with pytest.raises(MissingInputError, match="not the one staged there"):
        load_staged(url, pinned)  # a manifest rewritten to match other files
    (folder / "manifest.json").unlink()
    with pytest.raises(MissingInputError, match="no manifest.json"):
        load_staged(url, pinned)
