"""Which production architecture: detection quality of each BiLSTM shape against its scoring cost.

Usage, from the repository root:
python -m bench.model_choice [--shapes 64x2,64x1,32x2] [--seeds 0,1,2] [--epochs 8] [--runs 3]

A one-off measurement, not a ``make bench`` row. Every candidate (hidden size x layers) is
trained the way ``fraudseq train`` trains (``pipeline.train.fit_bundle``: normaliser on the
training period, epoch picked and calibrator fitted on the last matured week, a time split) on
one generated population, with the synthetic benchmark's sampling (``neg_per_pos`` 20), once
per training seed. Then, as means and spreads over the seeds:

- **choice**: the validation-window AP of each candidate (the only figure a choice may use);
- **held-out check**: AP on a second population (another seed: customers, devices and frauds
  never seen), every transaction after its first ``--context-days`` days, the issue's check for
  a faster path (AP within 0.005, at least 2,000 frauds);
- **cost**: nominal MFLOP per window and windows/s of the production scoring path
  (``ModelBundle.logits_rows``: gather, normalise and forward pass, batch by batch) on the
  held-out windows, medians of ``--runs`` interleaved passes, in fp32 and in bf16 autocast when
  the CPU runs it, next to the dense fp32 matmul GFLOP/s of the same passes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np


def population(customers: int, days: int, seed: int) -> dict[str, Any]:
    """Events, labels and truth of one generated population (clean by construction)."""
    import polars as pl

    from bench import setup
    from features.events import build_event_table, customer_starts, feature_matrix
    from pipeline.generate import generate_frames
    from pipeline.sequences import EventData

    frames = generate_frames(customers, days, setup.START, seed=seed)
    events = build_event_table(frames["transactions"].lazy(), frames["logins"].lazy())
    data = EventData(events, feature_matrix(events), customer_starts(events))
    truth = frames["truth"].select("event_id", pl.col("is_fraud").cast(pl.Int8))
    return {"data": data, "labels": frames["labels"], "truth": truth}


def truth_of(data: Any, rows: np.ndarray, truth: Any) -> np.ndarray:
    ids = data.events["event_id"].gather(rows).to_frame()
    joined = ids.join(truth, on="event_id", how="left", maintain_order="left")
    return joined["is_fraud"].fill_null(0).to_numpy()


def main() -> None:  # noqa: C901 - one linear script
    import polars as pl
    import torch

    from bench import setup
    from bench.rows import nominal_flops
    from pipeline.fit import cpu_bf16_supported
    from pipeline.metrics import average_precision
    from pipeline.sequences import latest_labels
    from pipeline.train import TrainOptions, fit_bundle, select_examples

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="64x2,64x1,32x2", help="hidden x layers, comma-separated")
    parser.add_argument("--train-customers", type=int, default=3_000)
    parser.add_argument("--train-days", type=int, default=42)
    parser.add_argument("--test-customers", type=int, default=10_000)
    parser.add_argument("--test-days", type=int, default=35)
    parser.add_argument("--context-days", type=int, default=14)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    os.environ["FRAUDSEQ_SCORE_AMP"] = "0"  # held-out AP in fp32; the cost passes below set it each
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    window, delay, val_days = 32, 7, 7

    began = time.perf_counter()
    train = population(args.train_customers, args.train_days, seed=0)
    train_end = setup.START + timedelta(days=args.train_days - 1)
    cutoff = datetime.combine(train_end + timedelta(days=1), datetime.min.time(), timezone.utc)
    labels = latest_labels(train["labels"].filter(pl.col("reported_at") < cutoff))  # known at E's end
    ex = select_examples(train["data"], labels, setup.START, train_end, delay, val_days)
    test = population(args.test_customers, args.test_days, seed=1)
    first = setup.START + timedelta(days=args.context_days)
    rows = test["data"].transaction_rows(first, setup.START + timedelta(days=args.test_days - 1))
    y = truth_of(test["data"], rows, test["truth"])
    print(f"data ready in {time.perf_counter() - began:.0f} s: {len(ex.rows)} training examples "
          f"({int(ex.y.sum())} frauds), {len(rows)} held-out transactions ({int(y.sum())} frauds)", flush=True)  # fmt: skip

    results: dict[str, dict[str, Any]] = {}
    bundles = {}
    for hidden, layers in shapes:
        name = f"hidden {hidden}, {layers} layer{'s' if layers > 1 else ''}"
        runs = []
        for seed in seeds:
            t0 = time.perf_counter()
            opts = TrainOptions(hidden=hidden, layers=layers, epochs=args.epochs, neg_per_pos=20.0)
            fitted = fit_bundle(train["data"], ex, window, opts, seed=seed, progress=False)
            fit_s = time.perf_counter() - t0
            logits = fitted.bundle.logits_rows(test["data"].matrix, test["data"].starts, rows)
            runs.append(
                {
                    "seed": seed,
                    "val_average_precision": round(fitted.metrics["val_average_precision"], 4),
                    "held_out_average_precision": round(average_precision(y, logits), 4),
                    "best_epoch": int(fitted.metrics["best_epoch"]),
                    "fit_s": round(fit_s, 1),
                }
            )
            print(name, json.dumps(runs[-1]), flush=True)
            if seed == seeds[0]:
                bundles[name] = fitted.bundle  # the cost is the same for every seed
        mean_std = {
            k: [round(float(np.mean([r[k] for r in runs])), 4), round(float(np.std([r[k] for r in runs])), 4)]
            for k in ("val_average_precision", "held_out_average_precision", "fit_s")
        }
        results[name] = {
            "hidden": hidden,
            "layers": layers,
            **mean_std,
            "nominal_mflop_per_window": round(nominal_flops(fitted.model_config, window) / 1e6, 2),
            "runs": runs,
        }

    # scoring cost: every candidate and the matmul reference, interleaved, on the same held-out rows
    mm = 2048
    a, b = torch.randn(mm, mm), torch.randn(mm, mm)
    reps = 8
    n = min(len(rows), 65_536)
    sample = rows[np.linspace(0, len(rows) - 1, n).astype(np.int64)]
    amps = ["0", "1"] if cpu_bf16_supported() else ["0"]
    fns: dict[str, Any] = {"matmul": lambda: [a @ b for _ in range(reps)]}
    for name, bundle in bundles.items():
        for amp in amps:

            def run(bundle: Any = bundle, amp: str = amp) -> None:
                os.environ["FRAUDSEQ_SCORE_AMP"] = amp
                bundle.logits_rows(test["data"].matrix, test["data"].starts, sample)

            fns[f"{name}|{amp}"] = run
    for fn in fns.values():
        fn()  # warm-up
    seconds: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.runs):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            seconds[key].append(time.perf_counter() - t0)
    os.environ.pop("FRAUDSEQ_SCORE_AMP", None)
    matmul = reps * 2 * mm**3 / statistics.median(seconds["matmul"]) / 1e9
    for name, r in results.items():
        for amp in amps:
            rate = n / statistics.median(seconds[f"{name}|{amp}"])
            tag = "bf16" if amp == "1" else "fp32"
            r[f"scoring_windows_per_s_{tag}"] = round(rate)
            r[f"model_gflops_{tag}"] = round(rate * r["nominal_mflop_per_window"] / 1e3, 1)
    out = {
        "held_out_transactions": len(rows),
        "held_out_frauds": int(y.sum()),
        "training_examples": len(ex.rows),
        "training_frauds": int(ex.y[~ex.is_val].sum()),
        "validation_frauds": int(ex.y[ex.is_val].sum()),
        "seeds": seeds,
        "epochs": args.epochs,
        "matmul_gflops": round(matmul, 1),
        "scored_windows": n,
        "machine": setup.machine(),
        "candidates": results,
        "wall_s": round(time.perf_counter() - began, 1),
    }
    print(json.dumps(out, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
