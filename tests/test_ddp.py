"""Data-parallel training: the batch split, DDP against one process, and `train --nproc 2`."""

from __future__ import annotations

import shutil
import socket
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.ddp import Replicas, weights_digest

from .conftest import ZONE_DAYS, ZONE_START, use_home

CPU = torch.device("cpu")


@pytest.mark.parametrize("n", [1, 2, 3, 7, 512, 513])
def test_ranks_share_a_global_batch_exactly_once_and_the_scaled_losses_average_to_its_mean(n: int) -> None:
    world = 3
    idx = np.random.default_rng(n).permutation(1000)[:n]
    losses = np.random.default_rng(0).random(1000)  # per-window loss
    shares = [Replicas(r, world, CPU).local_batch(idx) for r in range(world)]
    real = [s for s, scale in shares if scale > 0]
    assert sorted(np.concatenate(real).tolist()) == sorted(idx.tolist())
    assert max(len(s) for s in real) - min(len(s) for s in real) <= 1
    # DDP averages the ranks' gradients: the mean of the scaled rank losses is the batch's mean loss
    averaged = sum(scale * losses[s].mean() for s, scale in shares) / world
    assert averaged == pytest.approx(losses[idx].mean(), rel=1e-12)


# ---- DDP against one process, at the level of fit_sequence_model (2 spawned gloo ranks) ----


def _windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 7, size=n).astype(np.int64)
    X = rng.normal(size=(n, 6, 3)).astype(np.float32)
    X[np.arange(6)[None, :] < (6 - lengths)[:, None]] = 0.0
    y = (X[:, -1, 0] + X[:, :, 1].sum(axis=1) / lengths > 0.8).astype(np.int64)
    return X, lengths, y


def _fit(replicas: Replicas | None) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    from pipeline.fit import FitConfig, fit_sequence_model
    from pipeline.model import SequenceModelConfig

    cfg = SequenceModelConfig(n_features=3, hidden=8, layers=1, head_hidden=8, dropout=0.0)
    fit_cfg = FitConfig(epochs=3, batch_size=61, lr=1e-2, patience=1)
    result = fit_sequence_model(
        *_windows(301, 1),
        *_windows(101, 2),
        cfg,
        fit_cfg,
        seed=0,
        device=CPU,
        progress=False,
        replicas=replicas,
    )
    return result.model.state_dict(), result.history


def _rank(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        state, history = _fit(Replicas(rank, world, CPU))
    finally:
        dist.destroy_process_group()
    torch.save({"state": state, "history": history}, Path(out) / f"rank-{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow  # two spawned processes importing torch: ~10 s alone, more on a busy machine
def test_two_gloo_ranks_fit_the_same_model_as_one_process(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank-{r}.pt") for r in range(2)]
    single_state, single_history = _fit(None)
    # every rank holds the same weights, and they are the single process's up to float rounding
    for k, v in single_state.items():
        assert torch.equal(ranks[0]["state"][k], ranks[1]["state"][k])
        torch.testing.assert_close(ranks[0]["state"][k], v, rtol=1e-4, atol=1e-5)
    # the same epochs ran and were kept on every rank; the loss is that of the whole global batch
    timeless = [
        [{k: v for k, v in h.items() if k not in ("seconds", "windows_per_s")} for h in r["history"]]
        for r in ranks
    ]
    assert timeless[0] == timeless[1]
    assert len(ranks[0]["history"]) == len(single_history)
    for ddp, one in zip(ranks[0]["history"], single_history, strict=True):
        assert ddp["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
        assert ddp["val_average_precision"] == pytest.approx(one["val_average_precision"], abs=1e-6)


# ---- the whole train stage under torchrun ----


def _settings(home: Path, landing: Path):  # type: ignore[no-untyped-def]
    from pipeline.config import Settings

    return Settings(home=home, landing=landing)


@pytest.mark.slow
def test_train_with_two_processes_matches_one_and_registers_once(
    validated_home: Path, small_zone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow import MlflowClient
    from pipeline.ddp import train_distributed
    from pipeline.registry import champion_version, load_bundle, use_tracking
    from pipeline.train import TrainOptions, train_model

    end = ZONE_START + timedelta(days=ZONE_DAYS - 1)
    # no dropout: its masks are drawn per rank, which would make the runs differ as two seeds do
    opts = TrainOptions(epochs=2, dropout=0.0)
    homes = {name: tmp_path / name for name in ("single", "ddp")}
    for home in homes.values():
        shutil.copytree(validated_home, home)
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, which Settings() reads: clear what an
    # earlier test left, and build both settings before either run sets it again
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    single, settings = (_settings(homes[name], small_zone) for name in ("single", "ddp"))
    one = train_model(single, ZONE_START, end, seed=3, options=opts, progress=False)
    two = train_distributed(settings, ZONE_START, end, seed=3, options=opts, nproc=2, progress=False)

    assert two["ddp"]["world_size"] == 2 and two["ddp"]["backend"] == "gloo"
    digests = two["ddp"]["weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert one["metrics"]["val_auc_roc"] > 0.6  # it learnt something, so comparing APs means something
    assert abs(two["metrics"]["val_average_precision"] - one["metrics"]["val_average_precision"]) <= 0.01

    use_tracking(settings.tracking_uri)
    versions = MlflowClient().search_model_versions(f"name='{settings.model_name}'")
    assert [str(v.version) for v in versions] == ["1"] and two["version"] == "1" and two["promoted"] is True
    assert champion_version(settings.model_name) == "1"
    # the registered weights are the ones every rank ended with
    assert weights_digest(load_bundle(settings.model_name, "1").net) == digests[0]
    runs = mlflow.search_runs(experiment_names=[settings.experiment_name], output_format="list")
    assert len(runs) == 1 and runs[0].info.run_id == two["run_id"]
    assert runs[0].data.params["ddp_world_size"] == "2"
    assert runs[0].data.params["fit_batch_size"] == str(opts.batch_size)  # the global batch


@pytest.mark.slow
def test_cli_nproc_reports_a_rank_error_in_one_line(
    validated_home, small_zone, monkeypatch, tmp_path
) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    home = tmp_path / "home"
    shutil.copytree(validated_home, home)
    use_home(monkeypatch, home, small_zone)
    result = CliRunner().invoke(
        app, ["train", "--train-start", "2026-01-20", "--train-end", "2026-02-10", "--nproc", "2", "--json"]
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert (
        result.stderr.strip().splitlines()[-1].startswith("fraudseq: error: day 2026-02-02 is not validated")
    )
    assert not (home / "mlflow.db").exists()  # no rank got as far as MLflow
