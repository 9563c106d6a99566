"""Per-event features and windows: contract order, causality, padding."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from features.events import FEATURE_NAMES, build_event_table, customer_starts, feature_matrix
from features.windows import Normaliser, gather_windows, zero_left_padding

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def tx(
    event_id: str, customer: str, minutes: float, amount: float, merchant: str = "M1", **kw: object
) -> dict:
    row = {
        "event_id": event_id,
        "customer_id": customer,
        "event_time": T0 + timedelta(minutes=minutes),
        "amount": amount,
        "currency": "EUR",
        "merchant_id": merchant,
        "merchant_category": "5411",
        "channel": "pos",
        "country": "FR",
        "card_id": "K1",
        "device_id": None,
        "ip_address": None,
    }
    row.update(kw)
    return row


def login(event_id: str, customer: str, minutes: float, kind: str = "login_success", **kw: object) -> dict:
    row = {
        "event_id": event_id,
        "customer_id": customer,
        "event_time": T0 + timedelta(minutes=minutes),
        "event_type": kind,
        "device_id": "D1",
        "ip_address": "10.0.0.1",
        "country": "FR",
        "user_agent": "ua",
    }
    row.update(kw)
    return row


def table(txs: list[dict], logins: list[dict]) -> pl.DataFrame:
    tx_schema = {
        "event_time": pl.Datetime("us", "UTC"),
        "amount": pl.Float64,
        "device_id": pl.String,
        "ip_address": pl.String,
    }
    lg_schema = {
        c: pl.String
        for c in ("event_id", "customer_id", "event_type", "device_id", "ip_address", "country", "user_agent")
    }
    lg_schema["event_time"] = pl.Datetime("us", "UTC")  # type: ignore[assignment]
    t = pl.DataFrame(txs, schema_overrides=tx_schema).lazy()
    lg = (
        pl.DataFrame(logins, schema_overrides=lg_schema) if logins else pl.DataFrame(schema=lg_schema)
    ).lazy()
    return build_event_table(t, lg)


def test_contract_order_login_before_transaction_at_equal_time() -> None:
    df = table(
        [tx("t2", "A", 5, 10.0), tx("t1", "A", 5, 10.0), tx("t0", "B", 0, 1.0)],
        [login("l9", "A", 5)],
    )
    assert df["event_id"].to_list() == ["l9", "t1", "t2", "t0"]
    assert df.columns[: len(df.columns)] and set(FEATURE_NAMES) <= set(df.columns)


def test_first_seen_flags_and_history_relative_amount() -> None:
    df = table(
        [tx("t1", "A", 0, 10.0, "M1"), tx("t2", "A", 10, 10.0, "M1"), tx("t3", "A", 20, 1000.0, "M2")],
        [login("l1", "A", 15, device_id="D9", country="RO")],
    )
    rows = {r["event_id"]: r for r in df.iter_rows(named=True)}
    assert (
        rows["t1"]["new_merchant"] == 1
        and rows["t2"]["new_merchant"] == 0
        and rows["t3"]["new_merchant"] == 1
    )
    assert rows["l1"]["new_device"] == 1 and rows["l1"]["new_country"] == 1
    assert rows["t2"]["amount_vs_history"] == pytest.approx(0.0)
    assert rows["t3"]["amount_vs_history"] == pytest.approx(np.log1p(1000) - np.log1p(10), rel=1e-5)
    # the login gap of t3 is 5 minutes
    assert rows["t3"]["log_gap_prev_login"] == pytest.approx(np.log1p(5.0), rel=1e-5)


def test_first_seen_flags_are_per_customer_and_match_a_set_of_seen_values() -> None:
    """The flags come from one hashed key per (customer, value): a value another customer showed
    first is still new to this one, and a repeat is never new."""
    rng = np.random.default_rng(11)
    txs = [
        tx(
            f"t{i:03d}",
            f"C{i % 9}",
            float(i),
            1.0,
            f"M{rng.integers(0, 5)}",
            device_id=None if i % 7 == 0 else f"D{rng.integers(0, 4)}",
            country=f"K{rng.integers(0, 3)}",
        )
        for i in range(300)
    ]
    logins = [
        login(
            f"l{i:03d}",
            f"C{i % 9}",
            i + 0.5,
            device_id=f"D{rng.integers(0, 4)}",
            ip_address=f"10.0.0.{i % 6}",
        )
        for i in range(200)
    ]
    df = table(txs, logins)
    columns = {
        "new_device": "device_id",
        "new_country": "country",
        "new_merchant": "merchant_id",
        "new_ip": "ip_address",
    }
    seen: dict[tuple[str, str, str], bool] = {}
    expected: dict[str, list[float]] = {flag: [] for flag in columns}
    for row in df.iter_rows(named=True):  # contract order
        for flag, col in columns.items():
            value = row[col]
            new = value is not None and (row["customer_id"], col, value) not in seen
            expected[flag].append(1.0 if new else 0.0)
            if value is not None:
                seen[(row["customer_id"], col, value)] = True
    for flag in columns:
        assert df[flag].to_list() == expected[flag], flag
    # values are shared across customers, so per-customer flags differ from global ones
    assert sum(expected["new_device"]) > df["device_id"].n_unique()


def test_recent_counts_ignore_later_ties() -> None:
    df = table([tx("t1", "A", 0, 1.0), tx("t2", "A", 0, 1.0), tx("t3", "A", 0, 1.0)], [])
    counts = np.expm1(df["log_events_1h"].to_numpy())
    assert counts.tolist() == pytest.approx([1.0, 2.0, 3.0])


def test_the_table_does_not_depend_on_the_order_rows_arrive_in() -> None:
    rng = np.random.default_rng(7)
    txs = [
        tx(f"t{i:03d}", f"C{i % 7}", float(rng.integers(0, 300)), 1.0 + i, f"M{i % 4}", device_id=f"D{i % 3}")
        for i in range(150)
    ]
    txs += [tx(f"s{i}", "C1", 42.0, 5.0) for i in range(4)]  # ties on time: event_id decides
    logins = [
        login(
            f"l{i:03d}",
            f"C{i % 5}",
            float(rng.integers(0, 300)),
            "login_failure" if i % 3 else "login_success",
        )
        for i in range(90)
    ]
    ref = table(txs, logins)
    for seed in range(3):
        order = np.random.default_rng(seed)
        shuffled = table(
            [txs[i] for i in order.permutation(len(txs))], [logins[i] for i in order.permutation(len(logins))]
        )
        assert shuffled.equals(ref)
    keys = ref.select("customer_id", "event_time", "source", "event_id")
    assert keys.equals(keys.sort(keys.columns))  # contract order
    assert ref.filter(pl.col("customer_id") == "C1", pl.col("event_id").str.starts_with("s"))[
        "event_id"
    ].to_list() == [
        "s0",
        "s1",
        "s2",
        "s3",
    ]
    starts = customer_starts(ref)
    cust = ref["customer_id"].to_numpy()
    assert all(
        cust[starts[i]] == cust[i] and (starts[i] == 0 or cust[starts[i] - 1] != cust[i])
        for i in range(ref.height)
    )


def test_a_scoring_pass_leaves_out_only_the_reason_columns() -> None:
    """``reason_columns=False``: the same rows in the same order, the same features, three columns fewer."""
    from features.events import REASON_ONLY_COLUMNS

    customers = ["C9", "C10", "c2", "C1", "C100", "b"]  # ids whose sort order is not their length's
    txs = [tx(f"t{i:02d}", customers[i % 6], float(i * 7 % 50), 2.0 + i, channel="ecom") for i in range(40)]
    logins = [login(f"l{i:02d}", customers[i % 4], float(i * 5 % 50)) for i in range(20)]
    tx_schema = {"event_time": pl.Datetime("us", "UTC"), "amount": pl.Float64, "device_id": pl.String}
    t = pl.DataFrame(txs, schema_overrides=tx_schema).lazy()
    lg = pl.DataFrame(logins, schema_overrides={"event_time": pl.Datetime("us", "UTC")}).lazy()
    full = build_event_table(t, lg)
    lean = build_event_table(t, lg, reason_columns=False)
    assert set(REASON_ONLY_COLUMNS) <= set(full.columns)
    assert not set(REASON_ONLY_COLUMNS) & set(lean.columns)
    assert lean.equals(full.drop(REASON_ONLY_COLUMNS))
    assert not set(REASON_ONLY_COLUMNS) & set(FEATURE_NAMES)
    keys = full.select("customer_id", "event_time", "source", "event_id")
    assert keys.equals(keys.sort(keys.columns))  # ranks of the ids sort as the ids do


def test_appending_future_events_changes_no_past_feature() -> None:
    base_tx = [tx(f"t{i}", "A" if i % 2 else "B", i * 7.0, 5.0 + i, f"M{i % 3}") for i in range(20)]
    base_lg = [
        login(f"l{i}", "A", i * 11.0, "login_failure" if i % 4 == 0 else "login_success") for i in range(8)
    ]
    past = table(base_tx, base_lg)
    future_tx = [tx(f"u{i}", "A", 500 + i, 9000.0, "MX", country="RO") for i in range(5)]
    future_lg = [login(f"v{i}", "B", 400 + i, "login_failure", device_id="DX") for i in range(5)]
    both = table(base_tx + future_tx, base_lg + future_lg)
    joined = past.join(both, on="event_id", suffix="_new")
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(
            joined[name].to_numpy(), joined[f"{name}_new"].to_numpy(), rtol=1e-6, err_msg=name
        )


def test_windows_are_left_padded_and_stay_inside_the_customer() -> None:
    df = table(
        [tx(f"a{i}", "A", i, 1.0 + i) for i in range(3)] + [tx(f"b{i}", "B", i, 2.0) for i in range(5)], []
    )
    m = feature_matrix(df)
    starts = customer_starts(df)
    targets = np.array([2, 7])  # last of A (3 events), last of B (5 events)
    x, lengths = gather_windows(m, starts, targets, window=4)
    assert x.shape == (2, 4, len(FEATURE_NAMES))
    assert lengths.tolist() == [3, 4]
    real = FEATURE_NAMES.index("is_real")
    assert x[0, :, real].tolist() == [0, 1, 1, 1]
    assert x[1, :, real].tolist() == [1, 1, 1, 1]
    np.testing.assert_array_equal(x[0, -1], m[2])
    np.testing.assert_array_equal(x[1, 0], m[4])  # B's window starts at its 2nd event


@pytest.mark.parametrize("lengths", [[4, 4, 4], [1, 4, 2], [1, 1, 1], [0, 3, 4]])
def test_zero_left_padding_clears_exactly_the_positions_before_each_window(lengths: list[int]) -> None:
    x = np.random.default_rng(1).random((3, 4, 2)).astype(np.float32) + 1.0  # no zero anywhere
    before = x.copy()
    out = zero_left_padding(x, np.array(lengths))
    assert out is x  # in place
    for i, n in enumerate(lengths):
        assert (x[i, : 4 - n] == 0).all()
        np.testing.assert_array_equal(x[i, 4 - n :], before[i, 4 - n :])


def test_normaliser_scales_only_continuous_features_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    m = rng.normal(3.0, 2.0, size=(500, len(FEATURE_NAMES))).astype(np.float32)
    norm = Normaliser.fit(m)
    out = norm.transform(m)
    i_amt, i_flag = FEATURE_NAMES.index("log_amount"), FEATURE_NAMES.index("new_device")
    assert abs(out[:, i_amt].mean()) < 1e-4 and abs(out[:, i_amt].std() - 1) < 1e-3
    np.testing.assert_array_equal(out[:, i_flag], m[:, i_flag])
    again = Normaliser.from_dict(norm.to_dict()).transform(m)
    np.testing.assert_array_equal(out, again)


def test_a_scoring_pass_keeps_exactly_the_rows_its_windows_read() -> None:
    """``windows_of``: the kept rows are the scored transactions' windows, with the features and
    windows they have in the whole table; sums and first sightings still count the dropped rows."""
    from features.events import WindowsOf

    day2 = 2 * 24 * 60.0  # minutes from T0 to the scored day (T0 is 12:00, so day 2 starts at 36 h)
    txs = [tx(f"a{i:02d}", "A", i * 60.0, 10.0 + i, f"M{i % 5}") for i in range(30)]  # days 0..1
    txs += [tx(f"A{i}", "A", day2 + i * 30.0, 500.0, "MX", country="RO") for i in range(3)]
    txs += [tx(f"B{i}", "B", day2 + i * 10.0, 20.0) for i in range(2)]  # all on the scored day
    txs += [tx(f"c{i}", "C", i * 90.0, 15.0) for i in range(6)]  # no transaction on the scored day
    txs += [tx("e0", "E", 100.0, 40.0), tx("E0", "E", day2 + 5.0, 41.0)]
    logins = [login(f"l{i}", "A", i * 45.0 + 7.0, device_id=f"D{i % 3}") for i in range(12)]
    logins += [login("late", "A", day2 + 200.0)]  # after A's last scored transaction
    logins += [login(f"d{i}", "D", day2 + i) for i in range(3)]  # only logins on the scored day
    full = table(txs, logins)
    t_schema = {"event_time": pl.Datetime("us", "UTC"), "amount": pl.Float64, "device_id": pl.String}
    t = pl.DataFrame(txs, schema_overrides=t_schema | {"ip_address": pl.String}).lazy()
    lg = pl.DataFrame(logins, schema_overrides={"event_time": pl.Datetime("us", "UTC")}).lazy()
    day = (T0 + timedelta(minutes=day2)).date()
    window = 8
    lean = build_event_table(t, lg, windows_of=WindowsOf(day, day, window))

    ids = full["event_id"].to_list()
    a_first = ids.index("A0")
    expected = ids[a_first - (window - 1) : ids.index("A2") + 1] + ["B0", "B1", "e0", "E0"]
    assert sorted(lean["event_id"].to_list()) == sorted(expected)
    # the same rows, in the same order, with the same features as in the whole table
    assert lean.equals(full.filter(pl.col("event_id").is_in(expected)))

    def windows(df: pl.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray]:
        scored = (df["source"] == 1) & (df["event_time"].dt.date() == day)
        rows = np.flatnonzero(scored.to_numpy())
        x, lengths = gather_windows(feature_matrix(df), customer_starts(df), rows, window)
        return df["event_id"].gather(rows).to_list(), x, lengths

    ids_full, x_full, len_full = windows(full)
    ids_lean, x_lean, len_lean = windows(lean)
    assert ids_lean == ids_full == ["A0", "A1", "A2", "B0", "B1", "E0"]
    assert np.array_equal(len_lean, len_full) and list(len_full) == [8, 8, 8, 1, 2, 2]
    assert np.array_equal(x_lean, x_full)
    # nothing to score: nothing kept
    none = build_event_table(t, lg, windows_of=WindowsOf(day + timedelta(days=1), day + timedelta(days=1), 8))
    assert none.height == 0 and none.columns == full.columns


@pytest.mark.parametrize(("window", "scored_days"), [(32, 1), (8, 1), (8, 3), (2, 2)])
def test_a_scoring_pass_that_totals_older_rows_gives_the_whole_tables_rows(
    window: int, scored_days: int
) -> None:
    """``windows_of`` reduces each customer's rows before its windows' days to totals and seen
    keys (``WindowsOf.split``); the kept rows are still exactly the whole table's, bit for bit."""
    from datetime import date

    from features.events import WindowsOf
    from pipeline.generate import generate_frames

    frames = generate_frames(80, 21, date(2026, 1, 1), seed=5)
    tx_frame, lg_frame = frames["transactions"], frames["logins"]
    # null devices: their keys are among the seen ones, and a null is never a first sighting
    tx_frame = tx_frame.with_columns(
        pl.when(pl.int_range(pl.len()) % 11 == 0).then(None).otherwise(pl.col("device_id")).alias("device_id")
    )
    last = date(2026, 1, 21)
    first = last - timedelta(days=scored_days - 1)
    full = build_event_table(tx_frame.lazy(), lg_frame.lazy())
    of = WindowsOf(first, last, window)
    lean = build_event_table(tx_frame.lazy(), lg_frame.lazy(), windows_of=of)

    from features.events import _OLDER_LAST, _RUN, _ranked_events

    both, _ = _ranked_events(tx_frame.lazy(), lg_frame.lazy())
    kept, older = of.split(both)
    # rows were totalled, not kept: over 20 customers have older rows (totals cover every customer)
    assert older.totals[_OLDER_LAST].is_not_null().sum() > 20 and kept.height < both.height
    expected = full[of.rows(full.with_columns(pl.col("customer_id").rank("dense").alias(_RUN)))]
    assert lean.height == expected.height > 0
    assert lean.equals(expected)


def test_a_customers_features_do_not_depend_on_the_other_customers_in_the_frame() -> None:
    """Amount sums add exact integers: a customer's features are the same bits read alone or with
    everybody (float sums over the frame would round differently)."""
    from datetime import date

    from pipeline.generate import generate_frames

    frames = generate_frames(40, 10, date(2026, 1, 1), seed=3)
    tx_frame, lg_frame = frames["transactions"], frames["logins"]
    # a customer sorted first with large amounts: its sums would dominate a frame-wide float one
    whale = tx_frame.head(300).with_columns(
        pl.lit("0-whale").alias("customer_id"),
        ("w" + pl.int_range(pl.len()).cast(pl.String)).alias("event_id"),
        pl.lit(987_654_321.37).alias("amount"),
    )
    tx_frame = pl.concat([whale, tx_frame])
    full = build_event_table(tx_frame.lazy(), lg_frame.lazy())
    for customer in full["customer_id"].unique().sort().to_list()[::7]:
        alone = build_event_table(
            tx_frame.lazy().filter(pl.col("customer_id") == customer),
            lg_frame.lazy().filter(pl.col("customer_id") == customer),
        )
        assert alone.equals(full.filter(pl.col("customer_id") == customer))


def test_the_packed_sort_key_orders_rows_as_the_columns_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """(rank, time, source) packed in one integer gives the table that sorting the columns gives."""
    from features import events

    customers = ["C9", "C10", "c2", "C1", "C100", "b"]
    # equal times across logs and within a log, so the source and the event_id decide
    txs = [tx(f"t{i:02d}", customers[i % 6], float(i * 7 % 12), 2.0 + i) for i in range(40)]
    txs += [tx("z0", "b", 10 * 24 * 60.0, 5.0), tx("a0", "b", 10 * 24 * 60.0, 6.0)]
    logins = [login(f"l{i:02d}", customers[i % 4], float(i * 5 % 12)) for i in range(20)]
    logins += [login("zz", "b", 10 * 24 * 60.0)]  # sorts after the two transactions by id, before them by log
    packed = table(txs, logins)
    ordered = events._ordered_events(*(f.lazy() for f in _frames(txs, logins)))
    assert events._packed_key(ordered, 6) is not None  # the table above took the packed path
    monkeypatch.setattr(events, "_KEY_BITS", 8)  # too few bits: the column sort
    assert events._packed_key(ordered, 6) is None
    assert table(txs, logins).equals(packed)
    keys = packed.select("customer_id", "event_time", "source", "event_id")
    assert keys.equals(keys.sort(keys.columns))
    assert packed.filter(pl.col("customer_id") == "b")["event_id"].tail(3).to_list() == ["zz", "a0", "z0"]


def _frames(txs: list[dict], logins: list[dict]) -> tuple[pl.DataFrame, pl.DataFrame]:
    t = pl.DataFrame(txs, schema_overrides={"event_time": pl.Datetime("us", "UTC"), "device_id": pl.String})
    lg = pl.DataFrame(logins, schema_overrides={"event_time": pl.Datetime("us", "UTC")})
    return t.with_columns(pl.col("ip_address").cast(pl.String)), lg
