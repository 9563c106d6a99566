"""Build the inputs the benchmarks share: a landing zone, a validated home, a trained champion.

Everything is generated with fixed seeds into a folder the caller owns, so a benchmark row can
be repeated. Nothing here is timed.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import date, timedelta
from pathlib import Path

START = date(2026, 1, 5)


def make_landing(root: Path, customers: int, days: int, seed: int = 0) -> Path:
    """A generated landing zone under ``root/landing`` (reused when it is already there)."""
    from pipeline.generate import generate_landing

    landing = root / "landing"
    if not (landing / "_truth" / "transactions.parquet").is_file():
        generate_landing(landing, customers, days, START, seed=seed)
    return landing


def settings_for(  # noqa: ANN201
    home: Path, landing: Path | None = None, scores_url: str | None = None, tracking: str | None = None
):
    from pipeline.config import Settings

    return Settings(home=home, landing=landing, scores_url=scores_url, mlflow_tracking_uri=tracking)


def last_day_inputs(settings):  # noqa: ANN001, ANN201
    """What scoring a zone's last validated day shard by shard needs, loaded once.

    (pinned version, its bundle, the day, its validated history days, whether they all carry
    the customer hash), with the registry at ``settings.tracking_uri``.
    """
    from pipeline.registry import load_bundle, resolve_version, use_tracking
    from pipeline.sequences import check_days
    from pipeline.validate import hashed_days, validated_days

    use_tracking(settings.tracking_uri)
    pinned = resolve_version(None, settings.model_name)
    day = validated_days(settings)[-1]
    days = check_days(settings, [day], settings.history_range(day))
    return pinned, load_bundle(*pinned), day, days, hashed_days(settings, days)


def make_validated(root: Path, customers: int, days: int, seed: int = 0) -> tuple[Path, Path]:
    """(home, landing): every day of a generated zone validated into ``root/home``."""
    from pipeline.validate import validate_day, validated_days

    landing = make_landing(root, customers, days, seed)
    home = root / "home"
    settings = settings_for(home, landing)
    done = set(validated_days(settings, "transactions"))
    for k in range(days):
        if START + timedelta(days=k) not in done:
            validate_day(settings, START + timedelta(days=k))
    return home, landing


def make_trained(root: Path, customers: int, days: int, seed: int = 0, epochs: int = 1) -> tuple[Path, Path]:
    """(home, landing) with a champion of the production architecture trained on the first weeks.

    Throughput does not depend on how good the weights are, so one epoch on a fraud-rich
    sample (``neg_per_pos``) is enough to have a registered production-shaped model.
    """
    from pipeline.train import TrainOptions, train_model

    home, landing = make_validated(root, customers, days, seed)
    marker = home / ".bench-champion"
    if marker.is_file():
        return home, landing
    settings = settings_for(home, landing)
    train_end = START + timedelta(days=max(days - 8, 14))
    train_model(
        settings,
        START,
        train_end,
        seed=seed,
        options=TrainOptions(epochs=epochs, neg_per_pos=20.0),
        progress=False,
    )
    marker.write_text("trained by bench.setup\n")
    return home, landing


def make_daily_landing(
    root: Path, customers: int, days: int, chunk_customers: int, login_rate_x10: int, seed: int = 0
) -> Path:
    """The daily row's big landing zone, generated ``chunk_customers`` at a time (bounded memory).

    ``login_rate_x10 / 10`` plain logins per customer-day make a day hold about two logins per
    transaction, as the daily target asks. Reused when it is already there.
    """
    from pipeline.generate import GenerateConfig, generate_landing

    landing = root / "landing"
    if not (landing / "_truth" / "transactions.parquet").is_file():
        cfg = GenerateConfig(logins_per_day=login_rate_x10 / 10)
        generate_landing(landing, customers, days, START, seed=seed, chunk_customers=chunk_customers, cfg=cfg)
    return landing


def make_daily(
    root: Path, customers: int, days: int, chunk_customers: int, login_rate_x10: int, seed: int = 0
) -> tuple[Path, Path]:
    """(home, landing) of the daily row: the big zone, every day validated by ``validate_day``."""
    make_daily_landing(root, customers, days, chunk_customers, login_rate_x10, seed)
    return make_validated(root, customers, days, seed)


def last_day(days: int) -> date:
    return START + timedelta(days=days - 1)


def machine() -> dict[str, object]:
    """CPU, cores, torch threads and versions, for the report."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def prepare(spec: dict, needs: list[str]) -> None:
    """Build what ``needs`` (landing | validated | trained | daily_landing | daily) asks for, reusing what exists."""
    zone, c, d = Path(spec["zone"]), spec["zone_customers"], spec["zone_days"]
    if "trained" in needs:
        make_trained(zone, c, d)
    elif "validated" in needs:
        make_validated(zone, c, d)
    elif "landing" in needs:
        make_landing(zone, c, d)
    daily = (Path(spec["daily_zone"]), spec["daily_customers"], d)
    chunking = (spec["daily_chunk_customers"], spec["daily_login_rate_x10"])
    if "daily_landing" in needs:
        make_daily_landing(*daily, *chunking)
    if "daily" in needs:  # scored with the main zone's champion: training on the big zone is not timed anyway
        make_trained(zone, c, d)
        make_daily(*daily, *chunking)


if __name__ == "__main__":  # python -m bench.setup SPEC.json MACHINE.json [needs...]
    spec_file, info_file, *wanted = sys.argv[1:]
    prepare(json.loads(Path(spec_file).read_text()), wanted)
    Path(info_file).write_text(json.dumps(machine()))
