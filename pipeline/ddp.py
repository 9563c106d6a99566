"""Data-parallel training: torchrun starts the ranks, DistributedDataParallel keeps them in step.

``fraudseq train --nproc N`` (``train_distributed``) runs this module under
``python -m torch.distributed.run --standalone --nproc-per-node N`` (torchrun), so rendezvous,
worker supervision and failure handling are torchrun's own. The module is also a worker entry
point that torchrun can start directly, on one node or many::

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        -m pipeline.ddp --train-start 2026-01-05 --train-end 2026-02-01

Every rank loads the same data and draws the same shuffled, length-bucketed batches from the
same seed. Each global batch (``--batch-size``, unchanged by N) is dealt out round-robin, so a
rank trains on about 1/N of it; its loss is scaled by its share, and DDP's gradient average is
then exactly the gradient of the whole batch. Validation windows are split across the ranks and
gathered. Rank 0 decides whether an epoch is the best so far and broadcasts it, so all ranks keep
and stop on the same epoch; only rank 0 logs to MLflow, registers the model and applies the gate.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.config import Settings
from pipeline.errors import FraudseqError, UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pipeline.model import SequenceClassifier
    from pipeline.train import TrainOptions

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"


class DistributedTrainingError(FraudseqError):
    """A rank failed; carries the exit code of the error that stopped it."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Replicas:
    """This process's place in a torchrun job, and the collectives ``pipeline.fit`` calls."""

    def __init__(
        self, rank: int, world_size: int, device: torch.device, report_dir: Path | None = None
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.report_dir = report_dir

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str:
        import torch.distributed as dist

        return str(dist.get_backend())

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model under DDP: gradients are averaged across ranks during ``backward``."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def local_batch(self, idx: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's share of a global batch, and the factor that turns its mean loss into its
        part of the global mean (``len(share) * N / len(batch)``).

        Round-robin rather than contiguous: batches are sorted by length, so every rank gets
        windows of every length and none waits on the longest ones. A batch smaller than N
        leaves some ranks empty; they step on one window with weight 0, because DDP needs every
        rank in every gradient all-reduce.
        """
        share = idx[self.rank :: self.world_size]
        if len(share) == 0:
            return idx[:1], 0.0
        return share, len(share) * self.world_size / len(idx)

    def mean(self, total: float, count: int) -> float:
        """Sum ``total`` and ``count`` over the ranks; return their ratio."""
        import torch
        import torch.distributed as dist

        both = torch.tensor([total, float(count)], dtype=torch.float64, device=self.device)
        dist.all_reduce(both)
        return float(both[0] / both[1].clamp(min=1.0))

    def predict_logits(
        self,
        model: SequenceClassifier,
        X: np.ndarray,
        lengths: np.ndarray,
        batch_size: int = 4096,
        device: torch.device | None = None,
        amp: bool = False,
    ) -> np.ndarray:
        """``pipeline.fit.predict_logits`` over a contiguous 1/N of the windows, gathered in order."""
        import torch.distributed as dist

        from pipeline.fit import predict_logits

        lo, hi = len(X) * self.rank // self.world_size, len(X) * (self.rank + 1) // self.world_size
        mine = predict_logits(model, X[lo:hi], lengths[lo:hi], batch_size, device, amp)
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, mine)
        return np.concatenate(parts)

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag``, on every rank."""
        import torch
        import torch.distributed as dist

        value = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def settle(self, net: nn.Module) -> bool:
        """Check that every rank ended with the same weights (and record this rank's digest).

        Returns True on the rank that goes on to MLflow and the registry.
        """
        import torch.distributed as dist

        digest = weights_digest(net)
        if self.report_dir is not None:
            record = {"rank": self.rank, "world_size": self.world_size, "weights_sha256": digest}
            (self.report_dir / f"rank-{self.rank}.json").write_text(json.dumps(record))
        digests: list[Any] = [None] * self.world_size
        dist.all_gather_object(digests, digest)
        if len(set(digests)) != 1:
            raise RuntimeError(f"ranks ended with different weights: {digests}")
        return self.is_main

    def mlflow_params(self) -> dict[str, Any]:
        return {"ddp_world_size": self.world_size, "ddp_backend": self.backend}


def weights_digest(net: nn.Module) -> str:
    """SHA-256 of a model's state dict (names and raw bytes, in name order)."""
    h = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ---- launching (the process that runs `fraudseq train --nproc N`) ----


def torchrun_command(nproc: int, worker_args: list[str]) -> list[str]:
    """torchrun on this node: a private rendezvous on a free port, no restarts."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "--max-restarts=0",
        "-m",
        "pipeline.ddp",
        *worker_args,
    ]


def worker_env(settings: Settings, nproc: int) -> dict[str, str]:
    """The environment for the ranks: every setting as ``FRAUDSEQ_*``, this code on the path,
    and the cores shared out between the ranks (torchrun would give each rank one thread)."""
    import pipeline

    env = dict(os.environ)
    for key, value in settings.model_dump(mode="json").items():
        if value is not None:
            env[f"FRAUDSEQ_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(var, None)  # FRAUDSEQ_MLFLOW_TRACKING_URI carries the resolved one, for both
    env["FRAUDSEQ_HOME"] = str(settings.home_dir)
    env["FRAUDSEQ_MLFLOW_TRACKING_URI"] = settings.tracking_uri
    root = str(Path(pipeline.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return env


def train_distributed(
    settings: Settings,
    train_start: date,
    train_end: date,
    model_name: str | None = None,
    seed: int = 0,
    options: TrainOptions | None = None,
    nproc: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """``train_model`` on ``nproc`` ranks under torchrun; returns rank 0's result plus a
    ``ddp`` entry (world size and each rank's weight digest)."""
    from pipeline.train import TrainOptions

    if nproc < 1:
        raise UsageError(f"--nproc {nproc}: must be at least 1")
    opts = options or TrainOptions()
    with tempfile.TemporaryDirectory(prefix="fraudseq-ddp-") as tmp:
        out = Path(tmp)
        args = [
            f"--train-start={train_start.isoformat()}",
            f"--train-end={train_end.isoformat()}",
            f"--seed={seed}",
            f"--options={json.dumps(asdict(opts))}",
            f"--report-dir={out}",
            *([f"--model={model_name}"] if model_name else []),
            *([] if progress else ["--no-progress"]),
        ]
        # the ranks' stdout goes to our stderr: with --json, stdout carries only the result
        done = subprocess.run(torchrun_command(nproc, args), env=worker_env(settings, nproc), stdout=2)
        errors = sorted(out.glob("error-*.json"))
        if errors:
            err = json.loads(errors[0].read_text())
            raise DistributedTrainingError(err["message"], err["exit_code"])
        if done.returncode != 0 or not (out / RESULT_FILE).exists():
            raise DistributedTrainingError(
                f"distributed training failed: torchrun exited {done.returncode} (see the log above)"
            )
        result: dict[str, Any] = json.loads((out / RESULT_FILE).read_text())
        ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in range(nproc)]
    result["ddp"] = {
        "world_size": nproc,
        "backend": result.pop("backend"),
        "weights_sha256": [r["weights_sha256"] for r in ranks],
    }
    return result


# ---- one rank (started by torchrun) ----


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pipeline.ddp", description="One rank of fraudseq training.")
    parser.add_argument("--train-start", type=date.fromisoformat, required=True)
    parser.add_argument("--train-end", type=date.fromisoformat, required=True)
    parser.add_argument("--model", default=None, help="Registered model name.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--options", default="{}", help="TrainOptions as JSON (batch_size is global).")
    parser.add_argument("--report-dir", type=Path, default=None, help="Where ranks write their records.")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def _setup_logging(rank: int) -> None:
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("alembic", "mlflow", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _report_error(report_dir: Path | None, rank: int, exc: FraudseqError) -> int:
    """Leave a user error where the launcher finds it (it becomes the CLI's one line); its exit code."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if report_dir is not None:
        (report_dir / f"error-{rank}.json").write_text(
            json.dumps({"message": message, "exit_code": exc.exit_code})
        )
    print(f"fraudseq: error: [rank {rank}] {message}", file=sys.stderr)
    return exc.exit_code


def run_rank(argv: list[str] | None = None) -> int:
    """Join the torchrun job, train, and (rank 0) log, register and gate."""
    import torch
    import torch.distributed as dist

    from pipeline.train import TrainOptions, train_model

    args = _parse_args(argv)
    if "RANK" not in os.environ:
        print("pipeline.ddp: error: start it with torchrun (or fraudseq train --nproc N)", file=sys.stderr)
        return 2
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    _setup_logging(rank)
    if torch.cuda.is_available() and local_rank >= torch.cuda.device_count():
        gpus = torch.cuda.device_count()
        return _report_error(args.report_dir, rank, UsageError(f"--nproc: more ranks than the {gpus} GPU(s)"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    replicas = Replicas(rank, world, device, args.report_dir)
    backend = replicas.backend
    try:
        result = train_model(
            Settings(),
            args.train_start,
            args.train_end,
            args.model,
            args.seed,
            TrainOptions(**json.loads(args.options)),
            progress=rank == 0 and not args.no_progress,
            replicas=replicas,
        )
    except FraudseqError as exc:
        return _report_error(args.report_dir, rank, exc)
    finally:
        dist.destroy_process_group()
    if replicas.is_main:
        log.info(
            "rank 0 registered %s version %s: %s", result["model_name"], result["version"], result["reason"]
        )
        if args.report_dir is not None:
            tmp = args.report_dir / f"{RESULT_FILE}.tmp"
            tmp.write_text(json.dumps({**result, "backend": backend}, default=str))
            tmp.replace(args.report_dir / RESULT_FILE)
    return 0


def main() -> None:
    from torch.distributed.elastic.multiprocessing.errors import record

    sys.exit(record(run_rank)())


if __name__ == "__main__":
    main()
