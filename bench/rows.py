"""One benchmark row per function; ``python -m bench.rows NAME --spec JSON --out FILE`` runs one.

Each row runs in its own process (started by ``bench.__main__``), so the peak RSS that the
parent reads with ``os.wait4`` is that row's whole process and nothing else. A row returns a
dict: its figure (median of ``runs`` repeats) and a reference measured in the same process.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench import setup

Spec = dict[str, Any]
ROWS: dict[str, Callable[[Spec], dict[str, Any]]] = {}


def row(name: str) -> Callable[[Callable[[Spec], dict[str, Any]]], Callable[[Spec], dict[str, Any]]]:
    def register(fn: Callable[[Spec], dict[str, Any]]) -> Callable[[Spec], dict[str, Any]]:
        ROWS[name] = fn
        return fn

    return register


def timed(fn: Callable[[], Any], runs: int, warmup: int = 0) -> tuple[list[float], list[float], Any]:
    """Wall and CPU seconds of ``runs`` calls of ``fn`` (after ``warmup`` untimed ones), and its last result."""
    wall, cpu, out = [], [], None
    for _ in range(warmup):
        fn()
    for _ in range(runs):
        began, began_cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    return wall, cpu, out


def rate(count: float, seconds: list[float]) -> float:
    return count / max(statistics.median(seconds), 1e-12)


def result(
    label: str,
    value: float,
    unit: str,
    runs: list[float],
    reference: str,
    ref_value: float | None,
    ref_unit: str | None = None,
    **details: Any,
) -> dict[str, Any]:
    return {
        "label": label,
        "value": value,
        "unit": unit,
        "run_seconds": [round(s, 4) for s in runs],
        "reference": reference,
        "ref_value": ref_value,
        "ref_unit": ref_unit or unit,
        "details": details,
    }


# ---------------------------------------------------------------- generation


@row("generation")
def generation(spec: Spec) -> dict[str, Any]:
    """``generate_landing`` (frames and files) vs building the same frames in memory only."""
    from pipeline.generate import generate_frames, generate_landing

    c, d, runs = spec["gen_customers"], spec["gen_days"], spec["runs"]
    events = 0

    def whole() -> None:
        nonlocal events
        with tempfile.TemporaryDirectory(dir=spec["workdir"]) as out:
            s = generate_landing(Path(out) / "landing", c, d, setup.START, seed=1)
            events = s.n_transactions + s.n_logins

    wall, cpu, _ = timed(whole, runs)
    ref, _, _ = timed(lambda: generate_frames(c, d, setup.START, seed=1), runs)
    return result(
        "event generation (files written)",
        rate(events, wall),
        "events/s",
        wall,
        "same frames, in memory only",
        rate(events, ref),
        events=events,
        customers=c,
        days=d,
        events_per_cpu_s=rate(events, cpu),
    )


# ---------------------------------------------------------------- validation


def _landing_files(landing: Path, days: list[Any]) -> list[Path]:
    return sorted(
        f
        for log in ("transactions", "logins", "labels")
        for d in days
        for f in (landing / log / f"date={d}").glob("*")
    )


@row("validation")
def validation(spec: Spec) -> dict[str, Any]:
    """``validate_day`` over the zone's days into a fresh home vs ``pl.read_parquet`` of the same files."""
    import polars as pl

    from pipeline.validate import validate_day

    landing = Path(spec["zone"]) / "landing"
    days = [setup.START + timedelta(days=k) for k in range(spec["validation_days"])]
    files = _landing_files(landing, days)
    rows = sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files)

    def run() -> None:
        home = Path(tempfile.mkdtemp(dir=spec["workdir"]))
        try:
            settings = setup.settings_for(home, landing)
            for d in days:
                validate_day(settings, d)
        finally:
            shutil.rmtree(home, ignore_errors=True)

    run()  # warm-up: imports and GX's first context are not per-row costs
    wall, cpu, _ = timed(run, spec["runs"])
    ref, _, _ = timed(lambda: [pl.read_parquet(f) for f in files], spec["runs"])
    return result(
        "validation (GX + quarantine + atomic write)",
        rate(rows, wall),
        "rows/s",
        wall,
        "plain Polars read of the same files",
        rate(rows, ref),
        rows=rows,
        days=len(days),
        files=len(files),
        rows_per_cpu_s=rate(rows, cpu),
    )


# ---------------------------------------------------------------- windows


def pandas_windows(
    customer: np.ndarray, matrix: np.ndarray, targets: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """The reference: the same left-padded windows with pandas ``groupby().shift()``, no row loops.

    Shift k of the per-customer feature frame is the event k steps back; stacking shifts
    W-1..0 gives each row's window, missing (before the customer's first event) as zeros.
    """
    import pandas as pd

    frame = pd.DataFrame(matrix)
    grouped = frame.groupby(pd.Series(customer), sort=False)
    out = np.empty((len(targets), window, matrix.shape[1]), dtype=np.float32)
    present = np.empty((len(targets), window), dtype=bool)
    for pos, k in enumerate(range(window - 1, -1, -1)):  # a loop over W shifts, not over rows
        shifted = grouped.shift(k).to_numpy(dtype=np.float32)[targets]
        present[:, pos] = ~np.isnan(shifted[:, 0])
        out[:, pos] = np.nan_to_num(shifted, nan=0.0)
    return out, present.sum(axis=1)


@row("windows")
def windows(spec: Spec) -> dict[str, Any]:
    """Windows of every transaction in the zone, batch by batch as scoring gathers them, vs pandas.

    Scoring (``ModelBundle.logits_rows``, called by every shard) never holds a day's windows at
    once: it gathers one ``model_batch`` of windows, scores it, and drops it. The row times that
    path; materialising all windows in one array (``gather_windows``) is timed beside it. Both are
    checked equal to the pandas reference, window for window.
    """
    from features.windows import WindowGatherer, _gather_rowwise, gather_windows
    from pipeline.sequences import load_events

    home = Path(spec["zone"]) / "home"
    settings = setup.settings_for(home)
    days = [setup.START + timedelta(days=k) for k in range(spec["zone_days"])]
    data = load_events(settings, days)
    rows = data.transaction_rows(days[0], days[-1])
    W = settings.window
    matrix = np.ascontiguousarray(data.matrix, dtype=np.float32)
    gatherer, batch = WindowGatherer(matrix, data.starts, W), spec["model_batch"]

    def lazily() -> int:  # what scoring does: one batch of windows at a time, each dropped after use
        done = 0
        for i in range(0, len(rows), batch):
            done += len(gatherer.gather(rows[i : i + batch]))
        return done

    wall, cpu, _ = timed(lazily, spec["runs"], warmup=1)
    # a row's customer start identifies its customer in the sorted event table
    ref, ref_cpu, (x_ref, len_ref) = timed(
        lambda: pandas_windows(data.starts, matrix, rows, W), spec["runs"], warmup=1
    )
    batches = [gatherer.gather(rows[i : i + batch]) for i in range(0, len(rows), batch)]
    lazy_x = np.concatenate(batches) if batches else np.zeros((0, W, matrix.shape[1]), np.float32)
    if not (np.array_equal(lazy_x, x_ref) and np.array_equal(gatherer.lengths(rows), len_ref)):
        raise AssertionError("batch-by-batch windows and the pandas reference disagree")
    del batches, lazy_x
    whole, whole_cpu, (x, lengths) = timed(
        lambda: gather_windows(matrix, data.starts, rows, W), spec["runs"], warmup=1
    )
    if not (np.array_equal(x, x_ref) and np.array_equal(lengths, len_ref)):
        raise AssertionError("gather_windows and the pandas reference disagree")
    del x, x_ref
    before, before_cpu, _ = timed(
        lambda: _gather_rowwise(matrix, data.starts, rows, W), spec["runs"], warmup=1
    )
    return result(
        "window building (batch by batch, as scoring gathers them)",
        rate(len(rows), wall),
        "windows/s",
        wall,
        "pandas groupby + shift, same windows",
        rate(len(rows), ref),
        windows=len(rows),
        events=len(matrix),
        window=W,
        features=matrix.shape[1],
        identical_to_reference=True,
        lazy_batch=batch,
        materialised_windows_per_s=rate(len(rows), whole),
        row_by_row_gather_windows_per_s=rate(len(rows), before),
        cpu_time_based_windows_per_s={  # single-threaded numpy/pandas: steadier than wall time here
            "lazy_batches": round(rate(len(rows), cpu)),
            "pandas": round(rate(len(rows), ref_cpu)),
            "materialised": round(rate(len(rows), whole_cpu)),
            "row_by_row": round(rate(len(rows), before_cpu)),
        },
    )


# ---------------------------------------------------------------- training


@row("training")
def training(spec: Spec) -> dict[str, Any]:
    """Windows/s of each training epoch of the production architecture vs inference on the same windows."""
    from features.windows import Normaliser, gather_windows
    from pipeline.fit import FitConfig, fit_sequence_model, pick_device, predict_logits
    from pipeline.sequences import load_events
    from pipeline.train import TrainOptions

    home = Path(spec["zone"]) / "home"
    settings = setup.settings_for(home)
    days = [setup.START + timedelta(days=k) for k in range(spec["zone_days"])]
    data = load_events(settings, days)
    rows = data.transaction_rows(days[0], days[-1])
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(rows, size=min(len(rows), spec["train_windows"]), replace=False))
    scaled = Normaliser.fit(data.matrix).transform(data.matrix)
    x, lengths = gather_windows(scaled, data.starts, rows, settings.window)
    y = (rng.random(len(rows)) < 0.05).astype(np.int64)  # labels do not change the cost of an epoch
    n_val = max(len(rows) // 10, 2)
    cfg = TrainOptions().model_config(x.shape[2])
    device = pick_device()
    fit = fit_sequence_model(
        x[n_val:],
        lengths[n_val:],
        y[n_val:],
        x[:n_val],
        lengths[:n_val],
        y[:n_val],
        cfg,
        FitConfig(epochs=spec["runs"], patience=spec["runs"]),
        device=device,
        progress=False,
    )
    epochs = [h["seconds"] for h in fit.history]
    n_train = len(rows) - n_val
    ref, _, _ = timed(lambda: predict_logits(fit.model, x[n_val:], lengths[n_val:]), spec["runs"])
    return result(
        "training per epoch (AdamW, batch 512)",
        rate(n_train, epochs),
        "windows/s",
        epochs,
        "inference on the same windows",
        rate(n_train, ref),
        windows=n_train,
        epochs=len(epochs),
        device=str(device),
        model=cfg.to_dict(),
    )


# ---------------------------------------------------------------- model compute


def nominal_flops(cfg: Any, window: int) -> int:
    """2 × multiply-adds of every recurrent and linear layer for one full window of ``window`` events."""
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cfg.cell]
    width = cfg.hidden * cfg.directions
    embed = getattr(cfg, "embed", 0)
    macs = window * cfg.n_features * embed  # the per-event input projection, when there is one
    for layer in range(cfg.layers):
        n_in = (embed or cfg.n_features) if layer == 0 else width
        macs += cfg.directions * window * gates * cfg.hidden * (n_in + cfg.hidden)
    macs += 3 * width * cfg.head_hidden + cfg.head_hidden
    return 2 * macs


def interleaved(fns: dict[str, Callable[[], Any]], runs: int) -> dict[str, tuple[list[float], list[float]]]:
    """Wall and CPU seconds of each function, run in turn ``runs`` times (A B C A B C ...).

    On a shared machine the load drifts; interleaving puts every variant under the same drift.
    """
    out: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            wall, cpu, _ = timed(fn, 1)
            out[name][0].extend(wall)
            out[name][1].extend(cpu)
    return out


def production_model_inputs(n: int, window: int) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """The production architecture (seed 0, eval mode) and ``n`` random full windows for it.

    The cost of a forward pass does not depend on the values, and scoring windows are almost
    all full (30 days of history).
    """
    import torch

    from features.events import FEATURE_NAMES
    from pipeline.model import build_model
    from pipeline.train import TrainOptions

    cfg = TrainOptions().model_config(len(FEATURE_NAMES))
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    x = np.random.default_rng(0).standard_normal((n, window, cfg.n_features)).astype(np.float32)
    return cfg, net, x, np.full(n, window, dtype=np.int64)


@row("model")
def model(spec: Spec) -> dict[str, Any]:
    """Production model forward (``predict_logits``, scoring batch) on full windows: GFLOP/s vs fp32 matmul.

    Inputs are random full-length windows: scoring windows are almost all full (30 days of history),
    and the cost of a forward pass does not depend on the values. The matmul reference, the
    production batch and the former 4,096 batch are timed in turn, so they share the machine's load.
    """
    import torch

    from pipeline.fit import predict_logits

    W, batch, n = spec["window"], spec["model_batch"], spec["model_windows"]
    cfg, net, x, lengths = production_model_inputs(n, W)
    former = 4_096  # the scoring batch before pipeline.registry.SCORE_BATCH became 1,024 (2026-12-08)
    mm = 2048
    a, b = torch.randn(mm, mm), torch.randn(mm, mm)
    reps = 8
    fns = {
        "matmul": lambda: [a @ b for _ in range(reps)],
        "model": lambda: predict_logits(net, x, lengths, batch_size=batch),
        "former_batch": lambda: predict_logits(net, x, lengths, batch_size=former),
    }
    for fn in fns.values():  # warm-up
        fn()
    times = interleaved(fns, spec["runs"])
    threads = torch.get_num_threads()
    flops = nominal_flops(cfg, W) * n
    mm_flops = reps * 2 * mm**3

    def cpu_rate(count: float, name: str) -> float:  # per second of all threads busy
        return rate(count * threads, times[name][1])

    return result(
        "scoring model compute (fp32, CPU)",
        rate(flops, times["model"][0]) / 1e9,
        "GFLOP/s",
        times["model"][0],
        f"dense fp32 matmul {mm}², torch",
        rate(mm_flops, times["matmul"][0]) / 1e9,
        windows_per_s=rate(n, times["model"][0]),
        windows_per_s_at_former_batch=rate(n, times["former_batch"][0]),
        former_batch=former,
        cpu_time_based={
            "model_gflops": round(cpu_rate(flops, "model") / 1e9, 1),
            "former_batch_gflops": round(cpu_rate(flops, "former_batch") / 1e9, 1),
            "matmul_gflops": round(cpu_rate(mm_flops, "matmul") / 1e9, 1),
        },
        matmul_run_seconds=[round(t, 3) for t in times["matmul"][0]],
        former_batch_run_seconds=[round(t, 3) for t in times["former_batch"][0]],
        windows=n,
        batch=batch,
        window=W,
        threads=threads,
        nominal_mflop_per_window=nominal_flops(cfg, W) / 1e6,
        model=cfg.to_dict(),
    )


# ---------------------------------------------------------------- bf16 scoring on CPU


def _events(frames: dict[str, Any]) -> tuple[Any, np.ndarray, np.ndarray]:
    """Event table, raw feature matrix and customer starts of generated (already clean) frames."""
    from features.events import build_event_table, customer_starts, feature_matrix

    events = build_event_table(frames["transactions"].lazy(), frames["logins"].lazy())
    return events, feature_matrix(events), customer_starts(events)


def _transactions_after(events: Any, first: Any) -> np.ndarray:
    d = events["event_time"].dt.date()
    return np.flatnonzero(((events["source"] == 1) & (d >= first)).to_numpy())


def _truth(frames: dict[str, Any], events: Any, rows: np.ndarray) -> np.ndarray:

    truth = frames["truth"].select("event_id", "is_fraud")
    ids = events["event_id"].gather(rows).to_frame()
    return (
        ids.join(truth, on="event_id", how="left", maintain_order="left")["is_fraud"].fill_null(0).to_numpy()
    )


def accuracy_data(spec: Spec) -> dict[str, Any]:
    """Windows of two generated populations for the precision checks: train on one, hold out the other.

    The held-out population is another seed: its customers, devices and frauds were never seen.
    Every transaction after its first ``acc_context_days`` days (which are only history) is
    scored; its windows are gathered batch by batch (``test_batch``), never all at once.
    """
    from features.windows import Normaliser, WindowGatherer
    from pipeline.generate import generate_frames

    days, context = spec["acc_days"], spec["acc_context_days"]
    first = setup.START + timedelta(days=context)
    W = 32

    train = generate_frames(spec["acc_train_customers"], days, setup.START, seed=0)
    ev_tr, m_tr, st_tr = _events(train)
    rows_tr = _transactions_after(ev_tr, setup.START + timedelta(days=1))
    norm = Normaliser.fit(m_tr)
    gat_tr = WindowGatherer(norm.transform(m_tr), st_tr, W)

    test = generate_frames(spec["acc_test_customers"], days, setup.START, seed=1)
    ev_te, m_te, st_te = _events(test)
    rows_te = _transactions_after(ev_te, first)
    gat_te = WindowGatherer(norm.transform(m_te), st_te, W)

    def test_batch(idx: np.ndarray, width: int) -> np.ndarray:
        return np.ascontiguousarray(gat_te.gather(rows_te[idx])[:, W - width :])

    return {
        "x_train": gat_tr.gather(rows_tr),
        "len_train": gat_tr.lengths(rows_tr),
        "y_train": _truth(train, ev_tr, rows_tr),
        "test_batch": test_batch,
        "len_test": gat_te.lengths(rows_te),
        "y_test": _truth(test, ev_te, rows_te),
        "n_features": m_tr.shape[1],
    }


def fit_for_accuracy(spec: Spec, data: dict[str, Any], device: Any, amp: bool = False) -> Any:
    """The production architecture trained (seed 0, a few epochs) on ``data``'s training windows.

    The later 20% of the rows (by customer order) pick the epoch. ``amp``: bf16 autocast in
    training (``FitConfig.amp``, CUDA only).
    """
    import torch

    from pipeline.fit import FitConfig, fit_sequence_model
    from pipeline.train import TrainOptions

    x, lengths, y = data["x_train"], data["len_train"], data["y_train"]
    cut = int(len(y) * 0.8)
    torch.manual_seed(0)
    return fit_sequence_model(
        x[:cut], lengths[:cut], y[:cut], x[cut:], lengths[cut:], y[cut:],
        TrainOptions().model_config(data["n_features"]),
        FitConfig(epochs=spec["acc_epochs"], neg_per_pos=20.0, amp=amp),
        seed=0, device=device, progress=False,
    )  # fmt: skip


def held_out_logits(model: Any, data: dict[str, Any], device: Any, amp: bool) -> tuple[np.ndarray, float]:
    """Logits of every held-out window (batches of 16,384) and the seconds they took."""
    from pipeline.fit import predict_logits_from

    began = time.perf_counter()
    logits = predict_logits_from(model, data["test_batch"], data["len_test"], 16_384, device, amp)
    return logits, time.perf_counter() - began


def faster_path_accuracy(spec: Spec, variant: str) -> dict[str, Any]:
    """AP of fp32 torch scoring vs a faster path (``bf16`` autocast or ``onnx`` Runtime) on CPU,
    for the same production-architecture model and held-out population."""
    import torch

    from pipeline.metrics import average_precision
    from pipeline.onnx_engine import OnnxScorer, onnx_logits

    cpu = torch.device("cpu")
    data = accuracy_data(spec)
    fitted = fit_for_accuracy(spec, data, cpu)
    del data["x_train"]
    y_te = data["y_test"]
    logits, seconds = {}, {}
    logits["fp32"], seconds["fp32"] = held_out_logits(fitted.model, data, cpu, False)
    if variant == "bf16":
        logits[variant], seconds[variant] = held_out_logits(fitted.model, data, cpu, True)
    else:
        began = time.perf_counter()
        scorer = OnnxScorer(fitted.model, 32)
        logits[variant] = onnx_logits(scorer, data["test_batch"], data["len_test"], 16_384)
        seconds[variant] = time.perf_counter() - began
    ap = {k: average_precision(y_te, v) for k, v in logits.items()}
    return {
        "variant": variant,
        "held_out_transactions": len(y_te),
        "held_out_frauds": int(y_te.sum()),
        "ap_fp32": round(ap["fp32"], 5),
        f"ap_{variant}": round(ap[variant], 5),
        "ap_abs_diff": round(abs(ap["fp32"] - ap[variant]), 5),
        "max_abs_logit_diff": round(float(np.abs(logits["fp32"] - logits[variant]).max()), 5),
        "scoring_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "train_customers": spec["acc_train_customers"],
        "test_customers": spec["acc_test_customers"],
        "days": spec["acc_days"],
        "epochs_trained": fitted.best_epoch,
    }


def versus_fp32(
    spec: Spec, name: str, label: str, fast: Callable[[Any, np.ndarray, np.ndarray, int], Callable[[], Any]]
) -> dict[str, Any]:
    """A faster scoring path of the production model (``fast(net, x, lengths, batch)`` returns
    the call to time) on the model row's windows, timed in turn with torch's fp32 forward and the
    fp32 matmul reference, same nominal FLOPs; plus ``faster_path_accuracy``'s AP check."""
    import torch

    from pipeline.fit import predict_logits

    W, batch, n = spec["window"], spec["model_batch"], spec["model_windows"]
    cfg, net, x, lengths = production_model_inputs(n, W)
    cpu = torch.device("cpu")
    mm = 2048
    a, b = torch.randn(mm, mm), torch.randn(mm, mm)
    reps = 8
    fns = {
        "matmul": lambda: [a @ b for _ in range(reps)],
        name: fast(net, x, lengths, batch),
        "fp32": lambda: predict_logits(net, x, lengths, batch_size=batch, device=cpu),
    }
    outputs = {k: fn() for k, fn in fns.items()}  # warm-up, and the logits compared below
    times = interleaved(fns, spec["runs"])
    flops = nominal_flops(cfg, W) * n
    return result(
        label,
        rate(flops, times[name][0]) / 1e9,
        "GFLOP/s",
        times[name][0],
        f"dense fp32 matmul {mm}², torch",
        rate(reps * 2 * mm**3, times["matmul"][0]) / 1e9,
        fp32_gflops_same_run=round(rate(flops, times["fp32"][0]) / 1e9, 1),
        speedup_over_fp32=round(statistics.median(times["fp32"][0]) / statistics.median(times[name][0]), 2),
        max_abs_logit_diff_vs_fp32=float(np.abs(outputs[name] - outputs["fp32"]).max()),
        windows_per_s=rate(n, times[name][0]),
        accuracy=faster_path_accuracy(spec, name),
        windows=n,
        batch=batch,
        window=W,
        threads=torch.get_num_threads(),
        nominal_mflop_per_window=nominal_flops(cfg, W) / 1e6,
    )


@row("model_bf16")
def model_bf16(spec: Spec) -> dict[str, Any]:
    """The model row's forward pass in bf16 autocast on CPU (``FRAUDSEQ_SCORE_AMP=1``), see ``versus_fp32``."""
    import torch

    from pipeline.fit import cpu_bf16_supported, cpu_has_native_bf16, predict_logits

    cpu = torch.device("cpu")

    def bf16(net: Any, x: np.ndarray, lengths: np.ndarray, batch: int) -> Callable[[], Any]:
        return lambda: predict_logits(net, x, lengths, batch_size=batch, device=cpu, amp=True)

    out = versus_fp32(spec, "bf16", "scoring model compute (bf16 autocast, CPU)", bf16)
    out["details"]["cpu_bf16_instructions"] = cpu_has_native_bf16()
    out["details"]["ran_in_bf16"] = cpu_bf16_supported()  # False: oneDNN cannot run bf16 here, so fp32
    return out


@row("model_onnx")
def model_onnx(spec: Spec) -> dict[str, Any]:
    """The model row's forward pass through ONNX Runtime (``FRAUDSEQ_SCORE_ENGINE=onnx``), fp32, see
    ``versus_fp32``; the export (``OnnxScorer``) is timed apart."""
    from pipeline.onnx_engine import OnnxScorer, onnx_logits

    exported: dict[str, float] = {}

    def onnx(net: Any, x: np.ndarray, lengths: np.ndarray, batch: int) -> Callable[[], Any]:
        began = time.perf_counter()
        scorer = OnnxScorer(net, x.shape[1])
        exported["seconds"] = round(time.perf_counter() - began, 2)
        return lambda: onnx_logits(scorer, lambda idx, width: x[idx], lengths, batch)

    out = versus_fp32(spec, "onnx", "scoring model compute (ONNX Runtime fp32, CPU)", onnx)
    out["details"]["export_seconds"] = exported["seconds"]
    return out


# ---------------------------------------------------------------- end-to-end scoring


def pg_database(admin_dsn: str) -> tuple[str, Callable[[], None]]:
    """A fresh database on the server and a function that drops it."""
    import psycopg

    name = f"fraudseq_bench_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    info = psycopg.conninfo.conninfo_to_dict(admin_dsn)
    user = info.get("user", "postgres")
    return (
        f"postgresql+psycopg://{user}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{name}",
        drop,
    )


def _profile_parts(fn: Callable[[], Any]) -> dict[str, float]:
    """Seconds spent in the main stages of one scoring run (cProfile cumulative times)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.runcall(fn)
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    wanted = {
        "load_events": "load events + features",
        "predict_proba": "model (scores + occlusion)",
        "occlusion_weights": "reasons: occlusion",
        "reasons_json": "reasons: texts",
        "write_scored_day": "DB write",
        "upsert_labels": "DB labels upsert",
        "load_bundle": "model load",
        "post_score": "report, drift record and its MLflow run",
    }
    parts: dict[str, float] = {}
    for (_, _, func), (_, _, _, cum, _) in stats.items():
        if func in wanted:
            parts[wanted[func]] = round(parts.get(wanted[func], 0.0) + cum, 3)
    return parts


def _score_runs(spec: Spec, backend: str) -> dict[str, Any]:
    from pipeline.fit import score_amp
    from pipeline.registry import load_bundle, resolve_version, use_tracking
    from pipeline.score import score_day

    zone = Path(spec["zone"])
    day = setup.last_day(spec["zone_days"])
    settings0 = setup.settings_for(zone / "home")
    use_tracking(settings0.tracking_uri)
    pinned = resolve_version(None, settings0.model_name)
    walls: list[float] = []
    reports: list[float] = []  # of each timed run: the report, drift record and MLflow run after the commit
    n_tx = 0
    parts: dict[str, float] = {}
    for k in range(spec["runs"] + 1):  # run 0 is a warm-up (imports, registry, caches)
        if backend == "postgresql":
            url, drop = pg_database(spec["pg_admin"])
        else:
            folder = tempfile.mkdtemp(dir=spec["workdir"])
            url = f"duckdb:///{Path(folder) / 'scores.duckdb'}"
            drop = functools.partial(shutil.rmtree, folder, ignore_errors=True)
        settings = settings0.model_copy(update={"scores_url": url})
        try:
            began = time.perf_counter()
            out = score_day(settings, day, pinned=pinned)
            if k:
                walls.append(time.perf_counter() - began)
                reports.append(out["report_seconds"])
            n_tx = out["n_transactions"]
            if k == spec["runs"]:
                parts = _profile_parts(functools.partial(score_day, settings, day, pinned=pinned))
        finally:
            drop()
    # reference: the model alone on the same day's windows (the ceiling for this row)
    from features.windows import gather_windows
    from pipeline.sequences import check_days, load_events

    bundle = load_bundle(*pinned)
    data = load_events(settings0, check_days(settings0, [day], settings0.history_range(day)))
    rows = data.transaction_rows(day, day)
    x, lengths = gather_windows(data.matrix, data.starts, rows, bundle.window)
    ref, _, _ = timed(lambda: bundle.predict_proba(x, lengths), spec["runs"])
    return result(
        f"end-to-end scoring, {'DuckDB' if backend == 'duckdb' else 'PostgreSQL'}",
        rate(n_tx, walls),
        "tx/s",
        walls,
        "model alone on the same windows",
        rate(n_tx, ref),
        transactions=n_tx,
        history_events=len(data.matrix),
        alerts=settings0.alert_budget,
        scored_in_bf16=score_amp(),
        # the definition: validated files to rows committed, reasons included; the
        # row's figure also counts the report, drift record and MLflow run written after it
        to_commit_tx_per_s=round(rate(n_tx, [w - r for w, r in zip(walls, reports, strict=True)])),
        report_seconds=reports,
        profile_seconds=parts,
    )


@row("e2e_duckdb")
def e2e_duckdb(spec: Spec) -> dict[str, Any]:
    return _score_runs(spec, "duckdb")


@row("e2e_postgres")
def e2e_postgres(spec: Spec) -> dict[str, Any]:
    return _score_runs(spec, "postgresql")


# ---------------------------------------------------------------- daily run


@row("daily")
def daily(spec: Spec) -> dict[str, Any]:
    """Validate the last day of the daily zone and score it (30 days validated before it).

    The zone's home is hard-linked without that day (untimed); the champion is the main zone's.
    ``FRAUDSEQ_SHARDS`` and ``FRAUDSEQ_SCORE_AMP`` apply as in production (without
    ``FRAUDSEQ_SHARDS`` the size's ``daily_shards``); the row records both.
    """
    import polars as pl

    from pipeline.fit import score_amp
    from pipeline.registry import resolve_version, use_tracking
    from pipeline.score import score_day
    from pipeline.validate import validate_day

    zone = Path(spec["daily_zone"])
    day = setup.last_day(spec["zone_days"])
    landing = zone / "landing"
    tx = pl.scan_parquet(landing / "transactions" / f"date={day}" / "*").select(pl.len()).collect().item()
    lg = pl.scan_parquet(landing / "logins" / f"date={day}" / "*").select(pl.len()).collect().item()
    walls, scoring, reporting = [], [], []
    for _ in range(spec["daily_runs"]):
        home = Path(tempfile.mkdtemp(dir=spec["workdir"])) / "home"
        shutil.copytree(
            zone / "home",
            home,
            ignore=shutil.ignore_patterns(f"date={day}", f"date={day}.json", "scores.duckdb*"),
            copy_function=os.link,  # hard links: the history is only read (1.7 GB validated at full size)
        )
        # the champion comes from the main zone's registry (same features and window)
        tracking = setup.settings_for(Path(spec["zone"]) / "home").tracking_uri
        settings = setup.settings_for(home, landing, tracking=tracking)
        if "FRAUDSEQ_SHARDS" not in os.environ:  # one shard would hold the whole 1M-transaction day
            settings = settings.model_copy(update={"shards": spec["daily_shards"]})
        use_tracking(settings.tracking_uri)
        pinned = resolve_version(None, settings.model_name)
        began = time.perf_counter()
        validate_day(settings, day)
        validated = time.perf_counter()
        out = score_day(settings, day, pinned=pinned)
        walls.append(time.perf_counter() - began)
        scoring.append(time.perf_counter() - validated)
        reporting.append(out["report_seconds"])
        shutil.rmtree(home.parent, ignore_errors=True)
    return result(
        "daily run (validate + score, DuckDB)",
        statistics.median(walls),
        "s",
        walls,
        "target",
        180.0,
        transactions=tx,
        logins=lg,
        # the score stage alone: end to end (validated files to committed rows, reasons
        # included) on a large bank's day, where the day's fixed costs are spread
        score_runs_s=[round(w, 2) for w in scoring],
        score_tx_per_s=round(rate(tx, scoring)),
        # the same up to the committed rows, without the report, drift record and MLflow run
        score_to_commit_tx_per_s=round(rate(tx, [s - r for s, r in zip(scoring, reporting, strict=True)])),
        report_seconds=reporting,
        history_days=spec["zone_days"] - 1,
        shards=settings.shards,
        score_amp=os.environ.get("FRAUDSEQ_SCORE_AMP", "auto"),
        scored_in_bf16=score_amp(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="run one benchmark row")
    parser.add_argument("name", choices=sorted(ROWS))
    parser.add_argument("--spec", required=True, help="JSON file with sizes and paths")
    parser.add_argument("--out", required=True, help="where to write the row's JSON result")
    args = parser.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    # the collector as the product's entry points set it (the CLI and every DAG task)
    from pipeline.heap import tune_collector

    tune_collector()
    began = time.perf_counter()
    out = ROWS[args.name](spec)
    out["name"] = args.name
    out["wall_s"] = round(time.perf_counter() - began, 2)
    Path(args.out).write_text(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
