"""The model card of a registered version: tags, description and a markdown artifact."""

from __future__ import annotations

from datetime import date, timedelta

from features.events import FEATURE_NAMES
from pipeline.train import champion_gate, model_card

from .conftest import ZONE_START

PARAMS = {
    "train_start": "2026-01-05",
    "train_end": "2026-02-01",
    "val_start": "2026-01-19",
    "val_end": "2026-01-25",
    "n_train": 900,
    "n_val": 100,
    "n_train_fraud": 9,
    "n_val_fraud": 1,
}


def test_card_names_the_gate_comparison_and_the_normaliser() -> None:
    _, gate = champion_gate(0.61, 0.58)
    norm = {"feature_names": ["log_amount", "new_device"], "mean": [3.2, 0.0], "std": [1.1, 1.0]}
    days = [date(2026, 1, 5) + timedelta(days=k) for k in range(28)]
    card = model_card("m", PARAMS, {"val_average_precision": 0.61}, gate, "3", days, "run123", norm)
    assert "Trained on 2026-01-05..2026-02-01; validated on 2026-01-19..2026-01-25." in card
    assert "Training windows: 900 (9 fraud); validation: 100 (1 fraud)." in card
    assert "Fraud rate: 1.0000% of 1000" in card
    assert "- val_average_precision: 0.6100" in card
    assert "validation AP 0.6100 >= champion 0.5800 + 0.005 (previous champion: 3)" in card
    assert "| log_amount | 3.2 | 1.1 |" in card and "| new_device |" not in card  # flags pass through
    assert "- MLflow run: run123" in card and "2026-01-05..2026-02-01 (28 validated days)" in card
    assert ", ".join(FEATURE_NAMES) in card


def test_registered_version_carries_the_card(trained_home) -> None:
    from mlflow import MlflowClient
    from pipeline.config import Settings
    from pipeline.registry import use_tracking

    settings = Settings(home=trained_home)
    use_tracking(settings.tracking_uri)
    client = MlflowClient()
    mv = client.get_model_version(settings.model_name, "1")
    end = ZONE_START + timedelta(days=20)
    tags = mv.tags
    assert tags["train_window"] == f"{ZONE_START}..{end}"
    assert 0 < float(tags["fraud_rate"]) < 0.2
    assert tags["features"].split(",") == list(FEATURE_NAMES)
    assert tags["gate"] == "no champion yet"
    assert tags["partitions"].startswith(f"{ZONE_START}..{end}")
    assert tags["normaliser"].startswith("standardise")
    assert tags["run_id"] == mv.run_id
    for section in ("## Validation metrics", "## Gate", "## Features", "## Normaliser", "## Lineage"):
        assert section in mv.description
    assert "val_average_precision" in mv.description and f"MLflow run: {mv.run_id}" in mv.description
    artifact = client.download_artifacts(mv.run_id, "model_card.md")
    with open(artifact) as f:
        assert f.read() == mv.description
