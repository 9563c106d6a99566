"""Window padding: the flat-index zeroing of ``WindowGatherer.gather`` against the former mask.

Usage, from the repository root (after ``python -m bench --rows windows`` built the zone):
    python -m bench.window_padding [--home /tmp/fraudseq-bench-full/zone-6000x31/home] [--runs 7]

Every transaction window of the zone is gathered batch by batch (4,096, the CPU scoring
batch) twice per pass: by ``WindowGatherer.gather``, which zeroes the left padding through
one flat index of the padded slots, and by the former code, which zeroed it through a
boolean (N, W) mask. Both give identical windows (checked); the printed figures are medians
of ``--runs`` interleaved passes in one process, so the ratio does not depend on the load.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

BATCH, WINDOW = 4_096, 32


def mask_gather(g, targets: np.ndarray) -> np.ndarray:  # noqa: ANN001 - a WindowGatherer
    """The former ``WindowGatherer.gather``: block copy, then a boolean (N, W) padding mask."""
    w = g.window
    out = g.blocks[np.maximum(targets - w + 1, 0)]
    for i in np.flatnonzero(targets < w - 1):
        t = int(targets[i])
        out[i, : w - 1 - t] = 0.0
        out[i, w - 1 - t :] = g.matrix[: t + 1]
    pad = np.arange(w)[None, :] < (w - g.lengths(targets))[:, None]
    if pad.any():
        out[pad] = 0.0
    return out


def main(argv: list[str] | None = None) -> int:
    from bench import setup
    from features.windows import WindowGatherer
    from pipeline.sequences import load_events

    parser = argparse.ArgumentParser(
        prog="python -m bench.window_padding", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--home", type=Path, default=Path("/tmp/fraudseq-bench-full/zone-6000x31/home"))
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    days = [setup.START + timedelta(days=k) for k in range(args.days)]
    data = load_events(setup.settings_for(args.home), days)
    rows = data.transaction_rows(days[0], days[-1])
    if not len(rows):
        parser.error(f"{args.home}: no validated transactions (run python -m bench --rows windows first)")
    g = WindowGatherer(np.ascontiguousarray(data.matrix, dtype=np.float32), data.starts, WINDOW)
    fns = {"mask (former)": lambda t: mask_gather(g, t), "flat index (now)": g.gather}
    for i in range(0, len(rows), BATCH):
        if not np.array_equal(fns["mask (former)"](rows[i : i + BATCH]), g.gather(rows[i : i + BATCH])):
            raise AssertionError("the two gathers disagree")
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(args.runs):
        for name, fn in fns.items():
            began = time.perf_counter()
            for i in range(0, len(rows), BATCH):
                fn(rows[i : i + BATCH])
            seconds[name].append(time.perf_counter() - began)
    padded = float((g.lengths(rows) < WINDOW).mean())
    print(f"{len(rows):,} windows of {WINDOW} events, {padded:.1%} of them padded, batch {BATCH:,}")
    rates = {name: len(rows) / statistics.median(s) for name, s in seconds.items()}
    for name, r in rates.items():
        print(f"  {name:18s} {r:,.0f} windows/s")
    print(f"  speed-up {rates['flat index (now)'] / rates['mask (former)']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
