"""Handbook protocol: fold dates, test-day removal, delayed labels, causality, no leakage."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from features import handbook as hb

T0 = datetime(2018, 4, 1)


def frame(rows: list[tuple[float, int, int, float, int]]) -> pl.DataFrame:
    """Handbook-shaped rows from (days after 2018-04-01, customer, terminal, amount, fraud)."""
    return hb.normalise_columns(
        pl.DataFrame(
            {
                "TRANSACTION_ID": list(range(len(rows))),
                "TX_DATETIME": [T0 + timedelta(days=r[0]) for r in rows],
                "CUSTOMER_ID": [r[1] for r in rows],
                "TERMINAL_ID": [r[2] for r in rows],
                "TX_AMOUNT": [r[3] for r in rows],
                "TX_FRAUD": [r[4] for r in rows],
            }
        )
    )


def random_frame(n: int = 3000, days: int = 120, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, days, n))
    return frame(
        [
            (
                float(t[i]),
                int(rng.integers(0, 30)),
                int(rng.integers(0, 15)),
                float(rng.gamma(2, 30)),
                int(rng.random() < 0.05),
            )
            for i in range(n)
        ]
    )


# ---- folds ----


def test_test_fold_dates_follow_the_readme() -> None:
    folds = hb.handbook_folds("test")
    assert [f.train_start for f in folds] == [
        date(2018, 8, 15),
        date(2018, 8, 8),
        date(2018, 8, 1),
        date(2018, 7, 25),
    ]
    last = folds[-1].dates()
    assert last["train"] == "2018-07-25..2018-07-31"
    assert last["test"] == "2018-08-08..2018-08-14"
    assert last["early_stop"] == "2018-07-18..2018-07-24"
    assert folds[0].dates()["test"] == "2018-08-29..2018-09-04"


def test_validation_folds_never_overlap_test_days_of_any_test_fold_training() -> None:
    val = hb.handbook_folds("validation")
    assert [f.train_start for f in val] == [
        date(2018, 7, 11),
        date(2018, 7, 4),
        date(2018, 6, 27),
        date(2018, 6, 20),
    ]
    first_test_day = min(f.test_range[0] for f in hb.handbook_folds("test"))
    assert all(f.test_range[1] < first_test_day for f in val)


def test_day_index_matches_tx_time_days() -> None:
    assert hb.day_index(date(2018, 4, 1)) == 0
    assert hb.day_index(date(2018, 7, 25)) == 115


# ---- test-day removal ----


def test_removal_drops_customers_with_a_fraud_at_least_eight_days_before() -> None:
    fold = hb.Fold(date(2018, 4, 1))  # train days 0..6, test days 14..20
    rows = [
        (2.5, 1, 0, 10.0, 1),  # customer 1: fraud in training -> removed on every test day
        (14.5, 1, 0, 10.0, 0),
        (10.5, 2, 0, 10.0, 1),  # customer 2: fraud in the delay, day 10 -> known from day 18
        (17.5, 2, 0, 10.0, 0),  # day 17: 10 > 17 - 8 -> kept
        (18.5, 2, 0, 10.0, 0),  # day 18: 10 <= 18 - 8 -> removed
        (15.5, 3, 0, 10.0, 1),  # customer 3: fraud on test day 15 -> still scored on day 20
        (20.5, 3, 0, 10.0, 1),
        (-5.0 + 100, 4, 0, 10.0, 0),  # unrelated
    ]
    df = frame([r for r in rows if r[0] >= 0])
    kept = hb.test_rows(df, fold).select("customer_id", "day").rows()
    assert (1, 14) not in kept
    assert (2, 17) in kept and (2, 18) not in kept
    assert (3, 15) in kept and (3, 20) in kept


def test_removal_ignores_frauds_before_the_training_week() -> None:
    fold = hb.Fold(date(2018, 4, 11))  # train days 10..16, test days 24..30
    df = frame([(3.5, 1, 0, 10.0, 1), (25.5, 1, 0, 10.0, 0)])
    assert hb.test_rows(df, fold).height == 1


def test_removal_agrees_with_pipeline_metrics() -> None:
    from pipeline.metrics import drop_known_compromised

    df = random_frame(n=4000, days=40, seed=3)
    fold = hb.Fold(date(2018, 4, 11))
    lo, hi = fold.train_range[0], fold.test_range[1]
    theirs = drop_known_compromised(
        df.filter(pl.col("day").is_between(lo, hi)).select("tx_id", "customer_id", "day", "is_fraud")
    )
    theirs = theirs.filter(pl.col("day") >= fold.test_range[0])
    assert sorted(hb.test_rows(df, fold)["tx_id"].to_list()) == sorted(theirs["tx_id"].to_list())


# ---- delayed labels ----


def test_terminal_fraud_rate_never_uses_a_label_younger_than_seven_days() -> None:
    seven = 7.0
    rows = [
        (10.0, 1, 5, 10.0, 1),  # a fraud at terminal 5
        (10.0 + seven - 1e-4, 2, 5, 10.0, 0),  # just under 7 days later: label unknown
        (10.0 + seven, 3, 5, 10.0, 0),  # exactly 7 days later: label known
        (10.0 + seven + 0.5, 4, 5, 10.0, 0),
        (10.0 + 7 + 30.5, 5, 5, 10.0, 0),  # past the 30-day known window
    ]
    feats = hb.build_features(frame(rows)).sort("customer_id")
    risk = feats["t_risk_1d"].to_list()
    risk30 = feats["t_risk_30d"].to_list()
    assert risk[1] == 0.0 and risk30[1] == 0.0 and feats["t_last_fraud_age"][1] == 38.0
    assert risk[2] == 1.0 and feats["t_last_fraud_age"][2] == pytest.approx(7.0)
    assert risk30[3] == 1.0 and feats["t_first_fraud_age"][3] == pytest.approx(7.5)
    assert risk30[4] == 0.0 and feats["t_first_fraud_age"][4] == 38.0


def test_terminal_label_streaks_read_the_known_outcomes_in_order() -> None:
    rows = [
        (10.0, 1, 5, 10.0, 1),  # fraud
        (11.0, 2, 5, 10.0, 0),  # genuine
        (12.0, 3, 5, 10.0, 1),  # fraud
        (12.5, 4, 5, 10.0, 1),  # fraud
        (17.5, 10, 5, 10.0, 0),  # knows up to 10.5: the first fraud only, no genuine yet
        (18.2, 11, 5, 10.0, 0),  # knows up to 11.2: fraud then genuine
        (19.0, 12, 5, 10.0, 0),  # knows up to exactly 12.0: that fraud counts
        (19.5 - 1e-4, 13, 5, 10.0, 0),  # just under 7 days after the fraud at 12.5: not yet known
        (20.0, 14, 5, 10.0, 0),  # knows both frauds after the genuine
        (48.5, 15, 5, 10.0, 0),  # the genuine probes above are known by now: the streak is over
        (20.0, 16, 6, 10.0, 0),  # another terminal: nothing known
        (1.0, 17, 7, 10.0, 1),  # a lone fraud at terminal 7
        (30.0, 18, 7, 10.0, 1),  # knows the lone fraud, inside the 30-day known window; a fraud itself
        (38.5, 19, 7, 10.0, 0),  # knows only the fraud at 30: the one at 1.0 left the window
    ]
    f = hb.build_features(frame(rows)).sort("customer_id")
    age = dict(zip(f["customer_id"].to_list(), f["t_last_genuine_age"].to_list(), strict=True))
    streak = dict(
        zip(f["customer_id"].to_list(), np.expm1(f["t_n_fraud_streak"].to_numpy()).round(), strict=True)
    )
    assert age[10] == 38.0 and streak[10] == 1
    assert age[11] == pytest.approx(7.2) and streak[11] == 0
    assert age[12] == pytest.approx(8.0) and streak[12] == 1
    assert age[13] == pytest.approx(8.5 - 1e-4) and streak[13] == 1
    assert age[14] == pytest.approx(9.0) and streak[14] == 2
    assert age[15] == pytest.approx(28.5) and streak[15] == 0
    assert age[16] == 38.0 and streak[16] == 0
    assert age[18] == 38.0 and streak[18] == 1
    assert age[19] == 38.0 and streak[19] == 1
    since_first = dict(zip(f["customer_id"].to_list(), f["t_risk_since_first_fraud"].to_list(), strict=True))
    expected = {10: 1.0, 11: 1 / 2, 12: 2 / 3, 13: 2 / 3, 14: 3 / 4, 15: 2 / 7, 16: 0.0, 18: 1.0, 19: 1.0}
    assert {c: since_first[c] for c in expected} == pytest.approx(expected)


def test_label_dependent_features_ignore_labels_younger_than_seven_days() -> None:
    df = random_frame(seed=1)
    base = hb.build_features(df).sort("tx_id")
    label_cols = [c for c in hb.FEATURES if "risk" in c or "fraud" in c or "genuine" in c]
    cut = 60.0  # flip every label after day 60: rows before day 67 must not move
    flipped = df.with_columns(
        pl.when(pl.col("ts") > T0 + timedelta(days=cut))
        .then(1 - pl.col("is_fraud"))
        .otherwise(pl.col("is_fraud"))
        .alias("is_fraud")
    )
    after = hb.build_features(flipped).sort("tx_id")
    early = base["ts"] < T0 + timedelta(days=cut + 7)
    assert base.filter(early).select(label_cols).equals(after.filter(early).select(label_cols))
    late = base["ts"] > T0 + timedelta(days=cut + 8)
    assert not base.filter(late).select(label_cols).equals(after.filter(late).select(label_cols))


# ---- causality and leakage ----


def test_appending_future_rows_changes_no_past_feature() -> None:
    df = random_frame(seed=2)
    past = df.filter(pl.col("ts") < T0 + timedelta(days=80))
    full = hb.build_features(df).sort("tx_id")
    only_past = hb.build_features(past).sort("tx_id")
    head = full.filter(pl.col("tx_id").is_in(only_past["tx_id"].to_list()))
    assert head.select(hb.FEATURES).equals(only_past.select(hb.FEATURES))


def test_no_test_period_label_reaches_training_features_or_targets() -> None:
    df = random_frame(n=5000, days=60, seed=4)
    fold = hb.Fold(date(2018, 4, 21))  # train days 20..26, test 34..40, early stop 13..19
    lo, hi = fold.test_range
    scrambled = df.with_columns(
        pl.when(pl.col("day").is_between(lo, hi))
        .then(1 - pl.col("is_fraud"))
        .otherwise(pl.col("is_fraud"))
        .alias("is_fraud")
    )
    for part in (hb.train_rows, hb.early_stop_rows):
        a = part(hb.build_features(df), fold).sort("tx_id")
        b = part(hb.build_features(scrambled), fold).sort("tx_id")
        assert a.select("tx_id", "is_fraud", *hb.FEATURES).equals(b.select("tx_id", "is_fraud", *hb.FEATURES))
    assert hb.test_rows(hb.build_features(df), fold)["day"].min() >= lo


def test_customer_features_count_only_the_past_and_present() -> None:
    rows = [(0.0, 1, 0, 10.0, 0), (0.5, 1, 0, 30.0, 0), (3.0, 1, 0, 20.0, 0), (40.0, 1, 0, 50.0, 0)]
    f = hb.build_features(frame(rows)).sort("tx_id")
    assert np.expm1(f["c_n_1d"].to_numpy()).round().tolist() == [1, 2, 1, 1]
    assert np.expm1(f["c_n_7d"].to_numpy()).round().tolist() == [1, 2, 3, 1]
    assert f["c_mean_7d"].to_list()[:3] == pytest.approx([10.0, 20.0, 20.0])
    assert f["c_log_dt_prev"][1] == pytest.approx(np.log1p(0.5 * 86400))


# ---- windows ----


def test_customer_window_index_is_left_padded_per_customer() -> None:
    idx = hb.customer_window_index(np.array([7, 7, 7, 9, 9]), window=3)
    assert idx.tolist() == [[-1, -1, 0], [-1, 0, 1], [0, 1, 2], [-1, -1, 3], [-1, 3, 4]]
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    w, lengths = hb.gather_windows(x, idx[[1, 3]])
    assert lengths.tolist() == [2, 1]
    assert w[0].tolist() == [[0, 0], [0, 1], [2, 3]]
    assert w[1].tolist() == [[0, 0], [0, 0], [6, 7]]


def test_terminal_window_holds_the_terminals_earlier_transactions_only() -> None:
    # rows in customer order; time ranks say row 3 came first, then 0, 4, 1, 2
    terminal = np.array([5, 5, 6, 5, 5])
    rank = np.array([1, 3, 4, 0, 2])
    idx = hb.terminal_window_index(terminal, rank, window=2)
    assert idx.tolist() == [[-1, 3], [0, 4], [-1, -1], [-1, -1], [3, 0]]


def test_interleaved_window_is_time_ordered_ends_with_the_scored_row_and_skips_the_own_customer() -> None:
    rng = np.random.default_rng(0)
    n = 400
    customer = np.sort(rng.integers(0, 30, n))  # rows sorted by customer, then time
    times = np.concatenate([np.sort(rng.random((customer == c).sum())) for c in np.unique(customer)])
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(times, kind="stable")] = np.arange(n)  # each row's place in time order
    terminal = rng.integers(0, 8, n)
    own = hb.customer_window_index(customer, 4)
    idx, marks = hb.interleave_windows(own, hb.terminal_window_index(terminal, rank, 3), rank, customer)
    assert idx.shape == marks.shape == (n, 7)
    assert (idx[:, -1] == np.arange(n)).all() and (marks[:, -1] == 0).all()
    valid = idx >= 0
    key = np.where(valid, rank[np.maximum(idx, 0)], -1)
    assert (np.diff(key, axis=1) >= 0).all()  # left padding, then oldest to newest
    assert (key[:, :-1] < rank[:, None]).all()  # nothing at or after the scored transaction
    theirs = valid & (marks == 1)
    assert (customer[idx[theirs]] != np.repeat(customer, 7).reshape(n, 7)[theirs]).all()
    assert (terminal[idx[theirs]] == np.repeat(terminal, 7).reshape(n, 7)[theirs]).all()
    assert theirs.any()


# ---- the runner (pipeline/benchmark.py), on a tiny synthetic file ----


def synthetic_file(tmp_path, seed: int = 0, scenarios: bool = False):  # type: ignore[no-untyped-def]
    """Handbook-shaped parquet over the fold dates: 40 customers, 20 terminals, a few frauds a day.

    With ``scenarios``, a ``TX_FRAUD_SCENARIO`` column: 1 for the amount rule, 2 for the random frauds.
    """
    rng = np.random.default_rng(seed)
    n = 3000
    t = np.sort(rng.uniform(60, 160, n))  # days after 2018-04-01: covers every fold
    amount = rng.gamma(2, 30, n)
    fraud = (amount > 150) | (rng.random(n) < 0.01)
    df = pl.DataFrame(
        {
            "TRANSACTION_ID": np.arange(n),
            "TX_DATETIME": [T0 + timedelta(days=float(x)) for x in t],
            "CUSTOMER_ID": rng.integers(0, 40, n),
            "TERMINAL_ID": rng.integers(0, 20, n),
            "TX_AMOUNT": amount,
            "TX_FRAUD": fraud.astype(np.int8),
        }
    )
    if scenarios:
        df = df.with_columns(
            TX_FRAUD_SCENARIO=pl.Series(np.where(amount > 150, 1, np.where(fraud, 2, 0)).astype(np.int8))
        )
    path = tmp_path / "tx.parquet"
    df.write_parquet(path)
    return path


def test_benchmark_runs_the_protocol_and_writes_the_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pipeline.benchmark import run_handbook_benchmark

    md = tmp_path / "handbook.md"
    result = run_handbook_benchmark(
        synthetic_file(tmp_path),
        ["logreg", "gbt"],
        seeds=[0],
        config_path=tmp_path / "none.json",
        out_md=md,
        progress=False,
    )
    assert set(result["models"]) == {"logreg", "gbt"}
    assert len(result["folds"]) == 4 * 2
    assert {f["fold"] for f in result["folds"]} == {"2018-08-15", "2018-08-08", "2018-08-01", "2018-07-25"}
    mean, std = result["models"]["gbt"]["average_precision"]
    assert 0.5 < mean <= 1.0 and std >= 0.0  # amount > 150 is an easy rule to learn
    text = md.read_text()
    assert (
        "fraudseq benchmark handbook --models logreg,gbt" in text
    )  # as the CLI takes it and "XGBoost" in text


def test_benchmark_rejects_unknown_models() -> None:
    from pipeline.benchmark import resolve_models
    from pipeline.errors import UsageError

    assert resolve_models(["all"]) == [
        "logreg",
        "gbt",
        "rnn",
        "gru",
        "lstm",
        "bilstm",
        "bilstm_last",
        "bilstm_terminal",
    ]
    assert resolve_models(["bilstm", "gbt"]) == ["gbt", "bilstm"]
    with pytest.raises(UsageError):
        resolve_models(["xgboost"])


def test_summary_is_mean_and_std_over_folds_and_seeds() -> None:
    from pipeline.benchmark import summarise, wins_over

    rows = [
        {"model": m, "fold": f, "seed": s, "auc_roc": v, "average_precision": v, "card_precision_at_100": v}
        for m, base in (("gbt", 0.5), ("bilstm", 0.6))
        for f in ("a", "b")
        for s, v in ((0, base), (1, base + (0.2 if f == "a" else -0.4)))
    ]
    summary = summarise(rows)
    assert summary["gbt"]["average_precision"] == [
        pytest.approx(0.45),
        pytest.approx(float(np.std([0.5, 0.7, 0.5, 0.1])), abs=1e-4),
    ]
    assert wins_over(rows, "bilstm") == "2/2"


def test_blend_is_a_weighted_mean_of_logits() -> None:
    from pipeline.benchmark import blend_scores

    a, b = np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.5, 0.3])
    np.testing.assert_allclose(blend_scores(a, b, 1.0), a, rtol=1e-6)
    np.testing.assert_allclose(blend_scores(a, b, 0.0), b, rtol=1e-6)
    # logit(0.9) = -logit(0.1): an even blend of the two is 0.5
    np.testing.assert_allclose(blend_scores(np.array([0.9]), np.array([0.1]), 0.5), [0.5], atol=1e-9)
    mid = blend_scores(a, b, 0.4)
    assert np.all(mid >= np.minimum(a, b) - 1e-12) and np.all(mid <= np.maximum(a, b) + 1e-12)


def test_scenario_recall_counts_each_scenario_in_the_top_share() -> None:
    from pipeline.benchmark import scenario_recall

    test = pl.DataFrame({"scenario": [1, 1, 2, 0, 0, 0, 0, 0, 0, 3]})
    scores = np.array([0.9, 0.1, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.05])
    # the top 20% of 10 scores holds rows 0 and 2
    assert scenario_recall(test, scores, top=0.2) == {
        "top_recall_scenario_1": 0.5,
        "top_recall_scenario_2": 1.0,
        "top_recall_scenario_3": 0.0,
    }
    assert scenario_recall(test.drop("scenario"), scores) == {}


def test_scenario_column_is_read_but_never_a_feature(tmp_path) -> None:  # type: ignore[no-untyped-def]
    frame = hb.load_transactions(synthetic_file(tmp_path, scenarios=True))
    assert "scenario" in frame.columns and "scenario" not in hb.FEATURES
    assert hb.load_transactions(synthetic_file(tmp_path)).columns == [
        c for c in frame.columns if c != "scenario"
    ]


def test_benchmark_adds_the_blend_row_and_the_scenario_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pipeline.benchmark import BLEND, run_handbook_benchmark

    md = tmp_path / "handbook.md"
    config = tmp_path / "config.json"
    config.write_text('{"fit": {"epochs": 1}, "blend": {"bilstm_weight": 0.3}}')
    result = run_handbook_benchmark(
        synthetic_file(tmp_path, scenarios=True),
        ["gbt", "bilstm"],
        seeds=[0],
        config_path=config,
        out_md=md,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        progress=False,
    )
    assert list(result["models"]) == ["gbt", "bilstm", BLEND]
    import mlflow

    logged = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(result["run_id"]).data.metrics
    assert logged["bilstm_plus_gbt.average_precision.mean"] == result["models"][BLEND]["average_precision"][0]
    assert result["config"]["blend"]["bilstm_weight"] == 0.3
    blend_rows = [f for f in result["folds"] if f["model"] == BLEND]
    assert len(blend_rows) == 4 and all("top_recall_scenario_1" in f for f in blend_rows)
    text = md.read_text()
    assert "Which frauds each model finds" in text and f"| {BLEND} |" in text


def test_tune_blend_picks_a_grid_weight_on_the_validation_folds(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pipeline import benchmark as B

    config = B._set(B.load_config(tmp_path / "none.json"), "fit.epochs", 1)
    prep = B.prepare(synthetic_file(tmp_path), config["window"])
    seen: list[str] = []
    real = B.fold_data
    monkeypatch.setattr(B, "fold_data", lambda p, fold: seen.append(fold.name) or real(p, fold))
    tuned = B.tune_blend(prep, config, progress=False)
    assert tuned["blend"]["bilstm_weight"] in B.BLEND_GRID
    assert seen == [f.name for f in hb.handbook_folds("validation")]  # never a test fold
    assert config["blend"]["bilstm_weight"] == 0.5  # the input config is not mutated


def test_tune_searches_the_validation_folds_only_and_holds_one_fold_at_a_time(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import gc
    import weakref

    from pipeline import benchmark as B

    config = B._set(B.load_config(tmp_path / "none.json"), "fit.epochs", 1)
    prep = B.prepare(synthetic_file(tmp_path), config["window"])
    monkeypatch.setattr(B, "GBT_GRID", {"num_leaves": [15, 31]})
    monkeypatch.setattr(B, "TUNE_GRID", {"window": [4, 8]})
    monkeypatch.setattr(B, "BLEND_GRID", [0.5])
    monkeypatch.setattr(B, "EMA_GRID", [None, 0.9])  # None is the config's own: measured once
    made: list[tuple[str, weakref.ref]] = []  # type: ignore[type-arg]
    real_fold_data, real_score = B.fold_data, B.score_model

    def fold_data(p, fold):  # type: ignore[no-untyped-def]
        fd = real_fold_data(p, fold)
        made.append((fold.name, weakref.ref(fd)))
        return fd

    live: list[int] = []

    def score_model(name, p, fd, *args):  # type: ignore[no-untyped-def]
        gc.collect()
        live.append(sum(ref() is not None for _, ref in made))
        return real_score(name, p, fd, *args)

    monkeypatch.setattr(B, "fold_data", fold_data)
    monkeypatch.setattr(B, "score_model", score_model)
    tuned = B.tune_config(prep, config, progress=False)
    assert tuned["window"] in (4, 8) and tuned["gbt"]["num_leaves"] in (15, 31)
    assert tuned["fit"].get("ema") in (None, 0.9)
    assert {name for name, _ in made} == {f.name for f in hb.handbook_folds("validation")}
    assert len(live) == 4 * (2 + 2 + 1 + 2)  # gbt grid, bilstm grid, the other decay, blend (gbt + bilstm)
    assert max(live) == 1  # a fold's windows are dropped before the next fold is built


def test_bilstm_terminal_reads_one_more_input_per_event_and_scores_every_test_row(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pipeline import benchmark as B

    config = B._set(B.load_config(tmp_path / "none.json"), "fit.epochs", 1)
    prep = B.prepare(synthetic_file(tmp_path), 4)
    fd = B.fold_data(prep, hb.handbook_folds("test")[0])
    scores, detail = B.score_model(B.TERMINAL, prep, fd, config, 0, False)
    _, plain = B.score_model("bilstm", prep, fd, config, 0, False)
    assert scores.shape == (fd.test.height,) and np.isfinite(scores).all()
    assert detail["inputs_per_event"] == plain["inputs_per_event"] + 1  # the terminal mark
    x, lengths = fd.cache[f"test/{4 + config['terminal_window']}/interleaved"]
    assert x.shape[1] == 4 + config["terminal_window"] and (lengths > 4).any()  # terminal rows joined


def test_validation_fold_trial_uses_the_overrides_and_leaves_the_published_table_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pipeline.benchmark import run_handbook_benchmark

    md = tmp_path / "handbook.md"
    result = run_handbook_benchmark(
        synthetic_file(tmp_path),
        ["gbt"],
        seeds=[0],
        config_path=tmp_path / "none.json",
        out_md=md,
        progress=False,
        folds="validation",
        overrides={"gbt.num_leaves": 7, "window": 4},
    )
    assert {f["fold"] for f in result["folds"]} == {f.name for f in hb.handbook_folds("validation")}
    assert result["config"]["gbt"]["num_leaves"] == 7 and result["config"]["window"] == 4
    assert not md.exists()  # the committed table is the test folds'


def test_overrides_accept_model_and_fit_fields_and_reject_unknown_keys() -> None:
    from pipeline import benchmark as B
    from pipeline.errors import UsageError

    config = B.load_config(Path("no-such-config.json"))
    assert B.apply_override(config, "model.skip", True)["model"]["skip"] is True
    assert B.apply_override(config, "fit.loss", "focal")["fit"]["loss"] == "focal"
    assert B.apply_override(config, "encoding.max_bins", 0)["encoding"]["max_bins"] == 0
    for bad in ("model.hiden", "model.bidirectional", "gbt.leaves", "nothing", "encoding", "window.x"):
        with pytest.raises(UsageError):
            B.apply_override(config, bad, 1)
    assert "skip" not in config["model"]  # the input is not mutated


def test_cli_set_needs_key_equals_value_and_unknown_keys_fail_in_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from pipeline.cli import app

    data = synthetic_file(tmp_path)
    bad = CliRunner().invoke(app, ["benchmark", "handbook", "--data", str(data), "--set", "window"])
    assert bad.exit_code == 2 and "expected KEY=VALUE" in bad.output
    unknown = CliRunner().invoke(
        app, ["benchmark", "handbook", "--data", str(data), "--models", "gbt", "--set", "gbt.leaves=3"]
    )
    assert unknown.exit_code != 0 and "no such setting" in unknown.output
