"""The bench suite's pieces: reference implementations agree with production, and the report is well formed.

No timing is asserted anywhere: figures depend on the machine and its neighbours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.report import TARGETS, markdown_table, render_markdown, render_table, status
from bench.rows import nominal_flops, pandas_windows
from features.windows import Normaliser, _gather_rowwise, gather_windows

ROOT = Path(__file__).resolve().parents[1]


def starts_of(customer: np.ndarray) -> np.ndarray:
    first = np.ones(len(customer), dtype=bool)
    first[1:] = customer[1:] != customer[:-1]
    idx = np.flatnonzero(first)
    return idx[np.cumsum(first) - 1]


@pytest.mark.parametrize("window", [1, 4, 8])
def test_gather_windows_matches_the_pandas_reference_and_the_row_by_row_gather(window: int) -> None:
    rng = np.random.default_rng(3)
    customer = np.sort(rng.integers(0, 7, size=60))  # short and long customers, some shorter than W
    matrix = rng.standard_normal((60, 5)).astype(np.float32)
    starts = starts_of(customer)
    targets = np.array([0, 1, 2, 5, 17, 33, 59, 2, 0])  # rows < W-1, repeats, unsorted
    x, lengths = gather_windows(matrix, starts, targets, window)
    ref, ref_len = pandas_windows(customer, matrix, targets, window)
    assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape == (len(targets), window, 5)
    np.testing.assert_array_equal(x, ref)
    np.testing.assert_array_equal(lengths, ref_len)
    np.testing.assert_array_equal(x, _gather_rowwise(matrix, starts, targets, window))
    # the target is always the last position, and padding is exactly zero
    np.testing.assert_array_equal(x[:, -1], matrix[targets])
    for i, n in enumerate(lengths):
        assert not x[i, : window - n].any()


def test_gather_windows_on_a_matrix_shorter_than_the_window_and_on_no_targets() -> None:
    matrix = np.arange(6, dtype=np.float32).reshape(3, 2)
    starts = np.zeros(3, dtype=np.int64)
    x, lengths = gather_windows(matrix, starts, np.array([2, 0]), 4)
    np.testing.assert_array_equal(lengths, [3, 1])
    np.testing.assert_array_equal(x[0], [[0, 0], [0, 1], [2, 3], [4, 5]])
    np.testing.assert_array_equal(x[1], [[0, 0], [0, 0], [0, 0], [0, 1]])
    empty, no_len = gather_windows(matrix, starts, np.array([], dtype=np.int64), 4)
    assert empty.shape == (0, 4, 2) and len(no_len) == 0


def test_in_place_window_scaling_equals_the_copying_one_and_keeps_padding_zero() -> None:
    rng = np.random.default_rng(0)
    names = ("log_amount", "is_real")
    norm = Normaliser.fit(rng.standard_normal((50, 2)) * 3 + 1, names)
    x = rng.standard_normal((4, 3, 2)).astype(np.float32)
    lengths = np.array([3, 1, 2, 3])
    copied = norm.transform_windows(x, lengths)
    assert not np.shares_memory(copied, x)
    inplace = norm.transform_windows(x.copy(), lengths, inplace=True)
    np.testing.assert_array_equal(copied, inplace)
    assert not copied[1, :2].any() and not copied[2, 0].any()
    with pytest.raises(ValueError, match="float32"):
        norm.transform_windows(x.astype(np.float64), lengths, inplace=True)


def test_nominal_flops_count_every_lstm_and_linear_layer() -> None:
    from pipeline.model import SequenceModelConfig

    cfg = SequenceModelConfig(n_features=10, hidden=4, layers=2, bidirectional=True, head_hidden=3)
    lstm = 2 * 5 * 4 * 4 * (10 + 4) + 2 * 5 * 4 * 4 * (8 + 4)  # directions x T x gates x H x (in + H)
    head = 3 * 8 * 3 + 3
    assert nominal_flops(cfg, 5) == 2 * (lstm + head)
    gru = SequenceModelConfig(
        n_features=10, hidden=4, layers=1, bidirectional=False, head_hidden=3, cell="gru"
    )
    assert nominal_flops(gru, 5) == 2 * (5 * 3 * 4 * 14 + 3 * 4 * 3 + 3)
    projected = SequenceModelConfig(
        n_features=10, hidden=4, layers=1, bidirectional=True, head_hidden=3, embed=6
    )
    # the projection (T x F x E), then the recurrence on E inputs
    assert nominal_flops(projected, 5) == 2 * (5 * 10 * 6 + 2 * 5 * 4 * 4 * (6 + 4) + 3 * 8 * 3 + 3)


def fake_row(name: str, value: float, ref: float, unit: str = "x/s", **details: object) -> dict:
    return {
        "name": name,
        "label": name.replace("_", " "),
        "value": value,
        "unit": unit,
        "ref_value": ref,
        "ref_unit": unit,
        "reference": "ref",
        "run_seconds": [1.0, 1.1, 0.9],
        "details": details,
        "peak_rss_mb": 100.0,
    }


def test_targets_are_judged_from_the_figures() -> None:
    assert status(fake_row("windows", 21, 1)) == "met"
    assert status(fake_row("windows", 19, 1)) == "not met"
    assert status(fake_row("model", 40, 100, unit="GFLOP/s")) == "not met"
    assert status(fake_row("e2e_duckdb", 31_000, 1)) == "met"
    small = fake_row("daily", 10.0, 180.0, unit="s", transactions=5_000)
    assert status(small).startswith("not judged")
    big = fake_row("daily", 170.0, 180.0, unit="s", transactions=1_000_000)
    assert status(big) == "met"
    assert status(dict(big, peak_rss_mb=5000.0)) == "not met"
    assert status({"name": "e2e_postgres", "error": "exit 1: no server"}) == "not run"
    assert set(TARGETS) <= {
        "windows",
        "model",
        "model_bf16",
        "model_onnx",
        "e2e_duckdb",
        "e2e_postgres",
        "daily",
    }


def test_bf16_is_judged_only_with_enough_frauds_and_needs_the_same_ap() -> None:
    acc = {"ap_fp32": 0.8, "ap_bf16": 0.798, "ap_abs_diff": 0.002, "held_out_frauds": 2500}
    fast = fake_row("model_bf16", 60, 100, unit="GFLOP/s", accuracy=acc)
    assert status(fast).startswith("met (AP 0.8000 fp32 vs 0.7980 bf16 on 2,500 frauds")
    assert status(fake_row("model_bf16", 40, 100, unit="GFLOP/s", accuracy=acc)).startswith("not met")
    drifted = dict(acc, ap_bf16=0.79, ap_abs_diff=0.01)
    assert status(fake_row("model_bf16", 60, 100, unit="GFLOP/s", accuracy=drifted)).startswith("not met")
    few = dict(acc, held_out_frauds=300)
    assert status(fake_row("model_bf16", 60, 100, unit="GFLOP/s", accuracy=few)).startswith("not judged")
    # the ONNX Runtime row is judged the same way, on its own AP
    onnx = {"variant": "onnx", "ap_fp32": 0.8, "ap_onnx": 0.8, "ap_abs_diff": 0.0, "held_out_frauds": 2500}
    assert status(fake_row("model_onnx", 55, 100, unit="GFLOP/s", accuracy=onnx)).startswith(
        "met (AP 0.8000 fp32 vs 0.8000 onnx on 2,500 frauds"
    )
    assert status(fake_row("model_onnx", 45, 100, unit="GFLOP/s", accuracy=onnx)).startswith("not met")


def test_end_to_end_is_judged_with_the_report_and_notes_the_rate_up_to_the_commit() -> None:
    row = fake_row("e2e_duckdb", 25_000, 40_000, unit="tx/s", to_commit_tx_per_s=31_000)
    assert status(row) == "not met (31,000 tx/s up to the commit)"
    earlier = fake_row("e2e_postgres", 30_500, 40_000, unit="tx/s")  # a row from before the detail
    assert status(earlier) == "met"


def test_table_and_markdown_have_one_well_formed_line_per_row() -> None:
    rows = [
        fake_row("windows", 2e6, 5e4),
        fake_row("generation", 1e6, 2e6),
        {"name": "daily", "error": "exit 1: x"},
    ]
    table = render_table(rows).splitlines()
    assert len(table) == 2 + len(rows)
    md = markdown_table(rows).splitlines()
    assert len(md) == 2 + len(rows)
    assert all(line.count("|") == md[0].count("|") for line in md)
    assert "40.00×" in md[2] and "met" in md[2]
    spec = {"size": "quick", "runs": 3, "pg_admin": "host=x"}
    rows[0]["details"].update(row_by_row_gather_windows_per_s=2e5, materialised_windows_per_s=8e5)
    base = [dict(rows[1], value=5e5)]
    doc = render_markdown(
        rows, spec, {"cpu": "test"}, "python -m bench --quick", base, "## Notes\n\nhand text"
    )
    assert doc.startswith("# Performance") and "python -m bench --quick" in doc and "host=x" not in doc
    readme = doc.split("## For the README")[1].split("##")[0]
    assert readme.count("\n| ") == 1 + len(rows) and "**met**" in readme and "not run" in readme
    assert "| 4.00× |" in doc  # the block gather vs the row-by-row one, measured in the same run
    assert "| 2.50× |" in doc  # batch by batch (the row's value) vs all windows in one array
    assert "| 2.00× |" in doc  # this run's generation vs the baseline run's
    assert "hand text" in doc


@pytest.mark.slow
def test_quick_bench_runs_and_writes_the_report(tmp_path: Path) -> None:
    """``python -m bench --quick`` on a tiny zone: the table prints and the markdown is complete."""
    out, raw = tmp_path / "performance.md", tmp_path / "rows.json"
    sizes = ["--set", "gen_customers=40", "--set", "gen_days=3", "--set", "zone_customers=30"]
    sizes += ["--set", "zone_days=6", "--set", "model_windows=256", "--set", "model_batch=128"]
    cmd = [sys.executable, "-m", "bench", "--quick", "--rows", "generation,windows,model", "--runs", "2"]
    cmd += [*sizes, "--workdir", str(tmp_path / "work"), "--out", str(out), "--json", str(raw)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "window building" in proc.stdout and "GFLOP/s" in proc.stdout
    doc = out.read_text()
    section = doc.split("\n## Table\n")[1].split("\n## ")[0]
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 3 and all(line.count("|") == table[0].count("|") for line in table)
    results = json.loads(raw.read_text())["rows"]
    assert [r["name"] for r in results] == ["generation", "windows", "model"]
    for r in results:
        assert "error" not in r, r
        assert r["value"] > 0 and r["ref_value"] > 0 and r["peak_rss_mb"] > 0
        assert len(r["run_seconds"]) == 2
    assert results[1]["details"]["identical_to_reference"] is True
    readme = doc.split("## For the README")[1].split("\n## ")[0]
    assert "window building" in readme and ("**met**" in readme or "**not met**" in readme)
    from pipeline.train import TrainOptions

    assert results[2]["details"]["model"]["hidden"] == TrainOptions().hidden  # the production model
    assert results[2]["details"]["model"]["layers"] == TrainOptions().layers


def test_scale_disk_counts_hard_links_once_and_the_table_has_a_line_per_size(tmp_path: Path) -> None:
    from bench.scale import disk_mb, render

    (tmp_path / "a").write_bytes(b"x" * 1_000_000)
    os.link(tmp_path / "a", tmp_path / "b")
    (tmp_path / "c").write_bytes(b"y" * 500_000)
    assert disk_mb(tmp_path) == 1.5
    ok = {
        "value": 20.0,
        "peak_rss_mb": 900.0,
        "details": {
            "transactions": 10,
            "logins": 20,
            "shards": 32,
            "score_amp": "auto",
            "scored_in_bf16": False,
        },
    }
    rows = [
        {
            "events": 2_000_000,
            "generate_s": 5,
            "validate_s": None,
            "landing_mb": 1,
            "home_mb": 1,
            "daily": ok,
        },
        {
            "events": 4_000_000,
            "generate_s": None,
            "validate_s": 9,
            "landing_mb": 2,
            "home_mb": 2,
            "daily": {"error": "exit 137: killed"},
        },
    ]
    doc = render(rows, "python -m bench.scale", {"cpu": "x", "cores": 2}, 31)
    table = [line for line in doc.splitlines() if line.startswith("| ")]
    assert len(table) == 3 and "| 10.00 |" in table[1] and "failed: exit 137" in table[2]
    assert "| 5 s | reused |" in table[1] and "| reused | 9 s |" in table[2]
    # the precision line says what ran: "auto" scored in fp32 on a CPU without bf16
    assert "32 customer shards, in fp32 (`FRAUDSEQ_SHARDS`, `FRAUDSEQ_SCORE_AMP=auto`)" in doc


@pytest.mark.slow
def test_gpu_bench_runs_on_the_cpu_and_its_checks_compare_like_with_like(tmp_path: Path) -> None:
    """``python -m bench.gpu`` at a tiny size on the CPU: every part runs and the JSON is complete.

    On the CPU the "device" and the CPU reference are the same path, so their logits must be
    identical: a check that would catch the reference scoring another model or other windows.
    """
    import torch

    from bench import gpu
    from pipeline.registry import SCORE_BATCH

    spec = dict(gpu.SIZES["quick"], model_windows=300, train_windows=600, runs=1)
    cpu = torch.device("cpu")
    model = gpu.model_compute(spec, cpu)
    assert model["windows"] == 300 and model["batch"] == SCORE_BATCH and model["kernels"] == {}
    for name in ("fp32", "bf16"):
        assert model[name]["predict_logits_gflops"] > 0 and model[name]["on_device_windows_per_s"] > 0
    train = gpu.training(spec, cpu)
    assert set(train) == {"train_windows", "epochs"} | {
        f"batch_{b}_{p}" for b in (512, 4096) for p in ("fp32", "bf16")
    }
    assert all(
        len(v["per_epoch"]) == spec["train_epochs"] for k, v in train.items() if k.startswith("batch_")
    )
    acc = gpu.accuracy(spec, cpu)
    assert acc["held_out_frauds"] > 0 and acc["held_out_transactions"] > acc["held_out_frauds"]
    fp32 = acc["trained_fp32"]
    assert fp32["ap"]["fp32"] == fp32["ap"]["cpu_fp32"] and fp32["max_abs_logit_diff_cpu"] == 0.0
    assert 0 < fp32["ap"]["fp32"] <= 1 and set(acc["trained_bf16"]["ap"]) == {"fp32", "bf16"}
    text = gpu.table(
        {"matmul_tflops": gpu.matmul_ceilings(spec, cpu), "model": model, "training": train, "accuracy": acc}
    )
    assert "of fp32 matmul" in text and "batch_4096_bf16" in text and "trained_bf16" in text
