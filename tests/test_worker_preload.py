"""pipeline.worker_preload and pipeline.executors: what Airflow's workers import before they fork tasks.

The real workers are in tests/test_celery.py (Celery) and tests/test_postgres_stack.py
(LocalExecutor); here, the module's own promises in a fresh interpreter, that the Celery
recipe's settings reach Airflow's Celery configuration, and when the LocalExecutor preloads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

PROBE = r"""
import gc, json, os, sys, time

def threads():
    return len(os.listdir("/proc/self/task"))

import numpy  # Airflow's own Celery preload, first: its BLAS pool is Airflow's thread

before = {"threads": threads(), "frozen": gc.get_freeze_count()}
import pipeline.worker_preload as preload
after = {"threads": threads(), "frozen": gc.get_freeze_count()}
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"polars", "pyarrow", "mlflow", "sqlalchemy"})

# a task forked from here uses torch's thread pool and exits; then the worker goes on
pid = os.fork()
if pid == 0:
    import torch
    torch.set_num_threads(2)
    a = torch.randn(256, 256)
    ok = bool(torch.isfinite(a @ a).all())
    os._exit(0 if ok else 3)
deadline = time.monotonic() + 60
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    if time.monotonic() > deadline:
        os.kill(pid, 9)
        status = -1
        break
    time.sleep(0.05)

print(json.dumps({
    "before": before, "after": after, "heavy": heavy, "preloaded": list(preload.PRELOADED),
    "torch": "torch" in sys.modules, "child": os.waitstatus_to_exitcode(status) if status != -1 else "hung",
}))
"""


def test_preload_imports_torch_only_and_a_forked_task_can_use_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["torch"] and got["preloaded"] == ["torch"]
    # no library that starts a thread pool at import (Polars) or opens connections
    assert got["heavy"] == []
    assert got["after"]["threads"] == got["before"]["threads"]  # torch started no thread
    # torch's objects went to the permanent generation: a task's full collection skips them
    assert got["after"]["frozen"] > got["before"]["frozen"] + 50_000
    assert got["child"] == 0  # the forked task ran a multi-threaded matmul and exited


def test_celery_recipe_sets_the_preload_in_airflows_celery_config(tmp_path: Path) -> None:
    """Sourcing deploy/celery.env makes Airflow's Celery app import the module on worker start."""
    code = (
        "import json\n"
        "from airflow.configuration import conf\n"
        "from airflow.providers.celery.executors.default_celery import get_default_celery_config\n"
        "print(json.dumps(get_default_celery_config(conf).get('imports')))\n"
    )
    shell = f'source "{ROOT}/deploy/celery.env" && exec "{sys.executable}" -c "$0"'
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FRAUDSEQ_"))}
    env["FRAUDSEQ_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        ["bash", "-c", shell, code], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == ["pipeline.worker_preload"]

    # an operator's own JSON replaces it
    env["AIRFLOW__CELERY__EXTRA_CELERY_CONFIG"] = '{"imports": []}'
    done = subprocess.run(
        ["bash", "-c", shell, code], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_local_executor_preloads_only_when_its_workers_fork(tmp_path: Path) -> None:
    """Under spawn the workers inherit nothing, so the scheduler must not import torch for them.

    The fork case on a real scheduler is in tests/test_postgres_stack.py.
    """
    code = (
        "import sys\n"
        "from airflow.executors import local_executor\n"
        "from pipeline import executors\n"
        "started = []\n"
        "local_executor.LocalExecutor.start = lambda self: started.append(self.is_mp_using_fork)\n"
        "ex = executors.LocalExecutor()\n"
        "ex.is_mp_using_fork = False\n"
        "ex.start()\n"
        "spawn = 'torch' in sys.modules\n"
        "ex.is_mp_using_fork = True\n"
        "ex.start()\n"
        "print(spawn, 'torch' in sys.modules, started)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FRAUDSEQ_"))}
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow")
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "False True [False, True]"  # and Airflow's start ran both times
