"""``python -m bench.gpu``: the bench rows that a CUDA GPU changes, measured on that GPU.

Issue 5 asks that training and scoring use a GPU fully when one is there, and that the bench
run there beside the CPU figures. The landing-zone rows (validation, end-to-end scoring, the
daily run) need the whole stack (Great Expectations, DuckDB, MLflow); this module needs only
torch, numpy, polars and pydantic-settings, so it runs on a bare GPU machine with a few wheels.

What it measures, each timed with the device synchronised, as a median of ``--runs``:

- the ceilings: dense matmul (8192²) in fp32 (TF32 off), TF32 and bf16;
- scoring model compute: the production model through ``predict_logits`` (numpy windows in,
  logits out, host-to-device copies included, the CUDA scoring batch), fp32 and bf16 autocast,
  in nominal GFLOP/s (``bench.rows.nominal_flops``); and the same forward on windows already on
  the GPU, which is the model's own speed;
- which kernels one forward runs (torch profiler): cuDNN's recurrent kernels or not;
- training: windows/s per epoch of ``fit_sequence_model`` on the GPU, fp32 and bf16 autocast
  (``FitConfig.amp``), at the production batch (512) and at 4,096;
- accuracy: the production architecture trained on one generated population and scored on
  another (the ``model_bf16`` row's protocol): AP of fp32 vs bf16 scoring on the GPU, of the
  same model scored on the CPU, and of a model trained in bf16 autocast.

Writes the rows as JSON (``--out``) and prints a table. ``--size quick`` runs in seconds (on a CPU
too, with ``--device cpu``) to check the code; ``full`` is what the README reports.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SIZES: dict[str, dict[str, Any]] = {
    "quick": {
        "runs": 2,
        "matmul": 512,
        "model_windows": 4_096,
        "train_windows": 4_096,
        "train_epochs": 1,
        "acc_train_customers": 200,
        "acc_test_customers": 200,
        "acc_days": 14,
        "acc_context_days": 7,
        "acc_epochs": 1,
    },
    "full": {
        "runs": 5,
        "matmul": 8_192,
        "model_windows": 262_144,
        "train_windows": 200_000,
        "train_epochs": 2,
        "acc_train_customers": 3_000,  # the model_bf16 row's accuracy protocol (bench.__main__)
        "acc_test_customers": 10_000,
        "acc_days": 35,
        "acc_context_days": 14,
        "acc_epochs": 4,
    },
}
WINDOW = 32


def synced(device: Any) -> Callable[[Callable[[], Any]], float]:
    """A timer of one call of ``fn`` that waits for the device before and after it."""
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def once(fn: Callable[[], Any]) -> float:
        sync()
        began = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - began

    return once


def median_seconds(fn: Callable[[], Any], runs: int, device: Any) -> list[float]:
    """Seconds of ``runs`` calls of ``fn`` after one warm-up call."""
    once = synced(device)
    once(fn)
    return [once(fn) for _ in range(runs)]


def rate(count: float, seconds: list[float]) -> float:
    return count / max(statistics.median(seconds), 1e-12)


def products(a: Any, b: Any, reps: int) -> list[Any]:
    return [a @ b for _ in range(reps)]


def matmul_ceilings(spec: dict[str, Any], device: Any) -> dict[str, float]:
    """Measured dense matmul TFLOP/s on ``device``: fp32 with TF32 off, TF32, and bf16."""
    import torch

    n, reps = spec["matmul"], 10
    out: dict[str, float] = {}
    was = torch.backends.cuda.matmul.allow_tf32
    try:
        for name, dtype, tf32 in (
            ("fp32", torch.float32, False),
            ("tf32", torch.float32, True),
            ("bf16", torch.bfloat16, False),
        ):
            if device.type != "cuda" and name != "fp32":
                continue
            torch.backends.cuda.matmul.allow_tf32 = tf32
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            secs = median_seconds(functools.partial(products, a, b, reps), spec["runs"], device)
            out[name] = round(rate(reps * 2 * n**3, secs) / 1e12, 2)
            del a, b
    finally:
        torch.backends.cuda.matmul.allow_tf32 = was
    return out


def model_compute(spec: dict[str, Any], device: Any) -> dict[str, Any]:
    """The production model's forward, fp32 and bf16 autocast: through predict_logits and on-device."""
    import torch

    from bench.rows import nominal_flops, production_model_inputs
    from pipeline.fit import autocast, predict_logits
    from pipeline.registry import score_batch  # no mlflow at import: fine on a bare GPU machine

    n = spec["model_windows"]
    cfg, net, x, lengths = production_model_inputs(n, WINDOW)
    net = net.to(device).eval()
    per_window = nominal_flops(cfg, WINDOW)
    x_dev = torch.from_numpy(x).to(device)
    len_dev = torch.from_numpy(lengths).to(device)
    batch = score_batch(device)  # what production scoring uses on this device

    def on_device(amp: bool) -> None:
        with torch.inference_mode(), autocast(device, amp):
            for i in range(0, n, batch):
                net(x_dev[i : i + batch], len_dev[i : i + batch])

    out: dict[str, Any] = {
        "model": cfg.to_dict(),
        "window": WINDOW,
        "windows": n,
        "batch": batch,
        "nominal_mflop_per_window": round(per_window / 1e6, 3),
    }
    for name, amp in (("fp32", False), ("bf16", True)):
        scoring = functools.partial(predict_logits, net, x, lengths, batch, device, amp)
        piped = median_seconds(scoring, spec["runs"], device)
        resident = median_seconds(functools.partial(on_device, amp), spec["runs"], device)
        out[name] = {
            "predict_logits_gflops": round(rate(per_window * n, piped) / 1e9, 1),
            "predict_logits_windows_per_s": round(rate(n, piped)),
            "on_device_gflops": round(rate(per_window * n, resident) / 1e9, 1),
            "on_device_windows_per_s": round(rate(n, resident)),
            "run_seconds": [round(s, 4) for s in piped],
        }
    out["kernels"] = top_kernels(net, x_dev[:batch], len_dev[:batch], device)
    return out


def top_kernels(net: Any, x: Any, lengths: Any, device: Any, k: int = 6) -> dict[str, list[str]]:
    """Names of the kernels that take most device time in one forward, fp32 and bf16 (CUDA only)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from pipeline.fit import autocast

    if device.type != "cuda":
        return {}
    out = {}
    for name, amp in (("fp32", False), ("bf16", True)):
        with (
            torch.inference_mode(),
            autocast(device, amp),
            profile(activities=[ProfilerActivity.CUDA]) as prof,
        ):
            net(x, lengths)
            torch.cuda.synchronize(device)
        events = sorted(prof.key_averages(), key=lambda e: -e.device_time_total)
        out[name] = [f"{e.key[:90]} ({e.device_time_total / 1e3:.2f} ms)" for e in events[:k]]
    return out


def training(spec: dict[str, Any], device: Any) -> dict[str, Any]:
    """Windows/s per epoch of fit_sequence_model on random full windows (the cost does not depend on values)."""
    from features.events import FEATURE_NAMES
    from pipeline.fit import FitConfig, fit_sequence_model
    from pipeline.train import TrainOptions

    rng = np.random.default_rng(0)
    n = spec["train_windows"]
    x = rng.standard_normal((n, WINDOW, len(FEATURE_NAMES))).astype(np.float32)
    lengths = np.full(n, WINDOW, dtype=np.int64)
    y = (rng.random(n) < 0.05).astype(np.int64)
    n_val = n // 10
    cfg = TrainOptions().model_config(len(FEATURE_NAMES))
    out: dict[str, Any] = {"train_windows": n - n_val, "epochs": spec["train_epochs"]}
    for batch in (512, 4_096):
        for name, amp in (("fp32", False), ("bf16", True)):
            fit = fit_sequence_model(
                x[n_val:], lengths[n_val:], y[n_val:], x[:n_val], lengths[:n_val], y[:n_val], cfg,
                FitConfig(epochs=spec["train_epochs"], patience=spec["train_epochs"], batch_size=batch, amp=amp),
                device=device, progress=False,
            )  # fmt: skip
            per_epoch = [h["windows_per_s"] for h in fit.history]
            out[f"batch_{batch}_{name}"] = {
                "windows_per_s": round(statistics.median(per_epoch)),
                "per_epoch": [round(w) for w in per_epoch],
            }
    return out


def accuracy(spec: dict[str, Any], device: Any) -> dict[str, Any]:
    """Held-out AP: fp32 vs bf16 scoring on ``device``, the CPU's fp32, and a bf16-trained model."""
    import torch

    from bench.rows import accuracy_data, fit_for_accuracy, held_out_logits
    from pipeline.metrics import average_precision

    began = time.perf_counter()
    data = accuracy_data(spec)
    prepared = time.perf_counter() - began
    y = data["y_test"]
    out: dict[str, Any] = {
        "held_out_transactions": len(y),
        "held_out_frauds": int(y.sum()),
        "train_windows": len(data["y_train"]),
        "data_seconds": round(prepared, 1),
    }
    cpu = torch.device("cpu")
    for trained in ("fp32", "bf16"):
        began = time.perf_counter()
        fitted = fit_for_accuracy(spec, data, device, amp=trained == "bf16")
        fit_seconds = time.perf_counter() - began
        logits, seconds = {}, {}
        for name, where, amp in (("fp32", device, False), ("bf16", device, True), ("cpu_fp32", cpu, False)):
            if trained == "bf16" and name == "cpu_fp32":
                continue
            logits[name], seconds[name] = held_out_logits(fitted.model, data, where, amp)
        ap = {k: round(average_precision(y, v), 5) for k, v in logits.items()}
        out[f"trained_{trained}"] = {
            "ap": ap,
            "ap_abs_diff_bf16": round(abs(ap["fp32"] - ap["bf16"]), 5),
            "max_abs_logit_diff_bf16": round(float(np.abs(logits["fp32"] - logits["bf16"]).max()), 5),
            "scoring_seconds": {k: round(v, 2) for k, v in seconds.items()},
            "fit_seconds": round(fit_seconds, 1),
            "epochs_trained": fitted.best_epoch,
        }
        if "cpu_fp32" in logits:
            out[f"trained_{trained}"]["max_abs_logit_diff_cpu"] = round(
                float(np.abs(logits["fp32"] - logits["cpu_fp32"]).max()), 5
            )
    return out


def machine(device: Any) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
            "cudnn": torch.backends.cudnn.version(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        }
    return info


def table(rows: dict[str, Any]) -> str:
    """The printed summary: one line per figure, against the ceilings measured in the same run."""
    peak = rows["matmul_tflops"]
    lines = [f"matmul TFLOP/s: {peak}"]
    for name in ("fp32", "bf16") if "model" in rows else ():
        r = rows["model"][name]
        ref = peak.get("bf16" if name == "bf16" else "fp32")
        for how in ("predict_logits", "on_device"):
            share = f" = {r[f'{how}_gflops'] / 1e3 / ref:.1%} of {name} matmul" if ref else ""
            lines.append(
                f"scoring {name:4} {how:14}: {r[f'{how}_gflops']:>9,.1f} GFLOP/s, "
                f"{r[f'{how}_windows_per_s']:>12,} windows/s{share}"
            )
    for key, r in rows.get("training", {}).items():
        if key.startswith("batch_"):
            lines.append(f"training {key:16}: {r['windows_per_s']:>9,} windows/s per epoch")
    acc = rows.get("accuracy", {})
    for key in ("trained_fp32", "trained_bf16"):
        if key in acc:
            lines.append(f"AP {key}: {acc[key]['ap']} ({acc['held_out_frauds']:,} held-out frauds)")
    return "\n".join(lines)


def main() -> None:
    import torch

    from pipeline.fit import pick_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: $FRAUDSEQ_DEVICE, else auto)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the rows here as JSON")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: training, accuracy")
    args = parser.parse_args()
    spec = SIZES[args.size]
    device = pick_device(args.device)
    skip = {s for s in args.skip.split(",") if s}
    torch.manual_seed(0)
    rows: dict[str, Any] = {"size": args.size, "spec": spec, "machine": machine(device)}
    parts: list[tuple[str, Callable[[dict[str, Any], Any], Any]]] = [
        ("matmul_tflops", matmul_ceilings),
        ("model", model_compute),
        ("training", training),
        ("accuracy", accuracy),
    ]
    for name, fn in parts:
        if name in skip:
            continue
        began = time.perf_counter()
        rows[name] = fn(spec, device)
        print(f"{name}: {time.perf_counter() - began:.1f} s", flush=True)
        if args.out is not None:  # after every part, so a run cut short keeps what it measured
            args.out.write_text(json.dumps(rows, indent=2))
    print(table(rows))


if __name__ == "__main__":
    main()
