"""The synthetic comparison runs its protocol end to end and reports sane metrics."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.compare import holdout_metrics, run_synthetic_benchmark
from pipeline.train import TrainOptions


def test_holdout_metrics_on_a_hand_made_case() -> None:
    y = np.array([1, 0, 0, 1, 0, 0])
    p = np.array([0.9, 0.1, 0.2, 0.3, 0.8, 0.05])
    days = np.array([1, 1, 1, 2, 2, 2])
    m = holdout_metrics(y, p, days, k=1)
    assert m["precision_at_k"] == pytest.approx(0.5)  # day 1 top-1 is fraud, day 2 top-1 is not
    assert m["recall_at_k"] == pytest.approx(0.5)
    assert m["average_precision"] == pytest.approx((1 + 2 / 3) / 2)


@pytest.mark.slow
def test_synthetic_benchmark_compares_three_models(tmp_path) -> None:
    out = run_synthetic_benchmark(
        tmp_path,
        customers=150,
        days=35,
        test_days=7,
        seed=1,
        options=TrainOptions(epochs=1, hidden=16, layers=1),
        out_md=tmp_path / "synthetic.md",
        progress=False,
    )
    assert set(out["models"]) == {"bilstm", "bilstm_no_logins", "gbt"}
    assert out["protocol"]["n_test_fraud"] > 0
    for metrics in out["models"].values():
        assert 0.0 <= metrics["average_precision"] <= 1.0
        assert 0.0 <= metrics["recall_at_1pct_fpr"] <= 1.0
    assert "| gbt |" in (tmp_path / "synthetic.md").read_text()
