"""Python's cycle collector in a fraudseq batch process: a CLI command or an Airflow task.

A scoring process imports a large stack (torch, MLflow, SQLAlchemy, Polars, matplotlib):
about 490,000 container objects that live as long as the process. With CPython's default
thresholds (700, 10, 10), each full collection walks all of them again, and importing that
stack alone sets off several. A day's data lives in NumPy, Polars and torch buffers, which the
collector does not track, so collecting less often holds back little memory: only the
reference cycles of the meantime, which it still frees, later. ``python -m bench.collector``
measures it; the figures are in the README (Performance).
"""

from __future__ import annotations

import gc

# a young collection every 10,000 net container allocations instead of 700; the older
# generations keep CPython's ratios (a middle collection every 10 young ones, a full one every
# 10 middle ones, and then only when the objects that survived since the last full collection
# are at least a quarter of those it kept). 50,000 and 100,000 measured the same.
BATCH_THRESHOLDS = (10_000, 10, 10)


def tune_collector() -> tuple[int, int, int]:
    """Set ``BATCH_THRESHOLDS`` for this process; returns the thresholds it had."""
    before = gc.get_threshold()
    gc.set_threshold(*BATCH_THRESHOLDS)
    return before
