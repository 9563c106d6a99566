"""Our multi-log data, fixed protocol: does the login sequence help, and does order beat aggregates?

One generated zone (fixed seed), validated like production. Training uses the contract's
label rules at the end of the training span; the last ``test_days`` are held out and scored
against the generator's hidden truth. Three models:

- ``bilstm``: the production BiLSTM on interleaved logins and transactions;
- ``bilstm_no_logins``: the same model on transaction-only sequences;
- ``gbt``: LightGBM on the transaction's own features plus login aggregates (failed logins,
  new-device logins and account changes in the last hour and day).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.events import LOGIN_AGGREGATES, login_aggregates
from features.windows import gather_windows
from pipeline.config import Settings
from pipeline.sequences import EventData, day_range, load_events, read_labels
from pipeline.train import Examples, TrainOptions, fit_bundle, select_examples

log = logging.getLogger(__name__)
START = date(2026, 1, 5)


def holdout_metrics(y: np.ndarray, p: np.ndarray, days: np.ndarray, k: int = 100) -> dict[str, float]:
    """AUC, AP, recall at 1% FPR, ECE and mean daily precision/recall of the top-k alerts."""
    from pipeline.metrics import (
        auc_roc,
        average_precision,
        expected_calibration_error,
        precision_recall_at_k,
        recall_at_fpr,
    )

    daily = [precision_recall_at_k(y[days == d], p[days == d], k) for d in np.unique(days)]
    return {
        "auc_roc": auc_roc(y, p),
        "average_precision": average_precision(y, p),
        "recall_at_1pct_fpr": recall_at_fpr(y, p, 0.01),
        "ece": expected_calibration_error(y, p),
        "precision_at_k": float(np.mean([d[0] for d in daily])),
        "recall_at_k": float(np.mean([d[1] for d in daily])),
    }


def _tabular(data: EventData, rows: np.ndarray) -> np.ndarray:
    """The transaction row's own features plus login aggregates (what an order-blind model sees)."""
    agg = login_aggregates(data.events)[list(LOGIN_AGGREGATES)].to_numpy()
    return np.hstack([data.matrix[rows], agg[rows]]).astype(np.float32)


def fit_gbt(data: EventData, ex: Examples, test_rows: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
    """LightGBM with early stopping on the validation window, Platt-calibrated there too."""
    import lightgbm as lgb

    from pipeline.calibration import PlattCalibrator

    x = _tabular(data, np.concatenate([ex.rows, test_rows]))
    x_fit, x_test = x[: len(ex.rows)], x[len(ex.rows) :]
    tr, va = ~ex.is_val, ex.is_val
    model = lgb.LGBMClassifier(
        n_estimators=600,
        learning_rate=0.05,
        num_leaves=31,
        min_child_samples=20,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        random_state=seed,
        n_jobs=2,
        verbose=-1,
    )
    model.fit(
        x_fit[tr],
        ex.y[tr],
        eval_X=(x_fit[va],),
        eval_y=(ex.y[va],),
        eval_metric="average_precision",
        callbacks=[lgb.early_stopping(50, verbose=False)],
    )
    cal = PlattCalibrator().fit(_log_odds(model, x_fit[va]), ex.y[va])
    return cal.transform(_log_odds(model, x_test)), {"best_iteration": int(model.best_iteration_ or 0)}


def _log_odds(model: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, raw_score=True), dtype=np.float64)


def run_synthetic_benchmark(
    work: Path,
    customers: int = 1500,
    days: int = 56,
    test_days: int = 14,
    seed: int = 0,
    options: TrainOptions | None = None,
    out_md: Path | None = Path("docs/benchmarks/synthetic.md"),
    progress: bool = True,
) -> dict[str, Any]:
    """Generate, validate, train the three models and compare them on the held-out days."""
    from pipeline.generate import generate_landing
    from pipeline.validate import validate_day

    t0 = time.perf_counter()
    opts = options or TrainOptions(epochs=6, neg_per_pos=20.0)
    settings = Settings(home=work / "home", landing=work / "landing")
    gen = generate_landing(work / "landing", customers, days, START, seed)
    all_days = day_range(START, START + timedelta(days=days - 1))
    for d in all_days:
        validate_day(settings, d)
    train_end = all_days[-test_days - 1]
    test_start = all_days[-test_days]
    labels = read_labels(settings, train_end)
    truth = pl.read_parquet(gen.truth_path).select("event_id", pl.col("is_fraud").cast(pl.Int8))

    results: dict[str, dict[str, float]] = {}
    for name, with_logins in (("bilstm", True), ("bilstm_no_logins", False)):
        data = load_events(settings, all_days, include_logins=with_logins)
        ex = select_examples(
            data, labels, START, train_end, settings.label_delay_days, settings.validation_days
        )
        test_rows = data.transaction_rows(test_start, all_days[-1])
        y, test_days_arr = _truth_of(data, test_rows, truth)
        fitted = fit_bundle(data, ex, settings.window, opts, seed, progress)
        windows, lengths = gather_windows(data.matrix, data.starts, test_rows, settings.window)
        logits = fitted.bundle.logits(windows, lengths)
        p = fitted.bundle.calibrate(logits)
        results[name] = holdout_metrics(y, p, test_days_arr, settings.alert_budget)
        results[name]["ece_uncalibrated"] = holdout_metrics(y, 1 / (1 + np.exp(-logits)), test_days_arr)[
            "ece"
        ]
        if with_logins:
            p_gbt, _ = fit_gbt(data, ex, test_rows, seed)
            results["gbt"] = holdout_metrics(y, p_gbt, test_days_arr, settings.alert_budget)
            n_test, n_fraud = len(y), int(y.sum())
    out = {
        "protocol": {
            "customers": customers,
            "days": days,
            "seed": seed,
            "train": f"{START}..{train_end}",
            "test": f"{test_start}..{all_days[-1]}",
            "n_test": n_test,
            "n_test_fraud": n_fraud,
            "options": {**opts.__dict__},
        },
        "models": results,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    if out_md is not None:
        out_md.parent.mkdir(parents=True, exist_ok=True)
        out_md.write_text(synthetic_markdown(out))
    return out


def _truth_of(data: EventData, rows: np.ndarray, truth: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    tx = data.events[rows].select("event_id", pl.col("event_time").dt.date().alias("day")).with_row_index("i")
    joined = tx.join(truth, on="event_id", how="left").sort("i")
    return joined["is_fraud"].fill_null(0).to_numpy(), joined["day"].to_numpy()


def synthetic_markdown(out: dict[str, Any]) -> str:
    """The comparison as a markdown table with its protocol and reproduce command."""
    p = out["protocol"]
    cols = ("auc_roc", "average_precision", "recall_at_1pct_fpr", "precision_at_k", "recall_at_k", "ece")
    lines = [
        "# Synthetic multi-log benchmark",
        "",
        f"Generated zone: {p['customers']} customers × {p['days']} days, seed {p['seed']}. "
        f"Train {p['train']} (labels known at its end, 7-day maturity, last 7 matured days for validation); "
        f"test {p['test']}: {p['n_test']} transactions, {p['n_test_fraud']} frauds, against the generator's truth.",
        "",
        "| model | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for name, m in out["models"].items():
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.4f}" for c in cols) + " |")
    lines += [
        "",
        "precision/recall at k: mean over test days of the top-k alerts (k = alert budget, 100). "
        "ECE: 15 equal-mass bins, after Platt calibration on the validation window"
        + (
            f"; the BiLSTM's uncalibrated ECE was {out['models']['bilstm']['ece_uncalibrated']:.4f}."
            if "bilstm" in out["models"]
            else "."
        ),
        "",
        f"Wall time {out['wall_s']:.0f} s. Reproduce: `fraudseq benchmark synthetic --customers {p['customers']} "
        f"--days {p['days']} --seed {p['seed']}`",
        "",
        "```json",
        json.dumps(p["options"], indent=2, default=str),
        "```",
    ]
    return "\n".join(lines) + "\n"
