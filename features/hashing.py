"""Customer hashes: which shard a customer belongs to, and how validated days are laid out for it.

A customer's hash is ``xxhash64`` of its UTF-8 id (seed 0): the same on every process, machine
and Python version (never Python's salted ``hash()``). Shard k of N is the k-th of N equal
ranges of the 64-bit hash space, so a shard is a *range* of hashes: validated transactions and
logins are stored sorted by the hash, in row groups, and a shard's scan of a day decodes only
the row groups whose hash statistics overlap its range.
"""

from __future__ import annotations

import polars as pl
import xxhash

HASH_COLUMN = "customer_hash"  # UInt64 column of validated transactions and logins
HASH_SPACE = 1 << 64
ROW_GROUPS = 256  # row groups per validated day, so a shard's read skips most of the file
MIN_ROW_GROUP = 2_048


def customer_hash(customer_id: str) -> int:
    """xxhash64 of the customer's UTF-8 id, seed 0."""
    return xxhash.xxh64_intdigest(customer_id.encode("utf-8"))


def shard_of(customer_id: str, n_shards: int) -> int:
    """The shard of a customer: which of ``n_shards`` equal ranges of the hash space holds its hash."""
    return customer_hash(customer_id) * n_shards >> 64


def shard_range(shard: int, n_shards: int) -> tuple[int, int]:
    """[lo, hi) of the hashes in ``shard`` (``hi`` is 2**64 for the last shard)."""
    if n_shards < 1 or not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is not in 0..{n_shards - 1}")
    ceil = lambda k: -(-k * HASH_SPACE // n_shards)  # noqa: E731 - the least h with h * n >> 64 >= k
    return ceil(shard), ceil(shard + 1)


def in_shard(shard: int, n_shards: int) -> pl.Expr:
    """Rows of ``shard``, by the stored hash column (a range: Parquet statistics can skip the rest)."""
    lo, hi = shard_range(shard, n_shards)
    expr = pl.col(HASH_COLUMN) >= pl.lit(lo, dtype=pl.UInt64)
    return expr if hi >= HASH_SPACE else expr & (pl.col(HASH_COLUMN) < pl.lit(hi, dtype=pl.UInt64))


def of_customers(customer_ids: list[str]) -> pl.Expr:
    """Rows of these customers, by the stored hash column: an integer test instead of a string one.

    A customer whose hash collides with one of theirs passes too; callers that need exactly
    these customers filter on the id as well (``pipeline.sequences.load_events`` does).
    """
    hashes = pl.Series(HASH_COLUMN, sorted({customer_hash(c) for c in customer_ids}), dtype=pl.UInt64)
    return pl.col(HASH_COLUMN).is_in(hashes.implode())  # a Series as-is is deprecated in Polars 2


def with_customer_hash(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``HASH_COLUMN``, sorted by it (then customer, then the rows' own order)."""
    ids = frame["customer_id"].unique()
    hashes = pl.Series(HASH_COLUMN, [customer_hash(c) for c in ids.to_list()], dtype=pl.UInt64)
    lookup = pl.DataFrame([ids, hashes])
    return frame.join(lookup, on="customer_id", how="left", maintain_order="left").sort(
        HASH_COLUMN, "customer_id", maintain_order=True
    )


def row_group_size(n_rows: int) -> int:
    """Rows per Parquet row group of a validated day: about ``ROW_GROUPS`` groups, none tiny."""
    return max(MIN_ROW_GROUP, -(-n_rows // ROW_GROUPS))
