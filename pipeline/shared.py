"""Files at an fsspec URL: a local folder, ``file://``, ``s3://``, ``gs://``, ``abfs://``, ``memory://``.

Workers on other machines exchange data through such a URL (``Settings.shared_location``),
never through XCom. A write goes to a temporary name beside its target, then a rename, so a
reader never sees half a file; on object stores the final put is atomic by itself. Local
Parquet files are scanned lazily in place; remote ones are fetched whole, then scanned.
"""

from __future__ import annotations

import io
import posixpath
import uuid

import polars as pl


def put_atomic(data: bytes, url: str) -> None:
    """Write ``data`` at ``url``: a temp file beside it, then a rename (an old file stays whole)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    parent = posixpath.dirname(path)
    fs.makedirs(parent, exist_ok=True)
    tmp = posixpath.join(parent, f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")
    fs.pipe_file(tmp, data)
    try:
        fs.mv(tmp, path)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)


def write_atomic(frame: pl.DataFrame, url: str) -> None:
    """Write ``frame`` as Parquet at ``url`` with ``put_atomic``."""
    buf = io.BytesIO()
    frame.write_parquet(buf)
    put_atomic(buf.getvalue(), url)


def remove(url: str) -> None:
    """Delete the file at ``url``; nothing happens when there is none."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    if fs.exists(path):
        fs.rm(path)


def remove_folder(url: str, prune_up_to: str | None = None) -> None:
    """Delete the folder at ``url`` and everything in it; nothing happens when there is none.

    ``prune_up_to``: a folder above ``url``; on a local file system each folder between them
    that is left empty is removed too (object stores have no empty folders to leave).
    """
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    fs, path = fsspec.core.url_to_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    if prune_up_to is None or not isinstance(fs, LocalFileSystem):
        return
    stop = posixpath.normpath(fsspec.core.url_to_fs(prune_up_to)[1])
    parent = posixpath.dirname(posixpath.normpath(path))
    while parent.startswith(stop + "/"):
        try:
            fs.rmdir(parent)  # refuses a folder that still holds something
        except OSError:
            return
        parent = posixpath.dirname(parent)


def list_files(url: str, depth: int = 1) -> list[str]:
    """Paths (without the protocol) of the files up to ``depth`` levels under folder ``url``; [] if absent."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    try:
        return sorted(fs.find(path, maxdepth=depth))
    except FileNotFoundError:
        return []


def read_existing(urls: list[str]) -> list[bytes | None]:
    """The bytes of each file of ``urls``, in order; None for a file that is not there."""
    import fsspec

    out: list[bytes | None] = []
    for url in urls:
        fs, path = fsspec.core.url_to_fs(url)
        try:
            out.append(fs.cat_file(path))
        except FileNotFoundError:
            out.append(None)
    return out


def scan_parquet(urls: list[str]) -> pl.LazyFrame:
    """One lazy scan over the Parquet files at ``urls``.

    Local files (plain paths, ``file://``) are scanned in place, so filters and projections
    reach the reader; remote files are fetched whole first (compressed, as stored), and the
    decoding stays lazy.
    """
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    located = [fsspec.core.url_to_fs(url) for url in urls]
    # files written before a column was added lack it: null there (and never an error)
    tolerant = {"missing_columns": "insert", "extra_columns": "ignore"}
    if all(isinstance(fs, LocalFileSystem) for fs, _ in located):
        return pl.scan_parquet([path for _, path in located], **tolerant)  # type: ignore[arg-type]
    return pl.scan_parquet([bytes(fs.cat_file(path)) for fs, path in located], **tolerant)  # type: ignore[arg-type]
