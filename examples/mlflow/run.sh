#!/usr/bin/env bash
# examples/mlflow/run.sh: cohort A/B-testing two real MLflow model servers, end to end.
#
#   cargo build --release && examples/mlflow/run.sh [COHORT_BIN] [-- driver options]
#
# COHORT_BIN (argument or environment variable) defaults to ./target/release/cohort in the
# repo root. Makes a virtualenv in examples/mlflow/.venv (reused on later runs) with pinned
# mlflow and scikit-learn from PyPI, then runs driver.py, which writes everything it makes to
# examples/mlflow/.run/ (models, server logs, cohort.yaml, the event log). Only 127.0.0.1
# is used; every process started is stopped on exit. Driver options: --users N (default
# 4000), --concurrency N, --seed N, --salt S, --ready-timeout SECONDS.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [[ $# -gt 0 && "$1" != "--" && "$1" != -* ]]; then
  COHORT_BIN="$1"; shift
fi
[[ "${1:-}" == "--" ]] && shift
COHORT_BIN="${COHORT_BIN:-$root/target/release/cohort}"
if [[ ! -x "$COHORT_BIN" ]]; then
  echo "error: no cohort binary at $COHORT_BIN" >&2
  echo "build it first:  (cd $root && cargo build --release)" >&2
  echo "or pass its path:  $0 /path/to/cohort   (or COHORT_BIN=/path/to/cohort)" >&2
  exit 2
fi
COHORT_BIN="$(cd "$(dirname "$COHORT_BIN")" && pwd)/$(basename "$COHORT_BIN")"

MLFLOW_VERSION=3.17.2        # 3.18.0 needs an mlflow-skinny the package index here did not serve
SKLEARN_VERSION=1.9.1
PYTHON="${PYTHON:-python3}"
venv="$here/.venv"
stamp="$venv/.cohort-example-$MLFLOW_VERSION-$SKLEARN_VERSION"

if [[ ! -f "$stamp" ]]; then
  echo "creating $venv (mlflow==$MLFLOW_VERSION, scikit-learn==$SKLEARN_VERSION; about a minute)"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "mlflow==$MLFLOW_VERSION" "scikit-learn==$SKLEARN_VERSION"
  touch "$stamp"
fi

# `mlflow models serve --env-manager local` starts uvicorn from PATH: the venv's bin first.
export PATH="$venv/bin:$PATH"
# The models are saved to and served from local paths, so no tracking store is used; should
# anything open one anyway, its default sqlite mlflow.db lands in .run/ (the driver's cwd).
unset PYTHONPATH || true

driver_pid=""
cleanup() {
  # the driver stops what it started (its finally block); make sure it gets the chance
  if [[ -n "$driver_pid" ]] && kill -0 "$driver_pid" 2>/dev/null; then
    kill -TERM "$driver_pid" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$driver_pid" 2>/dev/null || break; sleep 0.3; done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$venv/bin/python" -u "$here/driver.py" --cohort-bin "$COHORT_BIN" --workdir "$here/.run" "$@" &
driver_pid=$!
set +e
wait "$driver_pid"
rc=$?
set -e
driver_pid=""
exit "$rc"
