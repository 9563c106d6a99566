"""Interleave logins and transactions per customer, and compute causal per-event features.

Every feature of an event depends only on that customer's events at or before it in
contract order (event_time, then logins before transactions, then event_id). That is
what makes a score immune to events appended later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from features.schemas import EVENT_KINDS, LOGINS, TRANSACTIONS

# Order of the per-event feature vector. The model, the normaliser and the reasons all
# refer to features by these names.
KIND_FEATURES = tuple(f"kind_{k}" for k in EVENT_KINDS)
CONTINUOUS_FEATURES = (
    "log_amount",
    "amount_vs_history",
    "log_gap_prev",
    "log_gap_prev_login",
    "log_events_1h",
    "log_events_24h",
    "log_failures_24h",
    "log_tx_amount_24h",
)
FLAG_FEATURES = (
    "is_real",
    "is_transaction",
    "first_event",
    "new_device",
    "new_country",
    "new_merchant",
    "new_ip",
    "missing_device",
)
CYCLIC_FEATURES = ("hour_sin", "hour_cos")
# the continuous features that are sums over a trailing time window (``add_recent_counts``)
RECENT_COUNTS = ("log_events_1h", "log_events_24h", "log_failures_24h", "log_tx_amount_24h")
FEATURE_NAMES: tuple[str, ...] = KIND_FEATURES + CONTINUOUS_FEATURES + FLAG_FEATURES + CYCLIC_FEATURES

_NO_GAP = math.log1p(60 * 24 * 90.0)  # "never before": a gap of ~90 days, in log-minutes

EVENT_COLUMNS = {
    "event_id": pl.String,
    "customer_id": pl.String,
    "event_time": pl.Datetime("us", "UTC"),
    "source": pl.Int8,  # 0 login, 1 transaction: logins sort first at equal times
    "kind": pl.String,
    "amount": pl.Float64,
    "currency": pl.String,
    "merchant_id": pl.String,
    "merchant_category": pl.String,
    "channel": pl.String,
    "country": pl.String,
    "device_id": pl.String,
    "ip_address": pl.String,
}


# The validated columns the event table reads; card_id and user_agent are never used.
TRANSACTION_INPUTS = tuple(c for c in TRANSACTIONS.columns if c != "card_id")
LOGIN_INPUTS = tuple(c for c in LOGINS.columns if c != "user_agent")
INPUT_COLUMNS = {"transactions": TRANSACTION_INPUTS, "logins": LOGIN_INPUTS}
CONTRACT_ORDER = ("customer_id", "event_time", "source", "event_id")
# Columns of the event table that no feature reads, only the alert reasons' texts: a pass that
# only scores leaves them out (``build_event_table(..., reason_columns=False)``), which saves
# carrying three string columns through the sort.
REASON_ONLY_COLUMNS = ("channel", "currency", "merchant_category")


def _unified_events(
    transactions: pl.LazyFrame, logins: pl.LazyFrame, reason_columns: bool = True
) -> pl.LazyFrame:
    """Both logs stacked with the EVENT_COLUMNS set (less REASON_ONLY_COLUMNS unless
    ``reason_columns``), in no particular order."""
    tx = transactions.select(
        pl.col("event_id"),
        pl.col("customer_id"),
        pl.col("event_time"),
        pl.lit(1, pl.Int8).alias("source"),
        (pl.lit("tx_") + pl.col("channel")).alias("kind"),
        pl.col("amount").cast(pl.Float64),
        pl.col("currency"),
        pl.col("merchant_id"),
        pl.col("merchant_category"),
        pl.col("channel"),
        pl.col("country"),
        pl.col("device_id"),
        pl.col("ip_address"),
    )
    lg = logins.select(
        pl.col("event_id"),
        pl.col("customer_id"),
        pl.col("event_time"),
        pl.lit(0, pl.Int8).alias("source"),
        pl.col("event_type").alias("kind"),
        pl.lit(None, pl.Float64).alias("amount"),
        pl.lit(None, pl.String).alias("currency"),
        pl.lit(None, pl.String).alias("merchant_id"),
        pl.lit(None, pl.String).alias("merchant_category"),
        pl.lit(None, pl.String).alias("channel"),
        pl.col("country"),
        pl.col("device_id"),
        pl.col("ip_address"),
    )
    columns = {k: v for k, v in EVENT_COLUMNS.items() if reason_columns or k not in REASON_ONLY_COLUMNS}
    both = [frame.select(list(columns)).cast(columns) for frame in (tx, lg)]  # type: ignore[arg-type]
    return pl.concat(both, how="vertical")


_RUN = "_customer_run"  # a helper column, dropped before anything leaves this module


def _ordered_events(
    transactions: pl.LazyFrame, logins: pl.LazyFrame, reason_columns: bool = True
) -> pl.DataFrame:
    """Both logs in one frame, in CONTRACT_ORDER, collected, with ``_RUN``: the customer's rank
    among the sorted ids (``_ranked_events``, then ``_sorted_events``)."""
    both, n_customers = _ranked_events(transactions, logins, reason_columns)
    return _sorted_events(both, n_customers)


def _ranked_events(
    transactions: pl.LazyFrame, logins: pl.LazyFrame, reason_columns: bool = True
) -> tuple[pl.DataFrame, int]:
    """Both logs collected in no particular order, with ``_RUN``, and the number of customers."""
    both = _unified_events(transactions, logins, reason_columns).collect()
    ids = both.select(pl.col("customer_id").unique().sort()).with_row_index(_RUN)
    # join the id column alone: joining the whole frame would copy every string column once more
    run = both.select("customer_id").join(ids, on="customer_id", how="left", maintain_order="left")[_RUN]
    return both.with_columns(run), ids.height


def _sorted_events(both: pl.DataFrame, n_customers: int) -> pl.DataFrame:
    """``both`` (with ``_RUN``) in CONTRACT_ORDER.

    Sorted on integers instead of strings: ranks follow the ids' sort order, so (rank, time,
    source, event_id) orders rows as CONTRACT_ORDER does, at half the cost of comparing ids.
    The window expressions and the trailing sums then partition on the rank without comparing
    ids again. The key is unique (validation keeps an event_id once per day and log, and only on
    its own date), so the order is total and a sort that need not keep input order gives the
    same rows.

    When (rank, time, source) fit in one 64-bit integer (``_packed_key``: a shard's month of
    history does), the sort compares that integer and then event_id, which costs about half
    of comparing three columns and then event_id; the order is the same.
    """
    packed = _packed_key(both, n_customers)
    if packed is None:
        return both.sort([_RUN, *CONTRACT_ORDER[1:]])
    key = "_packed_key"
    return both.with_columns(packed.alias(key)).sort([key, "event_id"]).drop(key)


_KEY_BITS = 64


def _packed_key(both: pl.DataFrame, n_customers: int) -> pl.Expr | None:
    """(rank, microseconds since the earliest event, source) as one UInt64 that sorts as the
    three columns do; None when they need more than ``_KEY_BITS`` bits or a time is missing."""
    micros = pl.col("event_time").dt.epoch("us")
    stats = both.select(
        micros.min().alias("lo"), micros.max().alias("hi"), micros.null_count().alias("nulls")
    )
    lo, hi, nulls = stats.row(0)
    if both.height == 0 or nulls:
        return None
    time_bits = int(hi - lo).bit_length() + 1  # and one bit for the source (0 login, 1 transaction)
    if max(n_customers - 1, 0).bit_length() + time_bits > _KEY_BITS:
        return None
    u64 = pl.UInt64
    return (
        pl.col(_RUN).cast(u64) * pl.lit(1 << time_bits, dtype=u64)
        + (micros - lo).cast(u64) * pl.lit(2, dtype=u64)
        + pl.col("source").cast(u64)
    )


def _customer_run() -> pl.Expr:
    """0, 1, 2, ...: one integer per customer of a frame sorted by customer.

    The partition key of the window expressions: hashing a small integer is much cheaper
    than hashing the customer's string id, and the groups are the same.
    """
    return (pl.col("customer_id") != pl.col("customer_id").shift(1)).fill_null(True).cum_sum()


_RUN_SHIFT = 1 << 32  # the rank (below 2**32) times this fills the upper half of a 64-bit key


def _seen_key(col: str) -> pl.Expr:
    """One UInt64 per (customer, ``col`` value): the value's 64-bit hash xor the customer's rank
    shifted into the upper 32 bits."""
    return pl.col(col).hash(seed=0) ^ (pl.col(_RUN).cast(pl.UInt64) * _RUN_SHIFT)


def _first_seen(col: str, seen_before: pl.Series | None = None) -> pl.Expr:
    """1 when this customer shows a non-null ``col`` value for the first time.

    A (customer, value) pair is one UInt64 key (``_seen_key``). ``is_first_distinct`` on that
    key costs about half of the same test on a struct of the rank and the string. Two distinct
    pairs share a key only when their hashes differ in exactly the bits their ranks do, a chance
    of 2**-64 per pair: a day's millions of pairs leave a collision, which would clear one flag,
    at about one in 10**6 days. The hash is Polars' own, stable within one Polars version; every
    key lives in one process. ``seen_before``: the keys of the customers' earlier rows that the
    frame does not hold (``OlderRows``); a pair among them is not new.
    """
    key = _seen_key(col)
    flag = pl.col(col).is_not_null() & key.is_first_distinct()
    if seen_before is not None:
        flag = flag & ~key.is_in(seen_before.implode())
    return flag.cast(pl.Float32)


# Sums of amounts add integers of these units (``_fixed``). Integer sums are exact, so a sum does
# not depend on the order of its terms, nor on what other rows the frame holds: a scoring pass
# that aggregates or leaves out some rows gets the features of the whole table, bit for bit.
# The rounding moves a log amount by at most 2**-33 and an amount by at most 2**-21, far below
# float32's resolution of the features. Overflow would take 10**8 transactions of one customer
# in the loaded history (log amounts are at most log1p(MAX_AMOUNT) = 20.7), or a customer's
# 24-hour spend above 2**43 = 8.8e12 (8,796 transactions at the 1e9 maximum in one day).
_LOG_AMOUNT_UNIT = 2.0**-32
_AMOUNT_UNIT = 2.0**-20


def _fixed(expr: pl.Expr, unit: float) -> pl.Expr:
    return (expr / unit).round().cast(pl.Int64)


def event_features(events: pl.LazyFrame) -> pl.LazyFrame:
    """Add the FEATURE_NAMES columns to events in CONTRACT_ORDER (see ``_ordered_events``).

    The input must already be sorted; window expressions keep row order.
    """
    if _RUN in events.collect_schema().names():
        return _add_features(events)
    return _add_features(events.with_columns(_customer_run().alias(_RUN))).drop(_RUN)


def _add_features(events: pl.LazyFrame) -> pl.LazyFrame:
    """``event_features`` on events that carry ``_RUN``, which stays."""
    exprs = {**_history_features(), **_row_features()}
    return events.with_columns(exprs[name] for name in _FEATURE_ORDER)


def _minutes() -> pl.Expr:
    return pl.col("event_time").dt.epoch("s").cast(pl.Float64) / 60.0


# What a customer's rows left out of the frame add up to (``OlderRows``), as columns joined on
# ``_RUN``; where the customer has no such rows, the sum and count are 0 and the times null.
_OLDER_TX_SUM = "_older_tx_sum"  # sum of _fixed(log amount), an Int64
_OLDER_TX_N = "_older_tx_n"  # transactions
_OLDER_LAST = "_older_last_minutes"  # time of the latest row, in minutes
_OLDER_LAST_LOGIN = "_older_last_login_minutes"  # time of the latest login, in minutes
OLDER_COLUMNS = (_OLDER_TX_SUM, _OLDER_TX_N, _OLDER_LAST, _OLDER_LAST_LOGIN)
SEEN_COLUMNS = {
    "new_device": "device_id",
    "new_country": "country",
    "new_merchant": "merchant_id",
    "new_ip": "ip_address",
}


def _history_features(older: OlderRows | None = None) -> dict[str, pl.Expr]:
    """The features that read the customer's earlier rows (sums, gaps, first sightings).

    Computed over the whole frame in contract order, before any row is left out. ``older``: each
    customer's rows before the frame's, as totals (the OLDER_COLUMNS, which the frame then
    carries) and seen keys; the features are those of the frame with those rows in it.
    """
    is_tx = pl.col("source") == 1
    cust = _RUN
    minutes = _minutes()
    fixed = _fixed(_log_amount(), _LOG_AMOUNT_UNIT)

    def before(expr: pl.Expr) -> pl.Expr:  # the customer's rows before this one, in the frame
        return (expr.cum_sum() - expr).over(cust)

    def carried(name: str, dtype: pl.DataType) -> pl.Expr:
        return pl.col(name) if older is not None else pl.lit(None, dtype)

    prev_tx_sum = (before(fixed) + carried(_OLDER_TX_SUM, pl.Int64()).fill_null(0)).cast(pl.Float64)
    prev_tx_n = before(is_tx.cast(pl.Int64)) + carried(_OLDER_TX_N, pl.Int64()).fill_null(0)
    older_last = carried(_OLDER_LAST, pl.Float64())
    is_login = pl.col("source") == 0
    last_login_minutes = (
        pl.when(is_login)
        .then(minutes)
        .otherwise(None)
        .shift(1)
        .forward_fill()
        .over(cust)
        .fill_null(carried(_OLDER_LAST_LOGIN, pl.Float64()))
    )
    first_of_customer = (pl.col(_RUN) != pl.col(_RUN).shift(1)).fill_null(True) & older_last.is_null()
    seen = older.seen if older is not None else {}
    return {
        "amount_vs_history": pl.when(is_tx & (prev_tx_n > 0))
        .then((fixed.cast(pl.Float64) - prev_tx_sum / prev_tx_n) * _LOG_AMOUNT_UNIT)
        .otherwise(0.0)
        .alias("amount_vs_history"),
        "log_gap_prev": (minutes - minutes.shift(1).over(cust).fill_null(older_last))
        .clip(0.0)
        .log1p()
        .fill_null(_NO_GAP)
        .alias("log_gap_prev"),
        "log_gap_prev_login": (minutes - last_login_minutes)
        .clip(0.0)
        .log1p()
        .fill_null(_NO_GAP)
        .alias("log_gap_prev_login"),
        "first_event": first_of_customer.cast(pl.Float32).alias("first_event"),
        **{name: _first_seen(col, seen.get(col)).alias(name) for name, col in SEEN_COLUMNS.items()},
    }


def _log_amount() -> pl.Expr:
    return pl.when(pl.col("source") == 1).then(pl.col("amount").log1p()).otherwise(0.0)


def _row_features() -> dict[str, pl.Expr]:
    """The features of a row alone: they need no other row, so only the kept rows compute them."""
    hour = pl.col("event_time").dt.hour().cast(pl.Float64) + pl.col("event_time").dt.minute() / 60.0
    return {
        **{f"kind_{k}": (pl.col("kind") == k).cast(pl.Float32).alias(f"kind_{k}") for k in EVENT_KINDS},
        "log_amount": _log_amount().alias("log_amount"),
        "is_real": pl.lit(1.0, pl.Float32).alias("is_real"),
        "is_transaction": (pl.col("source") == 1).cast(pl.Float32).alias("is_transaction"),
        "missing_device": pl.col("device_id").is_null().cast(pl.Float32).alias("missing_device"),
        "hour_sin": (hour * (2 * math.pi / 24)).sin().alias("hour_sin"),
        "hour_cos": (hour * (2 * math.pi / 24)).cos().alias("hour_cos"),
    }


# the event table's column order of the features above, as it has always been; the trailing
# sums (RECENT_COUNTS) come after them
_FEATURE_ORDER = (
    *KIND_FEATURES,
    *(c for c in CONTINUOUS_FEATURES if c not in RECENT_COUNTS),
    *FLAG_FEATURES,
    *CYCLIC_FEATURES,
)


@dataclass(frozen=True)
class WindowsOf:
    """Keep only the rows that the windows of the transactions of days ``first``..``last`` read.

    Scoring a day needs each scored customer's history only for the sums, gaps and first
    sightings of its events; the windows themselves read at most the ``window - 1`` rows before
    each scored transaction. Rows outside every window (older events, customers without a
    scored transaction, events after a customer's last scored transaction) are dropped once the
    history features are computed, so the trailing sums, the row features and the feature matrix
    are computed for the kept rows only. A kept window holds exactly the rows it held in the
    whole table: a customer's kept rows are consecutive, from ``window - 1`` rows before its first
    scored transaction (or its first row) to its last scored transaction.
    """

    first: date
    last: date
    window: int

    def split(self, both: pl.DataFrame) -> tuple[pl.DataFrame, OlderRows]:
        """The rows of ``both`` (with ``_RUN``, in any order) to featurise row by row, and the
        totals of the customers' rows before them (``OlderRows``).

        A customer with a transaction in ``first``..``last`` keeps its rows from the day before
        the day where its last ``window - 1`` rows before ``first`` begin: its windows then lie
        whole in the kept rows, and so do their trailing sums, which look back 24 hours at most.
        Its earlier rows only add to the sums, gaps and first sightings of the kept ones, so
        they are reduced to per-customer totals and seen keys (``OlderRows``) and never sorted.
        A customer without such a transaction has no window: none of its rows is kept.
        """
        if both.height == 0:
            return both, OlderRows.of(both, np.zeros(0, dtype=bool))
        # UTC day numbers, as dt.date() counts them, from the frame's first day
        day = (both["event_time"].dt.epoch("s") // 86_400).to_numpy()
        d0 = int(day.min())
        day = day - d0
        n_days = int(day.max()) + 1
        ranks = both[_RUN].to_numpy().astype(np.int64)
        n_ranks = int(ranks.max()) + 1
        lo, hi = ((d - date(1970, 1, 1)).days - d0 for d in (self.first, self.last))
        scored = (both["source"] == 1).to_numpy() & (day >= lo) & (day <= hi)
        # rows per (customer, day): a small matrix, customers x days
        cell = ranks * n_days + day
        counts = np.bincount(cell, minlength=n_ranks * n_days).reshape(n_ranks, n_days)
        first = np.full(n_ranks, n_days, dtype=np.int64)  # first scored day; n_days: none
        np.minimum.at(first, ranks[scored], day[scored])
        # rows on the days before the first scored day, counted from that day backwards
        before = np.where(np.arange(n_days)[None, :] < first[:, None], counts, 0)
        from_day = np.cumsum(before[:, ::-1], axis=1)[:, ::-1]  # rows on days d .. first - 1
        enough = from_day >= self.window - 1
        has = enough.any(axis=1) & (first < n_days)
        # the latest day d with window - 1 rows on d .. first - 1; the kept rows start the day before
        need = n_days - 1 - np.argmax(enough[:, ::-1], axis=1)
        cut = np.where(has, need - 1, np.iinfo(np.int64).min)  # rows before day cut are older
        windowed = (first < n_days)[ranks]  # the customer has a scored transaction
        older = windowed & (day < cut[ranks])
        kept = windowed & ~older
        return both.filter(kept), OlderRows.of(both, older)

    def rows(self, df: pl.DataFrame) -> np.ndarray:
        """Sorted row indexes of ``df`` (contract order, ``_RUN`` present) to keep."""
        n = df.height
        day = df["event_time"].dt.date()
        scored = ((df["source"] == 1) & (day >= self.first) & (day <= self.last)).to_numpy()
        idx = np.flatnonzero(scored)
        if len(idx) == 0:
            return idx
        run_start = customer_starts(df, _RUN)  # each row's customer's first row
        owner = df[_RUN].to_numpy()[idx]
        first = idx[np.r_[True, owner[1:] != owner[:-1]]]  # first scored row of each customer
        last = idx[np.r_[owner[1:] != owner[:-1], True]]  # and its last
        lo = np.maximum(run_start[first], first - (self.window - 1))
        edges = np.zeros(n + 1, dtype=np.int64)
        np.add.at(edges, lo, 1)
        np.add.at(edges, last + 1, -1)
        return np.flatnonzero(np.cumsum(edges[:-1]) > 0)


@dataclass(frozen=True)
class OlderRows:
    """What customers' rows that a frame leaves out add up to, for the history features of the
    rows after them (``WindowsOf.split``): per customer (``_RUN``) the OLDER_COLUMNS, and per
    first-sighting column the (customer, value) keys seen in those rows.
    """

    totals: pl.DataFrame
    seen: dict[str, pl.Series]

    @classmethod
    def of(cls, both: pl.DataFrame, older: np.ndarray) -> OlderRows:
        """Totals and seen keys of the rows of ``both`` (with ``_RUN``, in any order) where
        ``older``; every customer of ``both`` gets totals (0 and null where it has no such row).
        """
        flagged = both.select(_RUN, "source", "amount", "event_time", pl.Series("_older", older))
        mask = pl.col("_older")
        is_tx = (pl.col("source") == 1) & mask
        totals = flagged.group_by(_RUN).agg(
            _fixed(_log_amount(), _LOG_AMOUNT_UNIT).filter(mask).sum().alias(_OLDER_TX_SUM),
            is_tx.cast(pl.Int64).sum().alias(_OLDER_TX_N),
            _minutes().filter(mask).max().alias(_OLDER_LAST),
            _minutes().filter(mask & (pl.col("source") == 0)).max().alias(_OLDER_LAST_LOGIN),
        )
        # a null value's key is seen too, harmlessly: a null is never a first sighting
        keys = (
            both.lazy()
            .filter(pl.Series(older))
            .select(_seen_key(c).alias(c) for c in SEEN_COLUMNS.values())
            .collect()
        )
        return cls(totals, {c: keys[c] for c in keys.columns})


class TrailingWindows:
    """Sums over each customer's trailing time windows, bounded by the row's own position.

    Rolling-by-time windows in Polars include later rows with an equal timestamp; here the
    row's own position is the upper bound, so ties later in contract order never count.
    The frame must be in contract order (customer, then time). ``rows`` (sorted indexes): the
    sums are wanted for those rows only; the windows still count every row of the frame.
    """

    def __init__(self, df: pl.DataFrame, rows: np.ndarray | None = None) -> None:
        run = df[_RUN] if _RUN in df.columns else df.select(_customer_run()).to_series()
        cust_code = run.to_numpy().astype(np.int64)
        secs = df["event_time"].dt.epoch("s").to_numpy().astype(np.int64)
        secs = secs - (secs.min() if len(secs) else 0)
        self.key = cust_code * (1 << 34) + secs  # sorted, because df is in (customer, time) order
        self.rows = rows
        self._starts: dict[int, np.ndarray] = {}  # one search per span, shared by its sums

    def total(self, values: np.ndarray, seconds: int) -> np.ndarray:
        """Sum of ``values`` over the customer's rows in (t - seconds, ... this row]."""
        ends = self.key if self.rows is None else self.key[self.rows]
        start = self._starts.get(seconds)
        if start is None:
            start = self._starts[seconds] = np.searchsorted(self.key, ends - seconds, side="left")
        # integers add exactly (int64, whose wrap-around cancels in the difference while a window's
        # own sum fits): then a sum does not depend on the frame's other rows
        dtype = np.int64 if np.issubdtype(values.dtype, np.integer) else np.float64
        cum = np.zeros(len(values) + 1, dtype=dtype)
        np.cumsum(values, dtype=dtype, out=cum[1:])
        upto = cum[1:] if self.rows is None else cum[self.rows + 1]
        return (upto - cum[start]).astype(np.float64)  # rows (start, ..., this row]


def add_recent_counts(df: pl.DataFrame, keep: np.ndarray | None = None) -> pl.DataFrame:
    """Events, failed logins and spend over the last hour/day of each customer, up to each row.

    ``keep`` (sorted row indexes): only those rows are returned, their sums still counting
    every row of ``df``.
    """
    win = TrailingWindows(df, keep)
    ones = np.ones(df.height, dtype=np.int64)
    fail = (df["kind"] == "login_failure").to_numpy().astype(np.int64)
    amt = np.where(df["source"].to_numpy() == 1, df["amount"].fill_null(0.0).to_numpy(), 0.0)
    amt_units = np.rint(amt / _AMOUNT_UNIT).astype(np.int64)  # exact sums (see _AMOUNT_UNIT)
    sums = {
        "log_events_1h": np.log1p(win.total(ones, 3600)),
        "log_events_24h": np.log1p(win.total(ones, 86400)),
        "log_failures_24h": np.log1p(win.total(fail, 86400)),
        "log_tx_amount_24h": np.log1p(np.maximum(win.total(amt_units, 86400) * _AMOUNT_UNIT, 0.0)),
    }
    out = df if keep is None else df[keep]
    return out.with_columns(pl.Series(name, sums[name], dtype=pl.Float64) for name in RECENT_COUNTS)


ACCOUNT_CHANGES = ("password_reset", "mfa_change", "profile_change")
LOGIN_AGGREGATES = tuple(
    f"n_{what}_{span}"
    for what in ("failures", "new_device_logins", "account_changes")
    for span in ("1h", "24h")
)


def login_aggregates(df: pl.DataFrame) -> pl.DataFrame:
    """Per-row counts of failed logins, new-device logins and account changes in the last hour/day.

    What an order-blind model gets in place of the login sequence itself.
    """
    win = TrailingWindows(df)
    is_login = (df["source"] == 0).to_numpy()
    series = {
        "failures": (df["kind"] == "login_failure").to_numpy(),
        "new_device_logins": is_login & (df["new_device"].to_numpy() > 0),
        "account_changes": df["kind"].is_in(ACCOUNT_CHANGES).to_numpy(),
    }
    spans = {"1h": 3600, "24h": 86400}
    return df.with_columns(
        pl.Series(f"n_{what}_{span}", win.total(v.astype(np.float64), secs), dtype=pl.Float32)
        for what, v in series.items()
        for span, secs in spans.items()
    )


def build_event_table(
    transactions: pl.LazyFrame,
    logins: pl.LazyFrame,
    reason_columns: bool = True,
    windows_of: WindowsOf | None = None,
) -> pl.DataFrame:
    """Interleave, featurise and collect: one row per event, FEATURE_NAMES filled in.

    ``reason_columns=False`` leaves out REASON_ONLY_COLUMNS (same rows, same features).
    ``windows_of``: keep only the rows those transactions' windows read (``WindowsOf``); the
    kept rows carry exactly the features they carry in the whole table.
    """
    order = "_contract_row"
    both, n_customers = _ranked_events(transactions, logins, reason_columns)
    older = None
    if windows_of is not None:  # the rows its windows cannot reach are only totalled, never sorted
        both, older = windows_of.split(both)
    ordered = _sorted_events(both, n_customers)
    columns = [c for c in ordered.columns if c != _RUN]
    lazy = ordered.lazy().with_row_index(order)
    if older is not None:
        lazy = lazy.join(older.totals.lazy(), on=_RUN, how="left", maintain_order="left")
    df = lazy.with_columns(_history_features(older).values()).collect()
    # The streaming engine may reorder rows; the row index says whether it did (a cheap
    # check, where sorting again costs as much as the first sort).
    rows = df[order].to_numpy()
    if len(rows) > 1 and not bool(np.all(rows[1:] > rows[:-1])):
        df = df.sort(order)
    keep = windows_of.rows(df) if windows_of is not None else None
    df = df.drop(order, *(OLDER_COLUMNS if older is not None else ()))
    df = add_recent_counts(df, keep).with_columns(_row_features().values())
    return df.select(
        *columns,
        *[pl.col(c).cast(pl.Float32) for c in (*_FEATURE_ORDER, *RECENT_COUNTS)],
    )


def feature_matrix(df: pl.DataFrame) -> np.ndarray:
    """The (M, F) float32 matrix of FEATURE_NAMES, in the frame's row order."""
    if df.height == 0:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    # C order straight from Polars: its default (column-major) costs a transposing copy later
    return df.select(FEATURE_NAMES).to_numpy(order="c").astype(np.float32, copy=False)


def customer_starts(df: pl.DataFrame, column: str = "customer_id") -> np.ndarray:
    """For each row, the row index of its customer's first event (frame sorted by customer).

    ``column``: what tells customers apart (the id, or the rank ``_RUN`` where the frame has it).
    """
    n = df.height
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    cust = df[column]
    # compared in Polars: the strings never become Python objects
    is_start = (cust != cust.shift(1)).fill_null(True).to_numpy()
    starts = np.flatnonzero(is_start)
    return starts[np.cumsum(is_start) - 1]
