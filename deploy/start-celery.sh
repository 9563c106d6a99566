#!/usr/bin/env bash
# Run fraudseq's Airflow 3 on the CeleryExecutor on this machine: api-server, scheduler,
# dag-processor and N Celery workers (concurrency 1 each), against PostgreSQL and Redis.
#
#   deploy/start-celery.sh start     # migrate the metadata DB, start everything, wait until ready
#   deploy/start-celery.sh stop      # stop what `start` started (by the pids it wrote)
#   deploy/start-celery.sh status
#
# Settings come from deploy/celery.env (sourced here). Extra knobs:
#   FRAUDSEQ_CELERY_WORKERS (2)   workers to start on this machine
#   FRAUDSEQ_WORKER_PREFIX (worker)  worker names: PREFIX1, PREFIX2, ... (Celery node and TI hostname)
#   FRAUDSEQ_DEPLOY_RUN_DIR       pid and log files ($AIRFLOW_HOME/run)
#   AIRFLOW_BIN                   the airflow executable (`airflow` on PATH)
#   FRAUDSEQ_START_TIMEOUT (180)  seconds to wait for the api-server and the workers
# On a cluster, run the same script per machine with only the components it should host:
#   FRAUDSEQ_COMPONENTS="worker" deploy/start-celery.sh start
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/celery.env
source "$HERE/celery.env"

AIRFLOW="${AIRFLOW_BIN:-airflow}"
CELERY="$(dirname "$(command -v "$AIRFLOW")")/celery"
PY="$(dirname "$(command -v "$AIRFLOW")")/python"
RUN_DIR="${FRAUDSEQ_DEPLOY_RUN_DIR:-$AIRFLOW_HOME/run}"
WORKERS="${FRAUDSEQ_CELERY_WORKERS:-2}"
COMPONENTS="${FRAUDSEQ_COMPONENTS:-api-server scheduler dag-processor worker}"
TIMEOUT="${FRAUDSEQ_START_TIMEOUT:-180}"
PREFIX="${FRAUDSEQ_WORKER_PREFIX:-worker}"

secrets() {
  # One JWT secret and API secret key for all components of a single-host run. On several
  # machines, set AIRFLOW__API_AUTH__JWT_SECRET and AIRFLOW__API__SECRET_KEY yourself.
  mkdir -p "$RUN_DIR"
  for name in jwt_secret secret_key; do
    [[ -s "$RUN_DIR/$name" ]] || (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(48))' >"$RUN_DIR/$name")
  done
  export AIRFLOW__API_AUTH__JWT_SECRET="${AIRFLOW__API_AUTH__JWT_SECRET:-$(cat "$RUN_DIR/jwt_secret")}"
  export AIRFLOW__API__SECRET_KEY="${AIRFLOW__API__SECRET_KEY:-$(cat "$RUN_DIR/secret_key")}"
}

launch() {  # launch NAME CMD...: in its own session, so `stop` can end it with its children
  local name="$1"
  shift
  setsid "$@" >"$RUN_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/$name.pid"
  echo "started $name (pid $!, log $RUN_DIR/$name.log)"
}

wait_for() {  # wait_for WHAT COMMAND...
  local what="$1" deadline=$((SECONDS + TIMEOUT))
  shift
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      echo "timed out after ${TIMEOUT}s waiting for $what (logs in $RUN_DIR)" >&2
      return 1
    fi
    sleep 2
  done
  echo "$what is ready"
}

ping_worker() {  # ping_worker NAME@: the worker answers a Celery broadcast ping
  local out
  out="$("$CELERY" --app airflow.providers.celery.executors.celery_executor.app inspect ping --timeout 3 \
    2>>"$RUN_DIR/ping.log")" || return 1
  grep -Eq -- "->[[:space:]]+$1" <<<"$out"
}

has() { [[ " $COMPONENTS " == *" $1 "* ]]; }

start() {
  secrets
  mkdir -p "$AIRFLOW_HOME"
  if has scheduler; then "$AIRFLOW" db migrate >"$RUN_DIR/migrate.log" 2>&1; fi
  if has api-server; then launch api-server "$AIRFLOW" api-server --port "$AIRFLOW_API_PORT"; fi
  if has scheduler; then launch scheduler "$AIRFLOW" scheduler; fi
  if has dag-processor; then launch dag-processor "$AIRFLOW" dag-processor; fi
  if has worker; then
    for i in $(seq 1 "$WORKERS"); do
      FRAUDSEQ_WORKER_NAME="$PREFIX$i" launch "worker$i" \
        "$AIRFLOW" celery worker --concurrency "$AIRFLOW__CELERY__WORKER_CONCURRENCY" \
        --queues "$FRAUDSEQ_CELERY_QUEUE" --celery-hostname "$PREFIX$i@%h" --skip-serve-logs
    done
  fi
  if has api-server; then
    wait_for api-server "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)' \
      "$AIRFLOW__API__BASE_URL/api/v2/monitor/health"
  fi
  if has worker; then
    for i in $(seq 1 "$WORKERS"); do
      wait_for "worker$i" ping_worker "$PREFIX$i@"
    done
  fi
}

stop() {
  shopt -s nullglob
  local pidfile pid
  for pidfile in "$RUN_DIR"/*.pid; do
    pid="$(cat "$pidfile")"
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for pidfile in "$RUN_DIR"/*.pid; do
    pid="$(cat "$pidfile")"
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$pidfile"
    echo "stopped $(basename "$pidfile" .pid)"
  done
}

status() {
  shopt -s nullglob
  local pidfile
  for pidfile in "$RUN_DIR"/*.pid; do
    if kill -0 "$(cat "$pidfile")" 2>/dev/null; then state=running; else state=dead; fi
    echo "$(basename "$pidfile" .pid): $state"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
