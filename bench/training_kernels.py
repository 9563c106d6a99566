"""Training kernels: oneDNN's recurrent kernels against ATen's own, per model shape, on CPU.

Usage, from the repository root:
    python -m bench.training_kernels [--runs 5] [--windows 4096]

``pipeline.fit.training_kernels`` trains on ATen's kernels when the first layer's inputs are at
least ``WIDE_INPUTS`` times the hidden size, and on oneDNN's otherwise. This measures both on
random windows of each shape below (one AdamW epoch of batch-512 training, and batch-4096
inference), as medians of ``--runs`` interleaved passes in one process, so the ratios do not
depend on the load. The shapes: the handbook BiLSTM (27 features + their bins = 225 inputs,
hidden 32) at windows 32 and 16, and a narrow production-like model (40 inputs, hidden 64).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np

SHAPES = ((225, 32, 32), (225, 16, 32), (40, 32, 64))  # (inputs, window, hidden)


def measure(inputs: int, window: int, hidden: int, n: int, aten: bool) -> tuple[float, float]:
    """(training windows/s, inference windows/s) of one fresh BiLSTM on ``n`` random windows."""
    import torch

    from pipeline.fit import aten_kernels
    from pipeline.model import SequenceModelConfig, build_model

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((n, window, inputs), dtype=np.float32))  # (N, T, F)
    lengths = torch.full((n,), window)
    y = torch.from_numpy((rng.random(n) < 0.05).astype(np.float32))
    torch.manual_seed(0)
    model = build_model(SequenceModelConfig(n_features=inputs, hidden=hidden, layers=1, head_hidden=64))
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    with aten_kernels() if aten else contextlib.nullcontext():
        model.train()
        started = time.perf_counter()
        for i in range(0, n, 512):
            loss = loss_fn(model(x[i : i + 512], lengths[i : i + 512]), y[i : i + 512])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        train = n / (time.perf_counter() - started)
        model.eval()
        started = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, n, 4096):
                model(x[i : i + 4096], lengths[i : i + 4096])
        infer = n / (time.perf_counter() - started)
    return train, infer


def main(argv: list[str] | None = None) -> int:
    import torch

    from pipeline.fit import WIDE_INPUTS

    parser = argparse.ArgumentParser(
        prog="python -m bench.training_kernels", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--windows", type=int, default=4096)
    args = parser.parse_args(argv)
    print(
        f"threads {torch.get_num_threads()}, {args.windows} windows, median of {args.runs} interleaved runs"
    )
    print(
        "inputs window hidden | train oneDNN  train ATen  ratio | infer oneDNN  infer ATen  ratio | fit uses"
    )
    for inputs, window, hidden in SHAPES:
        got: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(args.runs):
            for aten in (False, True):
                got[aten].append(measure(inputs, window, hidden, args.windows, aten))
        med = {k: [statistics.median(r[i] for r in v) for i in range(2)] for k, v in got.items()}
        uses = "ATen" if inputs >= WIDE_INPUTS * hidden else "oneDNN"
        print(
            f"{inputs:6d} {window:6d} {hidden:6d} | {med[False][0]:12,.0f} {med[True][0]:11,.0f} "
            f"{med[True][0] / med[False][0]:6.2f} | {med[False][1]:12,.0f} {med[True][1]:11,.0f} "
            f"{med[True][1] / med[False][1]:6.2f} | {uses}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
