#!/usr/bin/env bash
# A shared MLflow tracking server for fraudseq (use PostgreSQL when tasks run in parallel).
#   MLFLOW_BACKEND_URI   default sqlite:///$FRAUDSEQ_HOME/mlflow.db (postgresql+psycopg://... in production)
#   MLFLOW_ARTIFACTS     default $FRAUDSEQ_HOME/mlartifacts (s3://... in production)
set -euo pipefail
home="${FRAUDSEQ_HOME:-./.fraudseq}"
exec mlflow server \
  --backend-store-uri "${MLFLOW_BACKEND_URI:-sqlite:///$home/mlflow.db}" \
  --artifacts-destination "${MLFLOW_ARTIFACTS:-$home/mlartifacts}" \
  --host "${MLFLOW_HOST:-127.0.0.1}" --port "${MLFLOW_PORT:-5000}"
