"""Crash points for fault-injection tests: a real SIGKILL at a named place in the pipeline.

Each stage calls ``checkpoint("name")`` at the moments where a crash would hurt most
(output staged but not swapped in, a day's rows deleted but not re-inserted, a model
logged but not registered). In production the call is one dictionary lookup. When the
environment variable ``FRAUDSEQ_TEST_KILL_AT`` names that checkpoint, the process sends
itself SIGKILL: no ``finally`` block, no ``atexit`` hook and no rollback code runs, which
is what a power cut or the kernel's OOM killer does. ``tests/test_kill.py`` runs the real
CLI under each checkpoint and checks that the previous state survived and a re-run works.
"""

from __future__ import annotations

import os
import signal
import sys

KILL_ENV = "FRAUDSEQ_TEST_KILL_AT"

# Every checkpoint the code calls, with where it sits; tests and docs/failure-modes.md read this.
CHECKPOINTS: dict[str, str] = {
    "validate.staged": "validate: every output of the day written to staging folders, none swapped in",
    "validate.swapping": "validate: the first folder of the day swapped in, the others still staged",
    "validate.before_report": "validate: every folder swapped in, the JSON report not yet replaced",
    "validate.publishing": "validate: day committed locally, shared copy's partitions written, its report not yet",
    "score.deleted": "score: the day's old rows deleted inside the transaction, new rows not inserted",
    "score.inserted": "score: new rows inserted inside the transaction, not committed",
    "score.labels": "score: the day's scores committed, fraud_labels not yet merged",
    "train.logged": "train: model logged to MLflow, no registered version yet",
    "train.registered": "train: version registered, champion alias not yet moved",
}


def checkpoint(name: str) -> None:
    """SIGKILL this process if ``FRAUDSEQ_TEST_KILL_AT`` equals ``name``; otherwise do nothing."""
    if os.environ.get(KILL_ENV) == name:
        # the one line a test can check to know the kill came from here, not from the OOM killer
        print(f"fraudseq: fault injection: SIGKILL at {name}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
