"""Pure data code: schemas, event loading, per-event features and windows.

Nothing here imports ``pipeline`` or Airflow.
"""
