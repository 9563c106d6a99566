"""Airflow's LocalExecutor, whose workers start with torch imported.

Set ``AIRFLOW__CORE__EXECUTOR=pipeline.executors.LocalExecutor`` on the scheduler. Airflow's
LocalExecutor forks its worker processes from the scheduler, and each worker forks every
task it runs (``airflow.sdk.execution_time.supervisor``). This one imports torch in the
scheduler (``pipeline.worker_preload``) before it starts its workers, so the workers share
torch's pages with the scheduler and every task starts with torch imported, instead of
spending about a second on the import (``python -m bench.task_overhead``).

The scheduler pays the import once, at start (about 1.2 s and 135 MB). Airflow's
``_spawn_workers_with_gc_freeze`` freezes the collector around each fork and then unfreezes
the scheduler, so torch's objects are frozen in the workers and the scheduler collects as
before. Under the ``spawn`` start method (not Linux's default) the workers start a new
interpreter and would inherit nothing, so the scheduler imports nothing more; the executor
is then Airflow's own. The class keeps Airflow's name, which Airflow reads to tell local
executors from remote ones.
"""

from __future__ import annotations

from airflow.executors import local_executor


class LocalExecutor(local_executor.LocalExecutor):
    """Airflow's LocalExecutor, after importing torch in the scheduler (see the module)."""

    def start(self) -> None:
        if self.is_mp_using_fork:  # under spawn, the workers would not inherit it
            import pipeline.worker_preload  # noqa: F401  (torch only, before any worker forks)

        super().start()
