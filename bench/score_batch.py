"""Scoring batch size on CPU: gather plus forward pass, and the gather alone, per batch size.

Usage, from the repository root: python -m bench.score_batch [--runs 3]

The production architecture (``TrainOptions().model_config``, random weights, eval mode) scores
49,152 windows of 32 events taken from a random 400,000-event matrix of 2,000 customers, the way
``ModelBundle.logits_rows`` does: one batch of windows is gathered, scored and dropped at a time.
It does so in fp32 and, where the CPU has bf16 instructions that oneDNN runs, in bf16 autocast
(what ``FRAUDSEQ_SCORE_AMP=auto`` picks there). Each batch size is timed in turn inside every
pass (medians of ``--runs`` interleaved passes); the printed ratios are against ``REFERENCE``,
the production batch before 2026-12-08, and each size's logits are checked against it.

Then, in bf16, the forward pass alone on gathered batches, with the first layer reading the 27
event features as they are and padded to an even width (``pipeline.model.even_inputs``): oneDNN
runs a bf16 LSTM on AMX tiles only with an even input width. Last, the gather alone on a
1,100,000-event matrix.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import numpy as np

REFERENCE = 4_096
SIZES = (512, 1_024, 2_048, REFERENCE)
WINDOW = 32


def random_events(n_events: int, n_customers: int, n_rows: int, features: int, seed: int = 0) -> tuple:
    """A random (M, F) event matrix sorted by customer, each row's customer start, and target rows."""
    rng = np.random.default_rng(seed)
    matrix = rng.random((n_events, features), dtype=np.float32)
    customer = np.sort(rng.integers(0, n_customers, n_events))
    starts = np.searchsorted(customer, customer, side="left").astype(np.int64)
    rows = np.sort(rng.choice(n_events, n_rows, replace=False))
    return matrix, starts, rows


def median_rates(fns: dict[str, Callable[[], object]], count: int, runs: int) -> dict[str, float]:
    """Items per second of each ``fns[key]()``, medians of ``runs`` interleaved passes."""
    seconds: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(runs):
        for key, fn in fns.items():
            began = time.perf_counter()
            fn()
            seconds[key].append(time.perf_counter() - began)
    return {key: count / statistics.median(s) for key, s in seconds.items()}


def main() -> None:
    import torch

    from features.events import FEATURE_NAMES
    from features.windows import WindowGatherer
    from pipeline.fit import autocast, cpu_bf16_supported, cpu_has_native_bf16, predict_logits_from
    from pipeline.model import build_model, even_inputs
    from pipeline.train import TrainOptions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    cfg = TrainOptions().model_config(len(FEATURE_NAMES))
    print(f"production model: {cfg}")
    net = build_model(cfg).eval()
    precisions = {"fp32": False}
    if cpu_has_native_bf16() and cpu_bf16_supported():
        precisions["bf16"] = True

    matrix, starts, rows = random_events(400_000, 2_000, 49_152, cfg.n_features)
    gatherer = WindowGatherer(matrix, starts, WINDOW)
    lengths = gatherer.lengths(rows)

    def score(size: int, amp: bool) -> np.ndarray:
        def batch(idx: np.ndarray, width: int) -> np.ndarray:
            x = gatherer.gather(rows[idx])  # (B, W, F)
            return x if width == WINDOW else np.ascontiguousarray(x[:, WINDOW - width :])

        return predict_logits_from(net, batch, lengths, size, cpu, amp)

    for precision, amp in precisions.items():
        reference = score(REFERENCE, amp)
        tolerance = 0.05 if amp else 1e-4  # bf16 kernels may block a batch differently
        for size in SIZES:  # warm-up, and the same logits at every batch size
            diff = float(np.abs(score(size, amp) - reference).max())
            if diff > tolerance:
                raise AssertionError(
                    f"{precision} batch {size}: logits differ from batch {REFERENCE} by {diff}"
                )
        fns = {str(s): functools.partial(score, s, amp) for s in SIZES}
        rates = median_rates(fns, len(rows), args.runs)
        print(f"gather + model, {len(rows):,} windows ({precision}, 2 threads):")
        for size in SIZES:
            r = rates[str(size)]
            print(
                f"  batch {size:>6,}: {r:>9,.0f} windows/s  {r / rates[str(REFERENCE)]:.2f}x batch {REFERENCE:,}"
            )

    if "bf16" in precisions:
        size = 1_024
        batches = [torch.from_numpy(gatherer.gather(rows[i : i + size])) for i in range(0, len(rows), size)]
        full = torch.full((size,), WINDOW)
        nets = {f"{cfg.recurrent_inputs} inputs": net, "even inputs": even_inputs(net)}

        def forward(model: torch.nn.Module) -> None:
            with torch.inference_mode(), autocast(cpu, True):
                for x in batches:
                    model(x, full[: len(x)])

        for model in nets.values():
            forward(model)  # warm-up
        rates = median_rates({k: (lambda m=m: forward(m)) for k, m in nets.items()}, len(rows), args.runs)
        print(f"forward pass alone, bf16, batch {size:,}:")
        for key, r in rates.items():
            print(f"  {key:>12}: {r:>9,.0f} windows/s  {r / rates[next(iter(nets))]:.2f}x")

    matrix, starts, rows = random_events(1_100_000, 6_000, 600_000, cfg.n_features)
    gatherer = WindowGatherer(matrix, starts, WINDOW)

    def gather(size: int) -> None:
        for i in range(0, len(rows), size):
            gatherer.gather(rows[i : i + size])

    for size in SIZES:
        gather(size)  # warm-up
    rates = median_rates({str(s): (lambda s=s: gather(s)) for s in SIZES}, len(rows), args.runs)
    print(f"gather alone, {len(rows):,} windows:")
    for size in SIZES:
        r = rates[str(size)]
        print(
            f"  batch {size:>6,}: {r:>11,.0f} windows/s  {r / rates[str(REFERENCE)]:.2f}x batch {REFERENCE:,}"
        )


if __name__ == "__main__":
    main()
