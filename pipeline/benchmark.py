"""``fraudseq benchmark handbook``: our models on the Fraud Detection Handbook's public data and protocol.

Features come from ``features.handbook`` (computed once over the whole file, causal). For every
fold: train on its 7 training days, stop early on the 7 days *before* them (labels all known,
never the test days), score the 7 test days after the 7-day delay with known-compromised
customers removed. Scores are averaged over folds x seeds. Nothing here touches the model
registry or the ``champion`` alias: with a tracking URI it logs one plain MLflow run.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features import handbook as hb
from features.encoding import PiecewiseLinearEncoder
from features.windows import zero_left_padding
from pipeline.errors import MissingInputError, UsageError
from pipeline.metrics import auc_roc, average_precision, card_precision_at_k

DEFAULT_DATA = Path("/work/shared/data/handbook/transactions.parquet")
TABULAR = ("logreg", "gbt")
SEQUENCE = {  # name -> (cell, bidirectional)
    "rnn": ("rnn", False),
    "gru": ("gru", False),
    "lstm": ("lstm", False),
    "bilstm": ("lstm", True),
    "bilstm_last": ("lstm", True),  # the ablation: the same network on a window of 1, no history
    "bilstm_terminal": ("lstm", True),  # the customer's window interleaved with the terminal's
}
NO_HISTORY = "bilstm_last"
TERMINAL = "bilstm_terminal"
DEFAULT_MODELS = ["logreg", "gbt", "bilstm", NO_HISTORY]
BLEND = "bilstm+gbt"  # a derived row, whenever both are run: no extra training
ALL_MODELS = list(TABULAR) + list(SEQUENCE)
METRICS = ("auc_roc", "average_precision", "card_precision_at_100")
PUBLISHED = {  # handbook chapter 7, test folds: (AUC ROC, AP, card precision@100)
    "decision tree": ("0.797 ± 0.01", "0.579 ± 0.01", "0.284 ± 0.00"),
    "logistic regression": ("0.868 ± 0.02", "0.623 ± 0.02", "0.297 ± 0.01"),
    "random forest": ("0.870 ± 0.02", "0.678 ± 0.01", "0.299 ± 0.01"),
    "XGBoost": ("0.869 ± 0.01", "0.687 ± 0.01", "0.303 ± 0.01"),
    "feed-forward network": ("0.876 ± 0.01", "0.675 ± 0.01", "0.303 ± 0.02"),
    "LSTM (last 5 transactions)": ("0.876 ± 0.02", "0.665 ± 0.02", "0.297 ± 0.01"),
    "LSTM + attention": ("0.874 ± 0.02", "0.667 ± 0.01", "0.295 ± 0.01"),
}
DEFAULT_CONFIG: dict[str, Any] = {
    "window": 8,
    "logreg": {"C": 1.0},
    "gbt": {
        "n_estimators": 600,
        "learning_rate": 0.03,
        "num_leaves": 31,
        "min_child_samples": 10,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "early_stopping_rounds": 50,
    },
    "model": {"hidden": 32, "layers": 1, "dropout": 0.2, "head_hidden": 64},
    "fit": {
        "epochs": 8,
        "batch_size": 512,
        "lr": 0.002,
        "weight_decay": 1e-4,
        "patience": 3,
        "neg_per_pos": 20.0,
    },
    # share of the early-stop week's genuine windows scored after each epoch (all its frauds are kept)
    "early_stop_fraction": 0.35,
    # target-aware piecewise-linear bins of every input feature, for the sequence models
    # (features/encoding.py); max_bins 0 feeds the standardised features alone
    "encoding": {"max_bins": 8, "min_leaf": 20},
    # bilstm_terminal: how many of the terminal's latest transactions join each customer window
    "terminal_window": 8,
    # the BiLSTM + gbt row: sigmoid(w * logit(bilstm) + (1 - w) * logit(gbt)), w chosen by --tune
    "blend": {"bilstm_weight": 0.5},
}
SCENARIO_TOP = 0.01  # the scenario table counts each kind of fraud in the top 1% of a fold's scores


# ---- data of one fold ----


@dataclass
class Prepared:
    """Features of every transaction, sorted by (customer, time), with each row's window index."""

    frame: pl.DataFrame  # one row per transaction; column ``row`` is its position
    x: np.ndarray  # (N, F) raw per-event features, float32
    window_index: np.ndarray  # (N, W) rows of each transaction's window, -1 = padding
    marks: np.ndarray | None = None  # (N, W) 1 where a window row is the terminal's, not the customer's


@dataclass
class FoldData:
    """Row positions and labels of one fold's three slices, and the normaliser from training rows."""

    fold: hb.Fold
    rows: dict[str, np.ndarray]  # "train" | "early_stop" | "test" -> positions in Prepared.frame
    y: dict[str, np.ndarray]
    test: pl.DataFrame  # test transactions after removal (customer_id, day, is_fraud)
    mean: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    std: np.ndarray = field(repr=False, default_factory=lambda: np.ones(0))
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False, default_factory=dict)
    encoder: PiecewiseLinearEncoder | None = field(repr=False, default=None)
    encoding_key: str = ""  # the encoding config the cache and encoder were built with


def prepare(data: Path, window: int) -> Prepared:
    """Read the file, build the features once, and index every transaction's customer window."""
    if not data.exists():
        raise MissingInputError(f"{data}: handbook data not found (pass --data PATH)")
    frame = hb.build_features(hb.load_transactions(data))
    frame = frame.sort(["customer_id", "ts", "tx_id"]).with_row_index("row")
    x = frame.select(hb.FEATURES).to_numpy().astype(np.float32)
    return Prepared(frame, x, hb.customer_window_index(frame["customer_id"].to_numpy(), window))


def with_window(prep: Prepared, window: int) -> Prepared:
    """The same features with another window length (for tuning)."""
    return Prepared(
        prep.frame, prep.x, hb.customer_window_index(prep.frame["customer_id"].to_numpy(), window)
    )


def with_terminal(prep: Prepared, terminal_window: int) -> Prepared:
    """Each customer window interleaved, in time order, with the terminal's last ``terminal_window``
    transactions before the scored one (``features.handbook.interleave_windows``)."""
    ts = prep.frame["ts"].dt.epoch("us").to_numpy()
    order = np.lexsort((prep.frame["tx_id"].to_numpy(), ts))  # all rows by (time, id)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    terminal = hb.terminal_window_index(prep.frame["terminal_id"].to_numpy(), rank, terminal_window)
    idx, marks = hb.interleave_windows(
        prep.window_index, terminal, rank, prep.frame["customer_id"].to_numpy()
    )
    return Prepared(prep.frame, prep.x, idx, marks)


def fold_data(prep: Prepared, fold: hb.Fold) -> FoldData:
    """Split one fold; the normaliser is fit on the training rows only."""
    parts = {
        "train": hb.train_rows(prep.frame, fold),
        "early_stop": hb.early_stop_rows(prep.frame, fold),
        "test": hb.test_rows(prep.frame, fold),
    }
    rows = {k: v["row"].to_numpy() for k, v in parts.items()}
    train_x = prep.x[rows["train"]]
    return FoldData(
        fold=fold,
        rows=rows,
        y={k: v["is_fraud"].to_numpy().astype(np.int64) for k, v in parts.items()},
        test=parts["test"].select("customer_id", "day", "is_fraud", *_scenario(parts["test"])),
        mean=train_x.mean(axis=0),
        std=train_x.std(axis=0) + 1e-6,
    )


def _scenario(frame: pl.DataFrame) -> list[str]:
    return ["scenario"] if "scenario" in frame.columns else []


def scaled(prep: Prepared, fd: FoldData, part: str) -> np.ndarray:
    """(B, F) normalised features of one slice's transactions."""
    return (prep.x[fd.rows[part]] - fd.mean) / fd.std


def use_encoding(prep: Prepared, fd: FoldData, encoding: dict[str, Any] | None) -> None:
    """Fit the fold's piecewise-linear encoder on its training rows (once per encoding config).

    Only training transactions and their labels place the bin edges: the early-stop and test
    weeks are encoded with edges they never influenced.
    """
    enc = dict(encoding or {})
    key = json.dumps(enc, sort_keys=True)
    if key == fd.encoding_key:
        return
    fd.cache.clear()
    fd.encoding_key = key
    bins = int(enc.get("max_bins", 0))
    fd.encoder = (
        PiecewiseLinearEncoder.fit(
            prep.x[fd.rows["train"]], fd.y["train"], max_bins=bins, min_leaf=int(enc.get("min_leaf", 20))
        )
        if bins >= 2
        else None
    )


def windows(prep: Prepared, fd: FoldData, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(B, W, F') left-padded windows and their lengths for one slice (cached per fold).

    Each event is its standardised features, then, with an encoder, its piecewise-linear bins
    (already in [0, 1], so not standardised). Padding positions are all zeros.
    """
    kind = "customer" if prep.marks is None else "interleaved"
    key = f"{part}/{prep.window_index.shape[1]}/{kind}"  # one entry per slice, window length and kind
    if key not in fd.cache:
        index = prep.window_index[fd.rows[part]]  # (B, W) rows of prep.x, -1 = padding
        valid = index >= 0  # (B, W)
        # each event sits in up to W windows: encode every event the slice reads once, then gather
        events = np.unique(index[valid])  # (U,) sorted
        raw = prep.x[events]  # (U, F)
        per_event = ((raw - fd.mean) / fd.std).astype(np.float32)  # (U, F)
        if fd.encoder is not None:
            per_event = np.concatenate([per_event, fd.encoder.transform(raw)], axis=1)  # (U, F + K)
        if prep.marks is not None:  # one more input: 1 on the terminal's rows (a per-window fact)
            per_event = np.concatenate([per_event, np.zeros((len(events), 1), np.float32)], axis=1)
        x = per_event[np.searchsorted(events, np.where(valid, index, -1))]  # (B, W, F'); padding -> any row
        if prep.marks is not None:
            x[:, :, -1] = prep.marks[fd.rows[part]]
        lengths = valid.sum(axis=1).astype(np.int64)  # (B,)
        x = zero_left_padding(x, lengths)
        fd.cache[key] = (x, lengths)
    return fd.cache[key]


# ---- models ----


def score_logreg(prep: Prepared, fd: FoldData, cfg: dict[str, Any], seed: int) -> np.ndarray:
    """Logistic regression on the normalised per-event features."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=cfg["C"], max_iter=1000, random_state=seed)
    model.fit(scaled(prep, fd, "train"), fd.y["train"])
    return model.predict_proba(scaled(prep, fd, "test"))[:, 1]


def score_gbt(prep: Prepared, fd: FoldData, cfg: dict[str, Any], seed: int) -> np.ndarray:
    """LightGBM on the same per-event features, early-stopped on the week before training."""
    import lightgbm as lgb

    params = {k: v for k, v in cfg.items() if k != "early_stopping_rounds"}
    model = lgb.LGBMClassifier(**params, random_state=seed, n_jobs=2, verbose=-1)
    model.fit(
        prep.x[fd.rows["train"]],
        fd.y["train"],
        eval_X=(prep.x[fd.rows["early_stop"]],),
        eval_y=(fd.y["early_stop"],),
        eval_metric="average_precision",
        callbacks=[lgb.early_stopping(cfg["early_stopping_rounds"], verbose=False)],
    )
    return np.asarray(model.predict_proba(prep.x[fd.rows["test"]]))[:, 1]


def early_stop_sample(y: np.ndarray, fraction: float) -> np.ndarray:
    """All frauds and a fixed random ``fraction`` of the genuine windows: picking the epoch needs a
    ranking, not a calibrated AP, and scoring a whole week after every epoch costs more than training."""
    rng = np.random.default_rng(12345)
    return np.flatnonzero((y == 1) | (rng.random(len(y)) < fraction))


def score_sequence(
    name: str, prep: Prepared, fd: FoldData, cfg: dict[str, Any], seed: int, progress: bool
) -> tuple[np.ndarray, dict[str, Any]]:
    """Train one recurrent model on the customer windows; returns test scores and fit details."""
    import torch

    from pipeline.fit import FitConfig, fit_sequence_model, predict_logits
    from pipeline.model import SequenceModelConfig

    torch.set_num_threads(2)
    cell, bidirectional = SEQUENCE[name]
    if name == NO_HISTORY:  # same features, encoding and network, but only the scored transaction
        prep = with_window(prep, 1)
    if name == TERMINAL:
        prep = with_terminal(prep, int(cfg.get("terminal_window", 8)))
    use_encoding(prep, fd, cfg.get("encoding"))
    x_tr, len_tr = windows(prep, fd, "train")
    model_cfg = SequenceModelConfig(
        n_features=x_tr.shape[2], cell=cell, bidirectional=bidirectional, **cfg["model"]
    )
    x_es, len_es = windows(prep, fd, "early_stop")
    keep = early_stop_sample(fd.y["early_stop"], cfg["early_stop_fraction"])
    result = fit_sequence_model(
        x_tr,
        len_tr,
        fd.y["train"],
        x_es[keep],
        len_es[keep],
        fd.y["early_stop"][keep],
        model_cfg,
        FitConfig.from_dict(cfg["fit"]),
        seed=seed,
        device=torch.device("cpu"),
        progress=progress,
    )
    x_te, len_te = windows(prep, fd, "test")
    logits = predict_logits(result.model, x_te, len_te)
    detail = {
        "best_epoch": result.best_epoch,
        "train_windows_per_s": round(result.train_windows_per_s, 1),
        "inputs_per_event": int(x_tr.shape[2]),
    }
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64))), detail


def score_model(
    name: str, prep: Prepared, fd: FoldData, config: dict[str, Any], seed: int, progress: bool
) -> tuple[np.ndarray, dict[str, Any]]:
    """Test-day scores of one model on one fold."""
    if name == "logreg":
        return score_logreg(prep, fd, config["logreg"], seed), {}
    if name == "gbt":
        return score_gbt(prep, fd, config["gbt"], seed), {}
    return score_sequence(name, prep, fd, config, seed, progress)


def blend_scores(bilstm: np.ndarray, gbt: np.ndarray, weight: float) -> np.ndarray:
    """Probabilities of ``sigmoid(weight * logit(bilstm) + (1 - weight) * logit(gbt))``."""
    eps = 1e-7
    logit = lambda p: np.log(np.clip(p, eps, 1 - eps)) - np.log1p(-np.clip(p, eps, 1 - eps))  # noqa: E731
    z = weight * logit(bilstm) + (1.0 - weight) * logit(gbt)
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def scenario_recall(test: pl.DataFrame, scores: np.ndarray, top: float = SCENARIO_TOP) -> dict[str, float]:
    """Share of each fraud scenario's test transactions that rank in the top ``top`` of the scores.

    Diagnostics only: the scenario column is never a feature. Empty when the file has none.
    """
    if "scenario" not in test.columns or not len(scores):
        return {}
    k = max(1, int(round(top * len(scores))))
    in_top = np.zeros(len(scores), dtype=bool)
    in_top[np.argsort(-scores, kind="stable")[:k]] = True
    scenario = test["scenario"].to_numpy()
    return {
        f"top_recall_scenario_{int(s)}": float(in_top[scenario == s].mean())
        for s in sorted(set(scenario.tolist()) - {0})
    }


def fold_metrics(test: pl.DataFrame, scores: np.ndarray) -> dict[str, float]:
    """AUC ROC, AP and card precision@100 of one fold's (already filtered) test transactions,
    and, where the file has its scenarios, the top-1% recall of each."""
    y = test["is_fraud"].to_numpy()
    cp, _ = card_precision_at_k(test.with_columns(score=pl.Series(scores)), k=100)
    return {
        "auc_roc": auc_roc(y, scores),
        "average_precision": average_precision(y, scores),
        "card_precision_at_100": cp,
        **scenario_recall(test, scores),
    }


# ---- aggregation and output ----


def summarise(folds: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Mean and (population) std of each metric over folds x seeds, per model."""
    out: dict[str, dict[str, list[float]]] = {}
    for name in dict.fromkeys(f["model"] for f in folds):
        rows = [f for f in folds if f["model"] == name]
        out[name] = {
            m: [round(float(np.mean([r[m] for r in rows])), 4), round(float(np.std([r[m] for r in rows])), 4)]
            for m in METRICS
        }
    return out


def wins_over(
    folds: list[dict[str, Any]], name: str, ref: str = "gbt", metric: str = "average_precision"
) -> str:
    """On how many folds the seed-mean of ``name`` beats that of ``ref``: 'k/n', or '' if either is missing."""
    by_fold: dict[tuple[str, str], list[float]] = {}
    for f in folds:
        by_fold.setdefault((f["model"], f["fold"]), []).append(f[metric])
    names = sorted({fold for (_, fold) in by_fold})
    pairs = [(by_fold.get((name, n)), by_fold.get((ref, n))) for n in names]
    if not pairs or any(a is None or b is None for a, b in pairs):
        return ""
    won = sum(np.mean(a) > np.mean(b) for a, b in pairs)  # type: ignore[arg-type]
    return f"{won}/{len(pairs)}"


def fmt(pair: list[float]) -> str:
    return f"{pair[0]:.3f} ± {pair[1]:.3f}"


def print_table(models: dict[str, dict[str, list[float]]], wall_s: float, folds: str = "test") -> None:
    """The result table, on stderr (stdout stays free for --json)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"handbook benchmark, {folds} folds (mean ± std over folds x seeds), {wall_s:.0f} s")
    for col in ("model", "AUC ROC", "average precision", "card precision@100"):
        table.add_column(col)
    for name, m in models.items():
        table.add_row(name, *(fmt(m[k]) for k in METRICS))
    Console(stderr=True).print(table)


def render_markdown(result: dict[str, Any], command: str) -> str:
    """The published-style table with the handbook's numbers alongside, and how to reproduce it."""
    models, folds = result["models"], result["folds"]
    trial = result.get("fold_kind") == "validation"
    lines = [
        "# Handbook benchmark" + (", validation folds (a trial, not the published table)" if trial else ""),
        "",
        "Our models on the public simulated transactions of the *Fraud Detection Handbook*",
        "(Le Borgne et al.), with its protocol: 4 test folds of 7 training days, a 7-day delay and",
        "7 test days; customers known compromised on a test day are removed; card precision@100",
        "drops the cards caught on earlier test days. Mean ± std over 4 folds x "
        f"{len(result['seeds'])} seeds ({', '.join(map(str, result['seeds']))}).",
        "",
        f"Reproduce: `{command}` (wall time of this run: {result['wall_s']:.0f} s on {result['machine']}).",
        "",
        "## Ours (measured)",
        "",
        "| model | AUC ROC | average precision | card precision@100 | AP beats gbt on folds |",
        "|---|---|---|---|---|",
    ]
    for name, m in models.items():
        wins = wins_over(folds, name) if name != "gbt" else "-"
        lines.append(f"| {name} | " + " | ".join(fmt(m[k]) for k in METRICS) + f" | {wins} |")
    lines += scenario_lines(folds)
    lines += ["", "## Published (handbook, chapter 7, test folds)", ""]
    lines += ["| model | AUC ROC | average precision | card precision@100 |", "|---|---|---|---|"]
    lines += [f"| {name} | " + " | ".join(v) + " |" for name, v in PUBLISHED.items()]
    lines += [
        "",
        "## Per fold (mean over seeds)",
        "",
        "| model | fold (train start) | AUC ROC | AP | CP@100 |",
    ]
    lines += ["|---|---|---|---|---|"]
    for (name, fold), rows in _by_model_fold(folds).items():
        vals = " | ".join(f"{np.mean([r[m] for r in rows]):.3f}" for m in METRICS)
        lines.append(f"| {name} | {fold} | {vals} |")
    lines += ["", "## Setup", "", *result["notes"], "", "Config used:", "", "```json"]
    lines += [json.dumps(result["config"], indent=2), "```", ""]
    return "\n".join(lines)


def scenario_lines(folds: list[dict[str, Any]]) -> list[str]:
    """Markdown table: per model, the mean top-1% recall of each fraud scenario (if the file has them)."""
    keys = sorted({k for f in folds for k in f if k.startswith("top_recall_scenario_")})
    if not keys:
        return []
    names = {"1": "1: amount over 220", "2": "2: compromised terminal", "3": "3: compromised customer"}
    labels = [names.get(k.rsplit("_", 1)[1], k.rsplit("_", 1)[1]) for k in keys]
    lines = [
        "",
        f"## Which frauds each model finds (share of each scenario in the top {SCENARIO_TOP:.0%} of scores)",
        "",
        "The file's `TX_FRAUD_SCENARIO` is read for this table only; no model sees it.",
        "",
        "| model | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for name in dict.fromkeys(f["model"] for f in folds):
        rows = [f for f in folds if f["model"] == name]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{np.mean([r.get(k, np.nan) for r in rows]):.3f}" for k in keys)
            + " |"
        )
    return lines


def _by_model_fold(folds: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for f in folds:
        grouped.setdefault((f["model"], f["fold"]), []).append(f)
    return grouped


NOTES = [
    f"- Features ({len(hb.FEATURES)} per event, `features/handbook.py`): log amount, night/weekend flags,"
    " hour of day; customer counts and mean amounts over 1/7/30 days, 30-day spread, time since the"
    " previous transaction, amount ratios to the 30-day mean and to the mean of the 30 days ending 7"
    " days ago; terminal counts over 1/7/30 days, and over the same windows shifted back by the 7-day"
    " label delay the known transactions, their fraud rate, and the age of the terminal's latest and"
    " earliest known fraud; the terminal's latest known outcomes in order: the age of its latest known"
    " genuine transaction, the known frauds after it, and the fraud share of its known transactions"
    " since its earliest known fraud. A label is used only once its transaction is >= 7 days old.",
    "- Sequence models read the customer's last `window` transactions (left-padded), each described by"
    " those per-event features; `gbt` and `logreg` read the same features of the scored transaction.",
    f"- `{NO_HISTORY}` is the ablation of the customer's history: the BiLSTM's features, encoding, network"
    " and training on a window of 1, the scored transaction alone. What `bilstm` gains over it comes"
    " from the earlier transactions and their order.",
    "- With `encoding.max_bins` >= 2 each event also carries a target-aware piecewise-linear encoding of"
    " every feature (`features/encoding.py`): a `max_bins`-leaf decision tree per feature, fitted on the"
    " fold's training rows and labels only, places the bin edges, and each bin is one input ramping"
    " from 0 to 1 across it. It gives the network the sharp thresholds a tree finds with one split.",
    "- Early stopping (epochs for the sequence models, rounds for gbt) uses the 7 days before each fold's"
    " training week, whose labels are all known; the test days are never used for any choice.",
    "- Sequence models train each epoch on all training frauds plus a fresh draw of `neg_per_pos` genuine"
    " windows per fraud, and pick the epoch by AP on all early-stop frauds plus a fixed"
    " `early_stop_fraction` of its genuine windows (CPU time).",
    "- The normaliser (mean/std) is fit on each fold's training transactions only.",
    f"- `{BLEND}` is not trained: it is sigmoid(w x logit(bilstm) + (1 - w) x logit(gbt)) of the two models'"
    " scores of the same seed, with w (`blend.bilstm_weight`) chosen by `--tune` on the validation folds.",
    "- Hyper-parameters come from `docs/benchmarks/handbook-config.json`; `--tune` rebuilds it with a small"
    " grid search on the 4 validation folds (training starts 2018-07-11, 07-04, 06-27, 06-20): gbt leaves"
    " and leaf size, then the BiLSTM's window and encoding bins, then the decay of its weight average,"
    " then the blend weight.",
    "- With `fit.ema` set, training keeps an exponential moving average of the weights (updated after every"
    " step); each epoch is validated, and the best one kept, with the averaged weights.",
]


def log_to_mlflow(
    result: dict[str, Any], tracking_uri: str, markdown: str, curves: list[dict[str, Any]]
) -> str:
    """One plain MLflow run: params, metrics, the table and two plots. No registry, no alias."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("fraudseq-benchmark-handbook")
    with mlflow.start_run(run_name="handbook") as run:
        mlflow.log_params(
            {"models": ",".join(result["models"]), "seeds": ",".join(map(str, result["seeds"]))}
        )
        mlflow.log_params({"window": result["config"]["window"], "folds": result.get("fold_kind", "test")})
        for name, m in result["models"].items():
            key = name.replace("+", "_plus_")  # MLflow metric names allow no "+"
            for metric, (mean, std) in m.items():
                mlflow.log_metric(f"{key}.{metric}.mean", mean)
                mlflow.log_metric(f"{key}.{metric}.std", std)
        mlflow.log_metric("wall_s", result["wall_s"])
        mlflow.log_text(markdown, "handbook.md")
        mlflow.log_dict(result["config"], "handbook-config.json")
        mlflow.log_figure(pr_curve_figure(curves), "pr_curves.png")
        mlflow.log_figure(score_histogram_figure(curves), "score_histograms.png")
        return str(run.info.run_id)


def pr_curve_figure(curves: list[dict[str, Any]]) -> Any:
    """Precision-recall curves of each model on the first test fold (seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    fig, ax = plt.subplots(figsize=(6, 5))
    for c in curves:
        precision, recall, _ = precision_recall_curve(c["y"], c["score"])
        ax.plot(recall, precision, label=c["model"])
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"PR curves, test fold {curves[0]['fold'] if curves else ''}")
    ax.legend()
    return fig


def score_histogram_figure(curves: list[dict[str, Any]]) -> Any:
    """Score histograms of genuine vs fraud transactions per model (first test fold, seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(len(curves), 1), figsize=(4 * max(len(curves), 1), 3.5), squeeze=False)
    for ax, c in zip(axes[0], curves, strict=False):
        y, s = np.asarray(c["y"]), np.asarray(c["score"])
        ax.hist(s[y == 0], bins=50, alpha=0.6, density=True, label="genuine", log=True)
        ax.hist(s[y == 1], bins=50, alpha=0.6, density=True, label="fraud", log=True)
        ax.set_title(c["model"])
        ax.legend()
    return fig


# ---- config and tuning ----


def load_config(path: Path) -> dict[str, Any]:
    """The hyper-parameters: the JSON file's values over the defaults."""
    config = json.loads(json.dumps(DEFAULT_CONFIG))
    if path.exists():
        stored = json.loads(path.read_text())
        for key, value in stored.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key].update(value)
            else:
                config[key] = value
    return config


TUNE_GRID: dict[str, list[Any]] = {
    "window": [8, 16, 32],
    "encoding.max_bins": [0, 4, 8],
}
GBT_GRID: dict[str, list[Any]] = {"num_leaves": [15, 31, 63], "min_child_samples": [5, 20]}
# then, at the chosen window and bins: the decay of the weight average kept by training (None: off)
EMA_GRID: list[float | None] = [None, 0.98, 0.99, 0.995]


def _set(config: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(config))
    *parents, leaf = dotted.split(".")
    node = out
    for p in parents:
        node = node[p]
    node[leaf] = value
    return out


def apply_override(config: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``config`` with the dotted ``key`` set to ``value``; an unknown key is a usage error.

    ``model.*`` and ``fit.*`` may name any field of ``SequenceModelConfig`` / ``FitConfig`` (e.g.
    ``model.skip``, ``fit.loss``); other keys must already be in the configuration.
    """
    from pipeline.fit import FitConfig
    from pipeline.model import SequenceModelConfig

    section, _, leaf = key.partition(".")
    known = {
        "model": {
            f
            for f in SequenceModelConfig.__dataclass_fields__
            if f not in ("n_features", "cell", "bidirectional")
        },
        "fit": set(FitConfig.__dataclass_fields__),
    }
    if section in known:
        ok = leaf in known[section]
    elif leaf:
        ok = isinstance(config.get(section), dict) and leaf in config[section]
    else:
        ok = section in config and not isinstance(config[section], dict)
    if not ok:
        raise UsageError(f"--set {key}: no such setting in the benchmark configuration")
    return _set(config, key, value)


def mean_ap(
    name: str, prep: Prepared, folds: Iterable[hb.Fold], config: dict[str, Any], seed: int, progress: bool
) -> float:
    """Mean test AP of one model over the given (validation) folds.

    One fold's data at a time, dropped after it is scored: at window 32 with 8 bins a fold's
    encoded windows take several GB, and a grid that held all four (twice over, while the next
    candidate's were built) ran out of 24 GB.
    """
    aps = []
    for fold in folds:
        fd = fold_data(prep, fold)
        scores, _ = score_model(name, prep, fd, config, seed, progress)
        aps.append(average_precision(fd.test["is_fraud"].to_numpy(), scores))
        del fd
    return float(np.mean(aps))


def tune_config(prep: Prepared, config: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Grid search on the validation folds only: gbt leaves, then the BiLSTM window and encoding bins,
    then the decay of its weight average (``fit.ema``), then the blend weight."""
    val = hb.handbook_folds("validation")
    best = (-1.0, config)
    for values in itertools.product(*GBT_GRID.values()):
        cand = config
        for key, v in zip(GBT_GRID, values, strict=True):
            cand = _set(cand, f"gbt.{key}", v)
        ap = mean_ap("gbt", prep, val, cand, 0, False)
        _log(f"tune gbt {dict(zip(GBT_GRID, values, strict=True))}: AP {ap:.4f}")
        best = max(best, (ap, cand), key=lambda t: t[0])
    config = best[1]
    best = (-1.0, config)
    for values in itertools.product(*TUNE_GRID.values()):
        cand = config
        for key, v in zip(TUNE_GRID, values, strict=True):
            cand = _set(cand, key, v)
        ap = mean_ap("bilstm", with_window(prep, cand["window"]), val, cand, 0, progress)
        _log(f"tune bilstm {dict(zip(TUNE_GRID, values, strict=True))}: AP {ap:.4f}")
        best = max(best, (ap, cand), key=lambda t: t[0])
    windowed = with_window(prep, best[1]["window"])
    measured = best[1]["fit"].get("ema")  # the grid above already ran with this decay
    for decay in EMA_GRID:
        if decay == measured:
            continue
        cand = _set(best[1], "fit.ema", decay)
        ap = mean_ap("bilstm", windowed, val, cand, 0, progress)
        _log(f"tune bilstm {{'fit.ema': {decay}}}: AP {ap:.4f}")
        best = max(best, (ap, cand), key=lambda t: t[0])
    return tune_blend(windowed, best[1], progress)


BLEND_GRID = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


def tune_blend(prep: Prepared, config: dict[str, Any], progress: bool) -> dict[str, Any]:
    """The BiLSTM weight of the blend row, by mean AP on the validation folds (seed 0)."""
    pairs = []
    for fold in hb.handbook_folds("validation"):
        fd = fold_data(prep, fold)
        scores = {m: score_model(m, prep, fd, config, 0, progress)[0] for m in ("gbt", "bilstm")}
        pairs.append((fd.test["is_fraud"].to_numpy(), scores))
    best = (-1.0, 0.5)
    for w in BLEND_GRID:
        ap = float(np.mean([average_precision(y, blend_scores(s["bilstm"], s["gbt"], w)) for y, s in pairs]))
        _log(f"tune blend bilstm_weight {w}: AP {ap:.4f}")
        best = max(best, (ap, w), key=lambda t: t[0])
    return _set(config, "blend.bilstm_weight", best[1])


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- the entry point ----


def resolve_models(models: list[str]) -> list[str]:
    """Expand ``all``, keep the canonical order, reject unknown names."""
    names = ALL_MODELS if "all" in models else list(models)
    unknown = sorted(set(names) - set(ALL_MODELS))
    if unknown:
        raise UsageError(f"--models: unknown {unknown}; choose from {ALL_MODELS} or all")
    return [m for m in ALL_MODELS if m in names]


def run_handbook_benchmark(
    data: Path,
    models: list[str],
    seeds: list[int] = [0, 1, 2],  # noqa: B006 - part of the published signature, never mutated
    tune: bool = False,
    config_path: Path = Path("docs/benchmarks/handbook-config.json"),
    out_md: Path | None = Path("docs/benchmarks/handbook.md"),
    tracking_uri: str | None = None,
    progress: bool = True,
    folds: str = "test",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the handbook protocol; returns ``{"models": {NAME: {metric: [mean, std]}}, "wall_s", "folds"}``.

    ``folds="validation"`` scores the 4 validation folds instead of the test folds (for trying a
    setting the way ``--tune`` would); such a run never writes ``out_md``, whose table is the
    test folds'. ``overrides`` (dotted key -> value) are applied over the stored configuration.
    """
    started = time.perf_counter()
    names = resolve_models(models or DEFAULT_MODELS)
    if folds not in ("test", "validation"):
        raise UsageError(f"--folds must be test or validation, got {folds!r}")
    config = load_config(config_path)
    prep = prepare(Path(data), config["window"])
    _log(
        f"features: {prep.x.shape[0]} transactions x {prep.x.shape[1]} ({time.perf_counter() - started:.1f} s)"
    )
    if tune:
        config = tune_config(prep, config, progress)
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(json.dumps(config, indent=2) + "\n")
    for key, value in (overrides or {}).items():
        config = apply_override(config, key, value)
    if config["window"] != prep.window_index.shape[1]:  # after --tune or --set window=...
        prep = with_window(prep, config["window"])

    evaluated = hb.handbook_folds(folds)
    fold_rows: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    blend = "gbt" in names and "bilstm" in names
    for fold in evaluated:
        fd = fold_data(prep, fold)
        kept: dict[tuple[str, int], np.ndarray] = {}
        for name in [*names, *([BLEND] if blend else [])]:
            for seed in seeds:
                t0 = time.perf_counter()
                detail: dict[str, Any] = {}
                if name == BLEND:
                    w = float(config["blend"]["bilstm_weight"])
                    scores = blend_scores(kept["bilstm", seed], kept["gbt", seed], w)
                else:
                    scores, detail = score_model(name, prep, fd, config, seed, progress)
                kept[name, seed] = scores
                row = {"model": name, "fold": fold.name, "seed": seed, **fold_metrics(fd.test, scores)}
                row.update(detail, seconds=round(time.perf_counter() - t0, 1))
                fold_rows.append(row)
                _log(
                    f"{name:7s} fold {fold.name} seed {seed}: AP {row['average_precision']:.4f} "
                    f"CP@100 {row['card_precision_at_100']:.4f} ({row['seconds']} s)"
                )
                if fold == evaluated[0] and seed == seeds[0]:
                    curves.append(
                        {
                            "model": name,
                            "fold": fold.name,
                            "y": fd.test["is_fraud"].to_numpy(),
                            "score": scores,
                        }
                    )

    result: dict[str, Any] = {
        "models": summarise(fold_rows),
        "wall_s": round(time.perf_counter() - started, 1),
        "folds": fold_rows,
        "fold_kind": folds,
        "seeds": list(seeds),
        "config": config,
        "notes": NOTES,
        "machine": _machine(),
    }
    print_table(result["models"], result["wall_s"], folds)
    markdown = render_markdown(result, _command(names, tune, folds, overrides or {}))
    if out_md is not None and folds == "test":
        out_md.parent.mkdir(parents=True, exist_ok=True)
        out_md.write_text(markdown)
    if tracking_uri:
        result["run_id"] = log_to_mlflow(result, tracking_uri, markdown, curves)
    return result


def _command(
    names: list[str], tune: bool, folds: str = "test", overrides: dict[str, Any] | None = None
) -> str:
    cmd = "fraudseq benchmark handbook"
    if names == ALL_MODELS:
        cmd += " --models all"
    elif names != DEFAULT_MODELS:
        cmd += " --models " + ",".join(names)
    cmd += " --tune" if tune else ""
    cmd += " --folds validation" if folds == "validation" else ""
    return cmd + "".join(f" --set {k}={json.dumps(v)}" for k, v in (overrides or {}).items())


def _machine() -> str:
    import os
    import platform

    return f"{platform.machine()} Linux, {os.cpu_count()} CPU cores, CPU only"
