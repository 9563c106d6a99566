"""Import torch once in a process that forks Airflow tasks, so each task does not.

Airflow's Celery worker forks a pool process, and that pool process forks each task
(``airflow.sdk.execution_time.supervisor``). A shard task imports torch first thing, about
1.2 s of a 4.65 s task on 2 cores (``python -m bench.task_overhead``). A module the worker
imports before it forks is already in every task it runs.

``deploy/celery.env`` names this module in Celery's ``imports`` setting (through
``AIRFLOW__CELERY__EXTRA_CELERY_CONFIG``). Celery imports it in the worker's main process
at start-up, before the pool forks, right after Airflow's own preloads (``jinja2``, its
operators, NumPy), which end with ``gc.freeze()``.

It imports torch and nothing else. Importing torch starts no thread; its intra-op pool
starts at the first operation, which happens in a task. Polars must not be imported here:
its thread pool starts at import, and a fork after a pool has started can deadlock the
child. The module freezes the collector again after the import, as Airflow's handler does,
so the pool and the tasks neither walk torch's objects in a full collection nor copy their
pages for it; Airflow unfreezes the main process once the pool runs.

``pipeline.executors.LocalExecutor`` imports it in the scheduler before the LocalExecutor
forks its workers; there Airflow unfreezes the scheduler right after the forks.
"""

from __future__ import annotations

import gc

import torch

PRELOADED = (torch.__name__,)

gc.freeze()
