"""pipeline.heap: a batch process collects its reference cycles less often."""

from __future__ import annotations

import gc

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.heap import BATCH_THRESHOLDS, tune_collector

from .conftest import use_home

CPYTHON_DEFAULT = (700, 10, 10)


def _full_collections_while_building(n_objects: int) -> int:
    """Full collections CPython runs while ``n_objects`` long-lived dicts are built.

    The test session's own objects are frozen meanwhile: a full collection runs only once the
    objects that survived since the last one are a quarter of those it kept, and the session
    keeps millions.
    """
    gc.freeze()
    gc.collect()  # the last full collection then kept none
    try:
        before = gc.get_stats()[2]["collections"]
        kept = [{"i": i} for i in range(n_objects)]
        after = gc.get_stats()[2]["collections"]
        del kept
    finally:
        gc.unfreeze()
    return after - before


def test_tune_collector_sets_the_batch_thresholds_and_returns_the_old_ones() -> None:
    gc.set_threshold(*CPYTHON_DEFAULT)
    assert tune_collector() == CPYTHON_DEFAULT
    assert gc.get_threshold() == BATCH_THRESHOLDS


def test_a_large_long_lived_heap_sets_off_fewer_full_collections() -> None:
    """What a scoring process does when it imports its stack: many objects that all survive."""
    gc.set_threshold(*CPYTHON_DEFAULT)
    default = _full_collections_while_building(500_000)
    tune_collector()
    tuned = _full_collections_while_building(500_000)
    assert default >= 3
    assert tuned < default


def test_every_cli_command_runs_with_the_batch_thresholds(tmp_path, monkeypatch) -> None:
    use_home(monkeypatch, tmp_path / "home")
    gc.set_threshold(*CPYTHON_DEFAULT)
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert gc.get_threshold() == BATCH_THRESHOLDS
