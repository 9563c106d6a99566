"""Features, folds and metrics of the Fraud Detection Handbook protocol, written from its README.

Everything here is pure: frames in, frames or arrays out. The per-event features are computed
once over the whole file with polars rolling-by-time windows. They only look backwards in time,
and a fraud label enters a feature only once its transaction is at least ``delay_days`` older
than the transaction being described, so one pass over all rows is leakage-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

EPOCH = date(2018, 4, 1)  # TX_TIME_DAYS counts days since this date
LABEL_DELAY_DAYS = 7
WINDOWS_DAYS = (1, 7, 30)
TEST_FOLD_STARTS = (
    date(2018, 8, 15),
    date(2018, 8, 8),
    date(2018, 8, 1),
    date(2018, 7, 25),
)
VALIDATION_FOLD_STARTS = (
    date(2018, 7, 11),
    date(2018, 7, 4),
    date(2018, 6, 27),
    date(2018, 6, 20),
)

CUSTOMER_FEATURES = tuple(
    [f"c_n_{w}d" for w in WINDOWS_DAYS]
    + [f"c_mean_{w}d" for w in WINDOWS_DAYS]
    + [
        "c_std_30d",
        "c_log_dt_prev",
        "c_amt_ratio_30d",
        "c_amt_ratio_hist",
        "c_amt_z_30d",
    ]
)
TERMINAL_FEATURES = tuple(
    [f"t_n_{w}d" for w in WINDOWS_DAYS]
    + [f"t_n_known_{w}d" for w in WINDOWS_DAYS]
    + [f"t_risk_{w}d" for w in WINDOWS_DAYS]
    + ["t_last_fraud_age", "t_first_fraud_age"]
    + ["t_last_genuine_age", "t_n_fraud_streak", "t_risk_since_first_fraud"]
)
EVENT_FEATURES = ("log_amount", "is_night", "is_weekend", "hour_sin", "hour_cos")
FEATURES = EVENT_FEATURES + CUSTOMER_FEATURES + TERMINAL_FEATURES


SCENARIO = "TX_FRAUD_SCENARIO"  # the generator's fraud scenario (0 = genuine): diagnostics only


def load_transactions(path: Path) -> pl.DataFrame:
    """Read the handbook parquet into our snake_case columns, sorted by time then id.

    The file's ``TX_FRAUD_SCENARIO``, when present, becomes ``scenario``: it is never a feature
    (``FEATURES`` does not name it), only a way to report which kind of fraud each model finds.
    """
    columns = ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD"]
    if SCENARIO in pl.read_parquet_schema(path):
        columns.append(SCENARIO)
    return normalise_columns(pl.read_parquet(path, columns=columns))


def normalise_columns(raw: pl.DataFrame) -> pl.DataFrame:
    """Rename the handbook columns, add the day index, and sort by (ts, tx_id)."""
    return (
        raw.select(
            pl.col("TRANSACTION_ID").cast(pl.Int64).alias("tx_id"),
            pl.col("TX_DATETIME").cast(pl.Datetime("us")).alias("ts"),
            pl.col("CUSTOMER_ID").cast(pl.Int64).alias("customer_id"),
            pl.col("TERMINAL_ID").cast(pl.Int64).alias("terminal_id"),
            pl.col("TX_AMOUNT").cast(pl.Float64).alias("amount"),
            pl.col("TX_FRAUD").cast(pl.Int32).alias("is_fraud"),
            *([pl.col(SCENARIO).cast(pl.Int32).alias("scenario")] if SCENARIO in raw.columns else []),
        )
        .with_columns((pl.col("ts").dt.date() - pl.lit(EPOCH)).dt.total_days().cast(pl.Int32).alias("day"))
        .sort(["ts", "tx_id"])
    )


def day_index(d: date) -> int:
    """Days since the handbook epoch, as in TX_TIME_DAYS."""
    return (d - EPOCH).days


def _rolling_sum(col: str | pl.Expr, days: int, key: str) -> pl.Expr:
    """Sum of ``col`` over the key's events in (t - days, t], the current event included."""
    expr = pl.col(col) if isinstance(col, str) else col
    return expr.rolling_sum_by("ts", window_size=f"{days}d", closed="right").over(key)


def customer_features(df: pl.DataFrame, delay_days: int = LABEL_DELAY_DAYS) -> pl.DataFrame:
    """Customer spend history: counts, mean and spread of amounts, gaps, and amount ratios.

    ``c_amt_ratio_hist`` compares the amount with the customer's mean over the 30 days that end
    ``delay_days`` ago, a baseline a recent compromise (scenario 3) has not yet contaminated.
    """
    one = pl.int_range(pl.len(), dtype=pl.Int64) * 0 + 1  # a column of ones, full length
    amt2 = pl.col("amount") ** 2
    out = df.with_columns(
        *[_rolling_sum(one, w, "customer_id").alias(f"c_n_{w}d") for w in WINDOWS_DAYS],
        *[_rolling_sum("amount", w, "customer_id").alias(f"_c_sum_{w}d") for w in WINDOWS_DAYS],
        _rolling_sum(amt2, 30, "customer_id").alias("_c_sq_30d"),
        _rolling_sum(one, 30 + delay_days, "customer_id").alias("_c_n_long"),
        _rolling_sum("amount", 30 + delay_days, "customer_id").alias("_c_sum_long"),
        _rolling_sum(one, delay_days, "customer_id").alias("_c_n_delay"),
        _rolling_sum("amount", delay_days, "customer_id").alias("_c_sum_delay"),
        pl.col("ts").diff().over("customer_id").dt.total_seconds().alias("_c_dt_prev"),
    )
    mean30 = pl.col("_c_sum_30d") / pl.col("c_n_30d")
    var30 = (pl.col("_c_sq_30d") / pl.col("c_n_30d") - mean30**2).clip(lower_bound=0.0)
    n_hist = pl.col("_c_n_long") - pl.col("_c_n_delay")
    mean_hist = (pl.col("_c_sum_long") - pl.col("_c_sum_delay")) / n_hist
    return out.with_columns(
        *[(pl.col(f"_c_sum_{w}d") / pl.col(f"c_n_{w}d")).alias(f"c_mean_{w}d") for w in WINDOWS_DAYS],
        var30.sqrt().alias("c_std_30d"),
        # A first transaction gets a 60-day gap: longer than any window, so "no history" reads as old.
        pl.col("_c_dt_prev").fill_null(60 * 86400).log1p().alias("c_log_dt_prev"),
        (pl.col("amount") / (mean30 + 1.0)).alias("c_amt_ratio_30d"),
        pl.when(n_hist > 0)
        .then(pl.col("amount") / (mean_hist + 1.0))
        .otherwise(pl.lit(1.0))
        .alias("c_amt_ratio_hist"),
        ((pl.col("amount") - mean30) / (var30.sqrt() + 1.0)).alias("c_amt_z_30d"),
    ).drop(pl.selectors.starts_with("_c_"))


def terminal_features(df: pl.DataFrame, delay_days: int = LABEL_DELAY_DAYS) -> pl.DataFrame:
    """Terminal activity and delayed fraud rates.

    ``t_n_{w}d`` counts the terminal's transactions in (t - w, t]: their existence is known at once.
    ``t_n_known_{w}d`` and ``t_risk_{w}d`` only use (t - delay - w, t - delay], the transactions
    whose labels are known at time t; the difference of two right-closed rolling sums gives
    exactly that half-open interval, so a label exactly ``delay`` old counts and a younger one never.
    """
    one = pl.int_range(pl.len(), dtype=pl.Int64) * 0 + 1
    key = "terminal_id"
    out = df.with_columns(
        *[_rolling_sum(one, w, key).alias(f"t_n_{w}d") for w in WINDOWS_DAYS],
        *[_rolling_sum(one, w + delay_days, key).alias(f"_t_n_long_{w}") for w in WINDOWS_DAYS],
        *[_rolling_sum("is_fraud", w + delay_days, key).alias(f"_t_f_long_{w}") for w in WINDOWS_DAYS],
        _rolling_sum(one, delay_days, key).alias("_t_n_delay"),
        _rolling_sum("is_fraud", delay_days, key).alias("_t_f_delay"),
    )
    known_n = {w: pl.col(f"_t_n_long_{w}") - pl.col("_t_n_delay") for w in WINDOWS_DAYS}
    known_f = {w: pl.col(f"_t_f_long_{w}") - pl.col("_t_f_delay") for w in WINDOWS_DAYS}
    return out.with_columns(
        *[known_n[w].alias(f"t_n_known_{w}d") for w in WINDOWS_DAYS],
        *[
            pl.when(known_n[w] > 0).then(known_f[w] / known_n[w]).otherwise(0.0).alias(f"t_risk_{w}d")
            for w in WINDOWS_DAYS
        ],
    ).drop(pl.selectors.starts_with("_t_"))


def terminal_fraud_ages(
    df: pl.DataFrame, delay_days: int = LABEL_DELAY_DAYS, horizon_days: int = 30
) -> pl.DataFrame:
    """Days since the terminal's latest and earliest *known* fraud within the known window.

    Known means at least ``delay_days`` old; the window is (t - delay - horizon, t - delay].
    A compromised terminal (scenario 2) stays compromised for a fixed time, so the age of its
    first known fraud says whether the compromise can still be running. No known fraud gives
    ``delay + horizon + 1`` days for both.
    """
    delay = timedelta(days=delay_days)
    none = float(delay_days + horizon_days + 1)
    frauds = (
        df.filter(pl.col("is_fraud") == 1)
        .select("terminal_id", pl.col("ts").alias("fraud_ts"))
        .sort("fraud_ts")
    )
    probe = df.select("tx_id", "terminal_id", "ts").with_columns(
        (pl.col("ts") - delay).alias("known_until"),
        (pl.col("ts") - delay - timedelta(days=horizon_days)).alias("known_from"),
    )
    last = probe.sort("known_until").join_asof(
        frauds.rename({"fraud_ts": "last_ts"}),
        left_on="known_until",
        right_on="last_ts",
        by="terminal_id",
        strategy="backward",
        check_sortedness=False,
    )
    first = probe.sort("known_from").join_asof(
        frauds.rename({"fraud_ts": "first_ts"}),
        left_on="known_from",
        right_on="first_ts",
        by="terminal_id",
        strategy="forward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    days = lambda c: (pl.col("ts") - pl.col(c)).dt.total_seconds() / 86400.0  # noqa: E731
    ages = (
        last.select("tx_id", "ts", "known_from", "last_ts")
        .join(first.select("tx_id", "first_ts", "known_until"), on="tx_id")
        .select(
            "tx_id",
            pl.when(pl.col("last_ts") > pl.col("known_from"))
            .then(days("last_ts"))
            .otherwise(none)
            .alias("t_last_fraud_age"),
            pl.when(pl.col("first_ts") <= pl.col("known_until"))
            .then(days("first_ts"))
            .otherwise(none)
            .alias("t_first_fraud_age"),
        )
    )
    return df.join(ages, on="tx_id", how="left", maintain_order="left")


def terminal_label_streaks(
    df: pl.DataFrame, delay_days: int = LABEL_DELAY_DAYS, horizon_days: int = 30
) -> pl.DataFrame:
    """The terminal's latest *known* outcomes, in the order they happened.

    Known, as in ``terminal_fraud_ages``, means in (t - delay - horizon, t - delay]. Fixed-window
    fraud counts and rates cannot tell a merchant whose fraud was followed by genuine sales from
    one whose sales have been fraudulent ever since its first known fraud (a compromise still
    running). These can:

    - ``t_last_genuine_age``: days since the latest known genuine transaction
      (``delay + horizon + 1`` when none is known in the window);
    - ``t_n_fraud_streak``: known frauds after it (all the window's known frauds when none);
    - ``t_risk_since_first_fraud``: the fraud share of the known transactions from the earliest
      known fraud on (0 when no fraud is known).
    """
    delay, horizon = timedelta(days=delay_days), timedelta(days=horizon_days)
    none = float(delay_days + horizon_days + 1)
    key = "terminal_id"
    # per terminal and timestamp (ties at one time count whole): running frauds and transactions
    # through that time, and the frauds and transactions at it
    running = (
        df.group_by(key, "ts")
        .agg(pl.col("is_fraud").sum().alias("f_at"), pl.len().alias("n_at"))
        .sort([key, "ts"])
        .with_columns(
            pl.col("f_at").cum_sum().over(key).alias("f"), pl.col("n_at").cum_sum().over(key).alias("n")
        )
        .sort("ts")
    )

    def at(tag: str, rows: pl.DataFrame) -> pl.DataFrame:
        return rows.select(key, *[pl.col(c).alias(f"{tag}_{c}") for c in ("ts", "f", "n", "n_at")])

    def asof(
        left: pl.DataFrame, right: pl.DataFrame, on: str, tag: str, forward: bool = False
    ) -> pl.DataFrame:
        return left.sort(on).join_asof(
            right, left_on=on, right_on=f"{tag}_ts", by=key, check_sortedness=False,
            strategy="forward" if forward else "backward", allow_exact_matches=not forward,
        )  # fmt: skip

    probe = df.select("tx_id", key, "ts").with_columns(
        (pl.col("ts") - delay).alias("until"), (pl.col("ts") - delay - horizon).alias("since")
    )
    probe = asof(probe, at("u", running), "until", "u")  # everything known by t - delay
    genuine, fraud = running.filter(pl.col("n_at") > pl.col("f_at")), running.filter(pl.col("f_at") > 0)
    probe = asof(probe, at("g", genuine), "until", "g")  # the latest genuine known by then
    probe = asof(probe, at("s", running), "since", "s")  # everything before the window
    probe = asof(probe, at("ff", fraud), "since", "ff", forward=True)  # the first fraud after its start

    def z(c: str) -> pl.Expr:
        return pl.col(c).fill_null(0)

    def in_window(c: str) -> pl.Expr:  # a timestamp inside (since, until]
        return pl.col(c).is_not_null() & (pl.col(c) > pl.col("since")) & (pl.col(c) <= pl.col("until"))

    streaks = probe.select(
        "tx_id",
        pl.when(in_window("g_ts"))
        .then((pl.col("ts") - pl.col("g_ts")).dt.total_seconds() / 86400.0)
        .otherwise(none)
        .alias("t_last_genuine_age"),
        # frauds known by t - delay, minus those before the later of the window start and the latest genuine
        (z("u_f") - pl.max_horizontal(z("g_f"), z("s_f"))).alias("t_n_fraud_streak"),
        pl.when(in_window("ff_ts"))
        .then((z("u_f") - z("s_f")) / (z("u_n") - (pl.col("ff_n") - pl.col("ff_n_at"))))
        .otherwise(0.0)
        .alias("t_risk_since_first_fraud"),
    )
    return df.join(streaks, on="tx_id", how="left", maintain_order="left")


def event_features(df: pl.DataFrame) -> pl.DataFrame:
    """Features of the transaction alone: log amount, night and weekend flags, hour of day."""
    hour = pl.col("ts").dt.hour().cast(pl.Float64) + pl.col("ts").dt.minute().cast(pl.Float64) / 60.0
    return df.with_columns(
        pl.col("amount").log1p().alias("log_amount"),
        (pl.col("ts").dt.hour() <= 6).cast(pl.Float64).alias("is_night"),
        (pl.col("ts").dt.weekday() >= 6).cast(pl.Float64).alias("is_weekend"),
        (hour * (2 * np.pi / 24)).sin().alias("hour_sin"),
        (hour * (2 * np.pi / 24)).cos().alias("hour_cos"),
    )


def build_features(df: pl.DataFrame, delay_days: int = LABEL_DELAY_DAYS) -> pl.DataFrame:
    """All per-event features of ``FEATURES``, computed once over the whole (sorted) frame."""
    df = df.sort(["ts", "tx_id"])
    out = terminal_features(customer_features(event_features(df), delay_days), delay_days)
    out = terminal_label_streaks(terminal_fraud_ages(out, delay_days), delay_days)
    count_cols = [c for c in FEATURES if "_n_" in c]
    return out.with_columns(
        *[pl.col(c).cast(pl.Float64).log1p() for c in count_cols],
        *[pl.col(c).cast(pl.Float64) for c in FEATURES if c not in count_cols],
    )


# ---- folds ----


@dataclass(frozen=True)
class Fold:
    """One train / delay / test split, by the day its 7 training days start."""

    train_start: date
    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7

    @property
    def train_range(self) -> tuple[int, int]:
        """First and last training day index, inclusive."""
        s = day_index(self.train_start)
        return s, s + self.train_days - 1

    @property
    def test_range(self) -> tuple[int, int]:
        """First and last test day index, inclusive."""
        s = day_index(self.train_start) + self.train_days + self.delay_days
        return s, s + self.test_days - 1

    @property
    def early_stop_range(self) -> tuple[int, int]:
        """The ``train_days`` before training: labels all known, used only to stop early."""
        s = day_index(self.train_start)
        return s - self.train_days, s - 1

    @property
    def name(self) -> str:
        return self.train_start.isoformat()

    def dates(self) -> dict[str, str]:
        """Human-readable boundaries, for the report."""
        to_d = lambda i: (EPOCH + timedelta(days=i)).isoformat()  # noqa: E731
        return {
            "train": f"{to_d(self.train_range[0])}..{to_d(self.train_range[1])}",
            "test": f"{to_d(self.test_range[0])}..{to_d(self.test_range[1])}",
            "early_stop": f"{to_d(self.early_stop_range[0])}..{to_d(self.early_stop_range[1])}",
        }


def handbook_folds(kind: str = "test") -> list[Fold]:
    """The four test folds, or the four validation folds used for tuning."""
    starts = {"test": TEST_FOLD_STARTS, "validation": VALIDATION_FOLD_STARTS}[kind]
    return [Fold(s) for s in starts]


def _in_days(lo_hi: tuple[int, int]) -> pl.Expr:
    return pl.col("day").is_between(lo_hi[0], lo_hi[1], closed="both")


def train_rows(df: pl.DataFrame, fold: Fold) -> pl.DataFrame:
    """The fold's training transactions (their labels are the targets)."""
    return df.filter(_in_days(fold.train_range))


def early_stop_rows(df: pl.DataFrame, fold: Fold) -> pl.DataFrame:
    """The week before training, for early stopping only."""
    return df.filter(_in_days(fold.early_stop_range))


def test_rows(df: pl.DataFrame, fold: Fold) -> pl.DataFrame:
    """The test transactions, minus each day's customers already known to be compromised.

    For test day d the known customers are those with a fraud on a day in
    [train start, d - 8]: the training frauds plus the delay/test frauds at least 8 days old.
    """
    first_train = fold.train_range[0]
    lo, hi = fold.test_range
    frauds = (
        df.filter(pl.col("is_fraud") == 1, pl.col("day").is_between(first_train, hi - 8))
        .group_by("customer_id")
        .agg(pl.col("day").min().alias("first_fraud_day"))
    )
    test = df.filter(_in_days(fold.test_range)).join(
        frauds, on="customer_id", how="left", maintain_order="left"
    )
    known = pl.col("first_fraud_day").is_not_null() & (pl.col("first_fraud_day") <= pl.col("day") - 8)
    return test.filter(~known).drop("first_fraud_day")


# ---- sequence windows ----


def customer_window_index(customer_sorted: np.ndarray, window: int) -> np.ndarray:
    """For rows sorted by (customer, time), the row indices of each row's last ``window`` events.

    Returns an (N, window) int64 array, the row itself in the last column, -1 where the
    customer has fewer earlier events (left padding).
    """
    n = len(customer_sorted)
    rows = np.arange(n)
    new_customer = np.r_[True, customer_sorted[1:] != customer_sorted[:-1]]
    start = np.maximum.accumulate(np.where(new_customer, rows, 0))
    offsets = np.arange(window - 1, -1, -1)  # (W,) lag of each slot
    idx = rows[:, None] - offsets[None, :]  # (N, W)
    return np.where(idx >= start[:, None], idx, -1)


def terminal_window_index(terminal: np.ndarray, time_rank: np.ndarray, window: int) -> np.ndarray:
    """For rows in any order, the rows of each row's previous ``window`` transactions at its terminal.

    ``time_rank`` orders all transactions by (time, id). Returns (N, window) row indices, oldest
    first, strictly before the row itself (the row is never in its own terminal window), -1 where
    the terminal has fewer earlier transactions (left padding).
    """
    order = np.lexsort((time_rank, terminal))  # rows by (terminal, time)
    in_order = customer_window_index(terminal[order], window + 1)[:, :-1]  # (N, window), self dropped
    mapped = np.where(in_order >= 0, order[np.maximum(in_order, 0)], -1)  # positions -> rows
    out = np.empty_like(mapped)
    out[order] = mapped
    return out


def interleave_windows(
    own: np.ndarray, other: np.ndarray, time_rank: np.ndarray, customer: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One time-ordered window of the customer's own events and the terminal's recent ones.

    ``own`` (N, Wc) is the customer window (the scored row last), ``other`` (N, Wt) the terminal
    window. The terminal's transactions of the same customer are dropped (they are already in
    ``own`` when recent). Returns the merged (N, Wc + Wt) row indices, left-padded with -1 and
    sorted by ``time_rank`` so the scored row stays last, and a 0/1 mark of the terminal's rows.
    Every row is at or before the scored one, so the merge adds no future event.
    """
    rows = own[:, -1]  # (N,) the scored rows
    other = np.where((other >= 0) & (customer[np.maximum(other, 0)] != customer[rows][:, None]), other, -1)
    idx = np.concatenate([own, other], axis=1)  # (N, Wc + Wt)
    mark = np.concatenate([np.zeros(own.shape, np.int8), np.ones(other.shape, np.int8)], axis=1)
    key = np.where(idx >= 0, time_rank[np.maximum(idx, 0)], -1)  # padding sorts first
    order = np.argsort(key, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    mark = np.take_along_axis(mark, order, axis=1)
    return idx, np.where(idx >= 0, mark, 0).astype(np.int8)


def gather_windows(x: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Windows (B, W, F) float32 left-padded with zeros, and their lengths (B,)."""
    valid = index >= 0  # (B, W)
    out = x[np.where(valid, index, 0)]  # (B, W, F)
    out[~valid] = 0.0
    return out.astype(np.float32, copy=False), valid.sum(axis=1).astype(np.int64)
