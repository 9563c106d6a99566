"""Scoring batch size on CPU: gather plus forward pass, and the gather alone, per batch size.

Usage, from the repository root: python -m bench.score_batch [--runs 3]

The production architecture of 2026-12-02, hidden 64 x 2 layers (random weights, eval mode),
scores 49,152 windows of 32 events taken from a random 400,000-event matrix of 2,000
customers, the way ``ModelBundle.logits_rows`` does: one batch of windows is gathered, scored and dropped at a time. Each batch size is timed
in turn inside every pass (medians of ``--runs`` interleaved passes), and each size's logits are
checked against those of the former production batch, 16,384, which is the reference of the
printed ratios. The gather alone is timed the same way on a 1,100,000-event matrix.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

FORMER = 16_384
SIZES = (2_048, 4_096, FORMER)
GATHER_SIZES = (1_024, 4_096, FORMER)
WINDOW, FEATURES = 32, 27


def random_events(n_events: int, n_customers: int, n_rows: int, seed: int = 0) -> tuple:
    """A random (M, F) event matrix sorted by customer, each row's customer start, and target rows."""
    rng = np.random.default_rng(seed)
    matrix = rng.random((n_events, FEATURES), dtype=np.float32)
    customer = np.sort(rng.integers(0, n_customers, n_events))
    starts = np.searchsorted(customer, customer, side="left").astype(np.int64)
    rows = np.sort(rng.choice(n_events, n_rows, replace=False))
    return matrix, starts, rows


def median_rates(fns: dict[int, object], count: int, runs: int) -> dict[int, float]:
    """Items per second of each ``fns[size]()``, medians of ``runs`` interleaved passes."""
    seconds: dict[int, list[float]] = {size: [] for size in fns}
    for _ in range(runs):
        for size, fn in fns.items():
            began = time.perf_counter()
            fn()  # type: ignore[operator]
            seconds[size].append(time.perf_counter() - began)
    return {size: count / statistics.median(s) for size, s in seconds.items()}


def main() -> None:
    import torch

    from features.windows import WindowGatherer
    from pipeline.fit import predict_logits_from
    from pipeline.model import SequenceModelConfig, build_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    matrix, starts, rows = random_events(400_000, 2_000, 49_152)
    gatherer = WindowGatherer(matrix, starts, WINDOW)
    lengths = gatherer.lengths(rows)
    net = build_model(SequenceModelConfig(n_features=FEATURES, hidden=64, layers=2)).eval()

    def score(size: int) -> np.ndarray:
        def batch(idx: np.ndarray, width: int) -> np.ndarray:
            x = gatherer.gather(rows[idx])  # (B, W, F)
            return x if width == WINDOW else np.ascontiguousarray(x[:, WINDOW - width :])

        return predict_logits_from(net, batch, lengths, size, torch.device("cpu"), False)

    reference = score(FORMER)
    for size in SIZES:  # warm-up, and the same logits at every batch size
        diff = float(np.abs(score(size) - reference).max())
        if diff > 1e-4:
            raise AssertionError(f"batch {size}: logits differ from batch {FORMER} by {diff}")
    rates = median_rates({s: (lambda s=s: score(s)) for s in SIZES}, len(rows), args.runs)
    print(f"gather + model, {len(rows):,} windows (production BiLSTM, fp32, 2 threads):")
    for size, r in rates.items():
        print(f"  batch {size:>6,}: {r:>9,.0f} windows/s  {r / rates[FORMER]:.2f}x batch {FORMER:,}")

    matrix, starts, rows = random_events(1_100_000, 6_000, 600_000)
    gatherer = WindowGatherer(matrix, starts, WINDOW)

    def gather(size: int) -> None:
        for i in range(0, len(rows), size):
            gatherer.gather(rows[i : i + size])

    for size in GATHER_SIZES:
        gather(size)  # warm-up
    rates = median_rates({s: (lambda s=s: gather(s)) for s in GATHER_SIZES}, len(rows), args.runs)
    print(f"gather alone, {len(rows):,} windows:")
    for size, r in rates.items():
        print(f"  batch {size:>6,}: {r:>11,.0f} windows/s  {r / rates[FORMER]:.2f}x batch {FORMER:,}")


if __name__ == "__main__":
    main()
