#!/usr/bin/env python3
"""cohort in front of two real MLflow model servers: an end-to-end A/B test.

Run through run.sh, which makes the virtualenv. Steps:

  1. train three iris classifiers with scikit-learn (RandomForest = control "rf",
     LogisticRegression = challenger "lr", a more regularized LogisticRegression = the
     candidate "lr-v2") and save each with mlflow.sklearn.save_model
  2. serve each with `mlflow models serve --env-manager local` on a free loopback port
  3. start `cohort serve` in front of them: route /invocations, experiment iris-model,
     rf and lr 50/50, sticky per x-user-id; lr-v2 a shadow that gets a copy of every call
     and is never shown to a user
  4. simulate users: each is shown one flower (from the held-out test set) and sends 1-3
     scoring requests in MLflow's /invocations format through cohort
  5. the "business" reports conversions to cohort's admin API (rule below)
  6. print cohort's live per-variant counts and live report
  7. drift: the inputs of new users move (petal length and width grow), cohort's model
     monitoring (every call captured; each variant's first rows are its reference) sees
     the PSI of those columns cross 0.2 and POSTs its retrain webhook, which a receiver
     started here takes and checks (HMAC signature)
  8. stop cohort (SIGTERM flushes the event log), print `cohort report` on the log (with its
     monitoring section), and stop everything it started

Conversion rule (a simulation, deterministic from the user id): a user converts when the
model that served them predicted their flower's species correctly AND a coin drawn from
the user id comes up, with probability 10% on rf's users and 15% on lr's. The model's
answer therefore matters (a wrong prediction never converts), and lr carries a built-in
+50% business effect that the experiment should find given enough users.

Everything listens on 127.0.0.1; every wait is bounded; every process started here runs in
its own process group and is stopped on exit (normal, error, Ctrl-C or SIGTERM).
"""

import argparse
import concurrent.futures
import hashlib
import hmac
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
EXPERIMENT = "iris-model"
COIN = {"rf": 0.10, "lr": 0.15}  # P(convert | correct prediction), per variant served

PROCS = []  # (name, Popen) of every process this driver started
DRIFT_SECRET = "example-drift-secret"  # signs cohort's drift webhook (COHORT_DRIFT_SECRET)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- processes


SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def start(name, argv, logfile, env=None, cwd=None):
    out = open(logfile, "wb")
    p = subprocess.Popen(
        argv,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,  # own process group: uvicorn goes with its mlflow parent
    )
    PROCS.append((name, p))
    return p


def stop(name, p, sig=signal.SIGTERM, timeout=30.0):
    """Signal the process group, wait at most `timeout` s, then SIGKILL the group."""
    if p.poll() is not None:
        return p.returncode
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        return p.poll()
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"{name} did not stop within {timeout:.0f}s: SIGKILL")
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return p.wait(timeout=10)


def stop_all():
    # a second Ctrl-C or SIGTERM must not cut the cleanup short
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    while PROCS:
        name, p = PROCS.pop()
        if p.poll() is None:
            stop(name, p, timeout=15.0)
        # uvicorn (a child of `mlflow models serve`, in its group) may outlive its parent
        # for a moment: give the group 5 s to go, then SIGKILL what is left of it
        deadline = time.monotonic() + 5
        try:
            while time.monotonic() < deadline:
                os.killpg(p.pid, 0)
                time.sleep(0.1)
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, what, proc, logfile, timeout):
    """Poll url until it answers 200, for at most `timeout` s; fail early if proc died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = open(logfile, errors="replace").read()[-3000:]
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.25)
    tail = open(logfile, errors="replace").read()[-3000:]
    raise RuntimeError(f"{what} not ready at {url} after {timeout:.0f}s:\n{tail}")


# ---------------------------------------------------------------- models


def train_and_save(models_dir, seed):
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris  # ships with scikit-learn: no download
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    iris = load_iris(as_frame=True)
    X, y = iris.data, iris.target
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, stratify=y, random_state=seed)
    models = {
        # deliberately small models so that they differ a little on the held-out flowers
        "rf": RandomForestClassifier(n_estimators=20, max_depth=2, random_state=seed),
        "lr": LogisticRegression(max_iter=500),
        # the candidate, qualified in shadow: cohort compares its answers with the served ones
        "lr-v2": LogisticRegression(C=0.05, max_iter=500),
    }
    paths = {}
    for name, model in models.items():
        model.fit(X_tr, y_tr)
        acc = model.score(X_te, y_te)
        path = os.path.join(models_dir, name)
        kwargs = {}
        if name == "rf":
            # mlflow 3.x saves sklearn models with skops by default; loading a tree
            # ensemble needs its Tree type trusted, and that list is given at save time
            kwargs["skops_trusted_types"] = ["sklearn.tree._tree.Tree"]
        mlflow.sklearn.save_model(
            model,
            path,
            signature=infer_signature(X_tr, model.predict(X_tr)),
            **kwargs,
        )
        log(f"trained {name}: {type(model).__name__}, held-out accuracy {acc:.3f} "
            f"({round(acc * len(y_te))}/{len(y_te)}); saved to {path}")
        paths[name] = path
    flowers = [(list(map(float, row)), int(label)) for row, label in zip(X_te.values, y_te.values)]
    return paths, flowers


# ---------------------------------------------------------------- cohort


def cohort_config(public, admin, upstreams, events_dir, state_file, salt, hook_url):
    return f"""# written by examples/mlflow/driver.py
listen: 127.0.0.1:{public}
admin:
  listen: 127.0.0.1:{admin}
  state_file: {state_file}
shutdown:
  grace_ms: 200            # nothing to drain here; keep the example quick
  drain_timeout_ms: 5000
events:
  dir: {events_dir}
routes:
  - name: iris
    match: {{ path_prefix: /invocations }}
    experiment: {EXPERIMENT}
experiments:
  - name: {EXPERIMENT}
    unit: user
    unit_from: {{ header: x-user-id }}
    on_missing_unit: reject
    salt: {salt}
    control: rf
    variants:
      - {{ name: rf, weight: 50, upstream: "{upstreams['rf']}" }}
      - {{ name: lr, weight: 50, upstream: "{upstreams['lr']}" }}
    shadow:
      - name: lr-v2            # the candidate: a copy of each call, its answer compared, never shown
        upstream: "{upstreams['lr-v2']}"
        sample: 1.0            # every unit, for the example; 0.1 is the default
        log_payloads: true     # disagreements keep both answers in the log (iris is not personal)
    monitor:
      sample: 1.0              # every call read, for the example; 0.05 is the default
      max_per_s: 2000
      window_s: 60             # the shortest window: figures every 10 s
      reference_rows: 1000     # each variant's first 1000 rows are its reference
      min_rows: 300
      ks_rows: 256
      on_drift:
        psi_above: 0.2
        webhook: {{ url: "{hook_url}", secret_env: COHORT_DRIFT_SECRET }}
"""


class DriftReceiver(http.server.BaseHTTPRequestHandler):
    """The retraining job's side: takes cohort's drift webhook, checks its signature."""

    received = []  # (headers, body, signature ok)
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        want = "sha256=" + hmac.new(DRIFT_SECRET.encode(), body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(want, self.headers.get("x-cohort-signature", ""))
        with DriftReceiver.lock:
            DriftReceiver.received.append((dict(self.headers), json.loads(body), ok))
        self.send_response(200 if ok else 401)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_args):
        pass


def start_receiver():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DriftReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def drift_phase(public, flowers, timeout=150.0):
    """Scores new users whose petals are larger than any seen in training, until cohort's
    drift webhook has arrived for both variants (bounded by `timeout`); returns the notices
    received."""
    log("drift: new users' flowers have petal length +2.5 cm and petal width +1 cm")
    client = Client(public)
    deadline = time.monotonic() + timeout
    sent = 0
    try:
        while time.monotonic() < deadline:
            for _ in range(50):
                user = f"drift-user-{sent}"
                features, _ = flowers[sent % len(flowers)]
                moved = [features[0], features[1], features[2] + 2.5, features[3] + 1.0]
                body = json.dumps({"dataframe_split": {"columns": FEATURES, "data": [moved]}})
                status, _, _ = client.post(
                    "/invocations", body, {"Content-Type": "application/json", "x-user-id": user})
                if status != 200:
                    raise RuntimeError(f"drifted request -> {status}")
                sent += 1
            with DriftReceiver.lock:
                got = list(DriftReceiver.received)
            if {body["variant"] for _, body, _ in got} >= {"rf", "lr"}:
                log(f"{sent} drifted requests sent; {len(got)} drift webhook(s) received")
                return got
            time.sleep(0.05)
    finally:
        if client.conn is not None:
            client.conn.close()
    raise RuntimeError(f"no drift webhook within {timeout:.0f}s ({sent} drifted requests)")


def uniform(user, tag):
    """A deterministic draw in [0, 1) from the user id."""
    h = hashlib.sha256(f"{tag}:{user}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


# ---------------------------------------------------------------- traffic


class Client:
    """One keep-alive HTTP/1.1 connection per thread."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def post(self, path, body, headers):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request("POST", path, body=body, headers=headers)
                r = self.conn.getresponse()
                return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
            except (http.client.HTTPException, ConnectionError, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise


def simulate_user(client, admin_client, i, flowers):
    user = f"user-{i}"
    features, label = flowers[int(uniform(user, "flower") * len(flowers))]
    n_requests = 1 + int(uniform(user, "requests") * 3)  # 1..3 scoring requests
    body = json.dumps({"dataframe_split": {"columns": FEATURES, "data": [features]}})
    variants, preds, errors = set(), [], 0
    for k in range(n_requests):
        status, headers, payload = client.post(
            "/invocations", body, {"Content-Type": "application/json", "x-user-id": user})
        if i == 1 and k == 0:  # show one exchange through cohort in full
            log(f"POST /invocations x-user-id: {user} {body} -> {status}, "
                f"x-cohort-variant: {headers.get('x-cohort-variant')}, "
                f"body {payload.decode().strip()}")
        if status != 200:
            errors += 1
            continue
        variants.add(headers.get("x-cohort-variant"))
        preds.append(int(json.loads(payload)["predictions"][0]))
    variant = next(iter(variants)) if len(variants) == 1 else None
    correct = bool(preds) and preds[0] == label
    converts = variant is not None and correct and uniform(user, "coin") < COIN[variant]
    if converts:
        # the business reports the conversion as it happens, to cohort's admin listener
        # (JSON Lines; here one line per call, a batch of many lines works the same way)
        line = json.dumps({"experiment": EXPERIMENT, "unit": user, "value": 1}) + "\n"
        status, _, payload = admin_client.post(
            "/v1/conversions", line, {"Content-Type": "application/x-ndjson"})
        if status != 202:
            raise RuntimeError(f"POST /v1/conversions -> {status} {payload!r}")
    return {"user": user, "variant": variant, "variants": variants, "requests": n_requests,
            "errors": errors, "correct": correct, "converts": converts}


def run_users(public_port, admin_port, n_users, flowers, concurrency):
    results = []
    clients = {}

    def task(i):
        import threading
        c, a = clients.setdefault(threading.get_ident(),
                                  (Client(public_port), Client(admin_port)))
        return simulate_user(c, a, i, flowers)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency)
    try:
        for r in pool.map(task, range(1, n_users + 1)):
            results.append(r)
    finally:
        # on a signal or an error: drop the users not yet started, do not wait for them
        pool.shutdown(wait=False, cancel_futures=True)
    for pair in clients.values():
        for c in pair:
            if c.conn is not None:
                c.conn.close()
    return results


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cohort-bin", required=True)
    ap.add_argument("--workdir", required=True, help="models, logs, config and event log go here")
    ap.add_argument("--users", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--salt", default="iris-mlflow-example")
    ap.add_argument("--ready-timeout", type=float, default=180.0,
                    help="seconds to wait for each server to answer")
    args = ap.parse_args()

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    t0 = time.monotonic()
    work = os.path.abspath(args.workdir)
    if os.path.exists(work):
        shutil.rmtree(work)
    models_dir, logs_dir = os.path.join(work, "models"), os.path.join(work, "logs")
    events_dir = os.path.join(work, "events")
    for d in (models_dir, logs_dir, events_dir):
        os.makedirs(d)

    os.chdir(work)  # anything MLflow writes by default (e.g. mlflow.db) stays in here
    log(f"working directory {work}")
    paths, flowers = train_and_save(models_dir, args.seed)

    # `mlflow models serve` runs uvicorn from PATH: run.sh puts the venv's bin first.
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    ports = {name: free_port() for name in paths}
    servers = {}
    for name, path in paths.items():
        logfile = os.path.join(logs_dir, f"mlflow-{name}.log")
        argv = [os.path.join(os.path.dirname(sys.executable), "mlflow"), "models", "serve",
                "-m", path, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(ports[name]),
                "-w", "1"]
        log(f"starting mlflow models serve for {name} on 127.0.0.1:{ports[name]}")
        servers[name] = (start(f"mlflow-{name}", argv, logfile, env=env, cwd=work), logfile)
    for name, (p, logfile) in servers.items():
        wait_http(f"http://127.0.0.1:{ports[name]}/ping", f"mlflow models serve ({name})",
                  p, logfile, args.ready_timeout)
        log(f"{name} ready: GET /ping 200")
    # a direct request to each server, to show what MLflow answers without cohort
    sample = json.dumps({"dataframe_split": {"columns": FEATURES, "data": [flowers[0][0]]}})
    for name in paths:
        req = urllib.request.Request(f"http://127.0.0.1:{ports[name]}/invocations",
                                     data=sample.encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            log(f"direct POST /invocations to {name}: {r.status} {r.read().decode().strip()}")

    public, admin = free_port(), free_port()
    receiver = start_receiver()
    hook_url = f"http://127.0.0.1:{receiver.server_address[1]}/retrain"
    config_path = os.path.join(work, "cohort.yaml")
    with open(config_path, "w") as f:
        f.write(cohort_config(public, admin,
                              {n: f"http://127.0.0.1:{p}" for n, p in ports.items()},
                              events_dir, os.path.join(work, "state.json"), args.salt,
                              hook_url))
    check = subprocess.run([args.cohort_bin, "check", config_path], capture_output=True,
                           text=True, timeout=60)
    print(check.stdout + check.stderr, end="", flush=True)
    if check.returncode != 0:
        raise RuntimeError(f"cohort check failed with exit {check.returncode}")

    cohort_log = os.path.join(logs_dir, "cohort.log")
    cohort_env = dict(os.environ, COHORT_DRIFT_SECRET=DRIFT_SECRET)
    cohort = start("cohort", [args.cohort_bin, "serve", "--config", config_path], cohort_log,
                   env=cohort_env, cwd=work)
    wait_http(f"http://127.0.0.1:{admin}/readyz", "cohort serve", cohort, cohort_log, 60)
    log(f"cohort ready: public 127.0.0.1:{public}, admin 127.0.0.1:{admin}")

    log(f"simulating {args.users} users ({args.concurrency} concurrent clients)")
    t_traffic = time.monotonic()
    results = run_users(public, admin, args.users, flowers, args.concurrency)
    dt = time.monotonic() - t_traffic
    n_req = sum(r["requests"] for r in results)
    n_err = sum(r["errors"] for r in results)
    switched = sum(1 for r in results if len(r["variants"]) > 1)
    log(f"{n_req} scoring requests in {dt:.1f}s ({n_req / dt:.0f}/s), {n_err} errors, "
        f"{switched} users saw more than one variant")
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
        shadow = [l for l in r.read().decode().splitlines()
                  if l.startswith("cohort_shadow_requests_total{") and not l.endswith(" 0")]
    print("\nthe shadow lr-v2 on /metrics (cohort_shadow_requests_total, non-zero):")
    for l in sorted(shadow):
        print(f"  {l}")

    print("\nclient side (what the simulated users saw):")
    print(f"  {'variant':8} {'users':>6} {'requests':>9} {'correct':>8} {'converted':>10} {'rate':>7}")
    for v in ("rf", "lr"):
        rs = [r for r in results if r["variant"] == v]
        conv = sum(r["converts"] for r in rs)
        print(f"  {v:8} {len(rs):>6} {sum(r['requests'] for r in rs):>9} "
              f"{sum(r['correct'] for r in rs):>8} {conv:>10} {conv / max(len(rs), 1):>7.2%}")
    print(flush=True)

    converted = [r["user"] for r in results if r["converts"]]
    log(f"{len(converted)} conversions reported to POST /v1/conversions (each answered 202)")

    # the writer thread updates the live counts from what it has written: wait for it
    # (bounded) until the conversions show up
    deadline = time.monotonic() + 20
    while True:
        counts = get_json(f"http://127.0.0.1:{admin}/v1/experiments/{EXPERIMENT}/counts")
        total_conv = sum(int(v) for v in _find_numbers(counts, "converted_units"))
        if total_conv >= len(converted) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    with open(os.path.join(work, "live-counts.json"), "w") as f:
        json.dump(counts, f, indent=2)
    print(f"\ncohort live counts (GET /v1/experiments/{EXPERIMENT}/counts; "
          f"in full in live-counts.json):")
    print(f"  {'variant':8} {'requests':>9} {'errors':>7} {'units':>6} {'converted_units':>16} "
          f"{'value_sum':>10}")
    for v, c in sorted(counts["counts"]["variants"].items(), key=lambda kv: kv[0] != "rf"):
        print(f"  {v:8} {c['requests']:>9} {c['errors']:>7} {c['units']:>6} "
              f"{c['converted_units']:>16} {c['value_sum']:>10g}")

    report = get_json(f"http://127.0.0.1:{admin}/v1/experiments/{EXPERIMENT}/report")
    with open(os.path.join(work, "live-report.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"\ncohort live report (GET /v1/experiments/{EXPERIMENT}/report; in full in "
          f"live-report.json), decision:\n  {json.dumps(report.get('decision', report))}",
          flush=True)

    notices = drift_phase(public, flowers)
    print("\ncohort's drift webhook, as the retraining job received it:")
    for headers, body, ok in notices:
        print(f"  {body['variant']}/{body['column']}: PSI {body['psi']:.2f} over "
              f"{body['window']['start']} .. {body['window']['end']} ({body['rows']} rows), "
              f"key {headers.get('x-cohort-idempotency-key') or headers.get('X-Cohort-Idempotency-Key')}, "
              f"signature {'verified' if ok else 'WRONG'}")
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
        drift = [l for l in r.read().decode().splitlines() if l.startswith("cohort_drift_psi{")]
    print("\ncohort_drift_psi on /metrics:")
    for l in sorted(drift):
        print(f"  {l}")
    print(flush=True)
    receiver.shutdown()

    log("stopping cohort (SIGTERM: it flushes and fsyncs the event log)")
    rc = stop("cohort", cohort, timeout=30)
    log(f"cohort exited with {rc}")

    print(f"\n$ cohort report --events {events_dir} --config {config_path}", flush=True)
    rep = subprocess.run([args.cohort_bin, "report", "--events", events_dir, "--config",
                          config_path], capture_output=True, text=True, timeout=120)
    print(rep.stdout + rep.stderr, end="", flush=True)
    if rep.returncode != 0:
        raise RuntimeError(f"cohort report failed with exit {rep.returncode}")

    log(f"done in {time.monotonic() - t0:.0f}s; models, logs, config and events are in {work}")


def _find_numbers(obj, key):
    """Every value of `key` anywhere in a JSON document."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key and isinstance(v, (int, float)):
                yield v
            else:
                yield from _find_numbers(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from _find_numbers(v, key)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted: stopping everything started here")
        sys.exit(130)
    except SystemExit as e:
        if e.code not in (0, None):
            log(f"stopped by a signal (exit {e.code}): stopping everything started here")
        raise
    except Exception as e:  # noqa: BLE001 - report and clean up
        log(f"error: {e}")
        sys.exit(1)
    finally:
        stop_all()
