#!/usr/bin/env python3
"""Helpers of deploy/check.sh (python3 + PyYAML). Each subcommand prints what it checked and
exits non-zero with a `FAIL:` line on the first problem it finds.

  docker-context                    deploy/Dockerfile's COPY sources are in the build context
  placeholders DIR                  no env file or secretGenerator under DIR holds a placeholder secret
  docs-agree ROOT                   the mlflow image tags match the example's pinned MLflow; every
                                    "N bytes per distinct unit" in the docs and manifests is one N
  validate-warnings LOG             kubernetes-validate's WARN lines: only the Operator's kinds pass
  k8s BUILD OVERLAY_DIR BIN OUTDIR  the deploy invariants of one built overlay (see check.sh); with
                                    events.clickhouse also the shipping ones (password, Service)
  monitoring BUILD OUTDIR RULES     ServiceMonitor/PrometheusRule structure; writes the rule groups
  debug-pod SPEC OUT                kubernetes/collect-events.debug.yaml as an ephemeral container of a Pod
  dashboard-rules DASHBOARD OUT     the dashboard's PromQL as a rule file, for promtool
  test-config ROUTES OUT PUB ADMIN DIR   a loopback copy of a deploy routes.yaml for the metric scrape
  metric-names METRICS RULES... --dashboard DASHBOARD   every metric name used exists on /metrics
"""
import json
import math
import pathlib
import re
import subprocess
import sys

import yaml

OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
# Secrets created in the cluster (deploy/README.md), never rendered: the admin tokens, and the
# ClickHouse password of events.clickhouse.password_env.
TOKENS_SECRET = "cohort-admin-tokens"
CLICKHOUSE_SECRET = "cohort-clickhouse"
OPERATOR_GROUP = "monitoring.coreos.com/"


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def ok(msg):
    print(f"  ok: {msg}")


def load_all(path):
    return [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]


# ---------------------------------------------------------------- Docker build context
def docker_context():
    """What the image build needs is in the context: the image is only built in GitHub Actions,
    so catch here a COPY of an ignored or missing path, a Cargo.toml target outside what is
    copied, or an include_str!/include_bytes! of a file the build stage does not have."""
    import fnmatch
    import glob
    root = pathlib.Path(__file__).resolve().parent.parent
    ignore = [l.strip().rstrip("/") for l in (root / ".dockerignore").read_text().splitlines()
              if l.strip() and not l.startswith("#")]

    def ignored(rel):
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch.fnmatch(pre, pat) or fnmatch.fnmatch(pre, pat.replace("**/", ""))
                   for pat in ignore for pre in prefixes)

    copied = []
    stage = 0
    for line in (root / "deploy" / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            stage += 1
        if line.startswith("COPY ") and "--from=" not in line:
            srcs = [w for w in line.split()[1:-1] if not w.startswith("--")]
            for src in srcs:
                if not (root / src).exists():
                    fail(f"deploy/Dockerfile: COPY {src}: no such path in the repository")
                if ignored(src.rstrip("/")):
                    fail(f"deploy/Dockerfile: COPY {src}: excluded by .dockerignore")
                if stage == 1:
                    copied.append(src.rstrip("/"))
    def inside(rel):
        return any(rel == c or rel.startswith(c + "/") for c in copied)
    for m in re.finditer(r'^\s*path\s*=\s*"([^"]+)"', (root / "Cargo.toml").read_text(), re.M):
        if not inside(m.group(1)):
            fail(f"Cargo.toml target {m.group(1)} is not copied into the build stage of deploy/Dockerfile")
    sources = glob.glob(str(root / "src" / "**" / "*.rs"), recursive=True)
    sources += glob.glob(str(root / "crates" / "*" / "src" / "**" / "*.rs"), recursive=True)
    if not inside("crates"):
        fail("deploy/Dockerfile: the workspace's crates/ is not copied into the build stage")
    for f in sources:
        for m in re.finditer(r'include_(?:str|bytes)!\(\s*"([^"]+)"', pathlib.Path(f).read_text()):
            rel = str((pathlib.Path(f).parent / m.group(1)).resolve().relative_to(root))
            if not inside(rel) or ignored(rel):
                fail(f"{pathlib.Path(f).relative_to(root)} embeds {rel}, which the image build does not copy")
    ok(f"COPY sources {copied} exist, none ignored; Cargo.toml targets and include_str!/include_bytes! files are inside them")


# ---------------------------------------------------------------- placeholder secrets
# A value that is a stand-in for a secret: applied as is, it would be a guessable admin token.
PLACEHOLDER = re.compile(
    r"(?i)replace[-_ ]?me|change[-_ ]?(me|it)|placeholder|fill[-_ ]?in|your[-_ ]?(token|secret|password)"
    r"|^<.*>$|^\$\{.*\}$|^x{3,}$|^\*+$|^(todo|fixme|tbd|secret|password|token|dummy|example|test|default)$"
)


def env_lines(text):
    """KEY=VALUE pairs of an env file (kustomize's `envs` format: comments and blank lines skipped)."""
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            yield n, key.strip(), value.strip().strip("\"'")


def placeholders(top):
    """Secrets are created in the cluster (deploy/README.md), never committed: fail on an env
    file anywhere under TOP, or a secretGenerator source, whose value is empty or a placeholder."""
    top = pathlib.Path(top)
    sources = {}   # path -> how it is used
    for f in sorted(top.rglob("*")):
        if f.is_file() and (f.suffix == ".env" or f.name.startswith(".env")):
            sources[f] = "env file"
    literals = []
    generators = 0
    for k in sorted(top.rglob("*")):
        if k.name not in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
            continue
        doc = yaml.safe_load(k.read_text()) or {}
        for g in doc.get("secretGenerator") or []:
            generators += 1
            where = f"{k.relative_to(top)}: secretGenerator {g.get('name')}"
            for e in (g.get("envs") or []) + ([g["env"]] if g.get("env") else []):
                sources[k.parent / e] = f"{where} (envs)"
            for f in g.get("files") or []:
                sources[k.parent / f.split("=", 1)[-1]] = f"{where} (files)"
            for lit in g.get("literals") or []:
                key, _, value = lit.partition("=")
                literals.append((where, key, value))
    bad = []
    for path, used in sources.items():
        rel = path.relative_to(top) if path.is_relative_to(top) else path
        if not path.is_file():
            bad.append(f"{rel}: named by {used}, but missing")
            continue
        text = path.read_text(errors="replace")
        if "(files)" in used:
            value = text.strip()
            if not value or PLACEHOLDER.search(value):
                bad.append(f"{rel} ({used}): empty or a placeholder")
            continue
        for n, key, value in env_lines(text):
            if not value or PLACEHOLDER.search(value):
                bad.append(f"{rel}:{n} ({used}): {key} is empty or a placeholder ({value!r})")
    for where, key, value in literals:
        if not value or PLACEHOLDER.search(value):
            bad.append(f"{where} (literals): {key} is empty or a placeholder ({value!r})")
    if bad:
        fail("placeholder secrets under " + str(top) + " (create the Secret in the cluster instead, "
             "see deploy/README.md):\n  " + "\n  ".join(bad))
    ok(f"{len(sources)} env/secret source files and {generators} secretGenerators under {top}: no placeholder value")


# ---------------------------------------------------------------- kubernetes-validate output
def docs_agree(root):
    """What the docs and the manifests state twice must be stated alike."""
    root = pathlib.Path(root)
    run_sh = (root / "examples/mlflow/run.sh").read_text()
    m = re.search(r"^MLFLOW_VERSION=(\S+)", run_sh, re.M)
    if not m:
        fail("examples/mlflow/run.sh pins no MLFLOW_VERSION")
    pinned = m.group(1)
    tags = []
    for k in sorted((root / "deploy/kubernetes").rglob("kustomization.yaml")):
        for doc in load_all(k):
            for image in (doc or {}).get("images", []) or []:
                if "mlflow" in image.get("newName", "") or image.get("name") == "mlflow":
                    tags.append((k.relative_to(root), image.get("newTag")))
    if not tags:
        fail("no mlflow image in deploy/kubernetes")
    for path, tag in tags:
        if tag != f"v{pinned}":
            fail(f"{path}: mlflow image tag {tag}, but examples/mlflow pins MLflow {pinned} (its models are serialised for it)")
    ok(f"mlflow image v{pinned} in {len(tags)} kustomizations, as examples/mlflow pins")
    figures = {}
    files = [root / "README.md", root / "deploy/README.md"] + sorted((root / "deploy/kubernetes").rglob("*.yaml"))
    for f in files:
        text = " ".join(f.read_text().split())
        for n in re.findall(r"(\d+) bytes (?:of resident memory )?per distinct unit", text):
            figures.setdefault(n, []).append(str(f.relative_to(root)))
    if len(figures) != 1:
        fail(f"memory per distinct unit stated differently: {figures}")
    (n, where), = figures.items()
    ok(f"{n} bytes per distinct unit in {len(where)} places")


def validate_warnings(log):
    allowed = re.compile(
        r"Couldn't find schema for kind (ServiceMonitor|PrometheusRule) with api version "
        r"monitoring\.coreos\.com/v1 "
    )
    bad = []
    for line in pathlib.Path(log).read_text().splitlines():
        if line.startswith("WARN") and not allowed.search(line):
            bad.append(line)
        elif line.startswith("WARN"):
            ok(f"left to the Operator check: {line.split('kind ')[1].split(' with')[0]}")
    if bad:
        fail("kubernetes-validate has no schema for (misspelled kind or removed API?):\n  "
             + "\n  ".join(bad))


# ---------------------------------------------------------------- deploy invariants
def find(docs, kind, name=None):
    return [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def cpu_cores(q):
    """A CPU quantity ("250m", "1", "1.5") in cores; None if it is not one."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)(m?)\s*", str(q))
    if not m:
        return None
    return float(m.group(1)) / (1000 if m.group(2) else 1)


def selects(selector, labels):
    """A LabelSelector (matchLabels and matchExpressions) against a label map; {} selects all."""
    if not label_match(selector, labels):
        return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if not {"In": k in labels and labels[k] in vals,
                "NotIn": k not in labels or labels[k] not in vals,
                "Exists": k in labels,
                "DoesNotExist": k not in labels}[op]:
            return False
    return True


def admits_port(rule, number, name):
    """Whether a NetworkPolicy ingress rule admits the TCP port `number`, named `name` in the
    container (no `ports`: every port)."""
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != "TCP":
            continue
        port, end = p.get("port"), p.get("endPort")
        if port in (None, number, name) or (isinstance(port, int) and end and port <= number <= end):
            return True
    return False


def open_peer(peer):
    """A `from` peer that admits every address, or pods of every namespace (whatever their pod
    labels: anyone who may create a pod somewhere can give it those)."""
    if "ipBlock" in peer:
        return str(peer["ipBlock"].get("cidr", "")).endswith("/0")
    ns = peer.get("namespaceSelector")
    return ns is not None and not ns.get("matchLabels") and not ns.get("matchExpressions")


def check_network_policy(docs, overlay, w, c):
    """The admin port is admitted only from chosen peers, the public port is admitted at all."""
    where = f"{overlay}: {w['kind']}/{w['metadata']['name']}"
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    if "admin" not in ports or "http" not in ports:
        fail(f"{where}: the cohort container has no ports named http and admin ({ports})")
    pod_labels = w["spec"]["template"]["metadata"].get("labels", {})
    ns = w["metadata"].get("namespace")
    pols = [n for n in find(docs, "NetworkPolicy")
            if n["metadata"].get("namespace") == ns
            and selects(n["spec"].get("podSelector") or {}, pod_labels)
            and "Ingress" in (n["spec"].get("policyTypes") or ["Ingress"])]
    if not pols:
        fail(f"{where}: no NetworkPolicy selects the cohort pods for Ingress: the admin port "
             f"{ports['admin']} is open to every namespace (deploy/kubernetes/base/networkpolicy.yaml)")
    rules = [r for n in pols for r in n["spec"].get("ingress") or []]
    admin_rules = [r for r in rules if admits_port(r, ports["admin"], "admin")]
    if not admin_rules:
        fail(f"{where}: the NetworkPolicy admits nothing to the admin port {ports['admin']}: "
             f"Prometheus could not scrape /metrics")
    sources = []
    for r in admin_rules:
        peers = r.get("from") or []
        if not peers or any(open_peer(p) for p in peers):
            fail(f"{where}: a NetworkPolicy rule admits the admin port {ports['admin']} from "
                 f"everywhere ({r}); admit only the monitoring namespace and chosen clients")
        sources += peers
    if not any(admits_port(r, ports["http"], "http") for r in rules):
        fail(f"{where}: the NetworkPolicy admits nothing to the public port {ports['http']}")
    return f"NetworkPolicy {[n['metadata']['name'] for n in pols]}: admin port {ports['admin']} only from {sources}"


def pod_env(c):
    return {e["name"]: e for e in c.get("env", [])}


def check_clickhouse(docs, overlay, ch, c):
    """events.clickhouse: a URL naming a Service (no dot in the host: one of this namespace)
    must name one of the overlay, on that port, in front of a workload; a ClickHouse container
    behind it that takes its user and password from the image's variables must take the
    user cohort ships as and the same Secret key as cohort."""
    import ipaddress
    import urllib.parse
    u = urllib.parse.urlsplit(ch["url"])
    host, port = u.hostname or "", u.port or {"http": 80, "https": 443}.get(u.scheme)
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    if "." in host or literal or host == "localhost":
        return f"events.clickhouse.url {ch['url']}: outside the overlay, not checked"
    svc = find(docs, "Service", host)
    if not svc:
        fail(f"{overlay}: events.clickhouse.url {ch['url']} names the Service {host}, which the overlay "
             f"does not have")
    ports = [p for p in svc[0]["spec"].get("ports", []) if p.get("port") == port]
    if not ports:
        fail(f"{overlay}: the Service {host} has no port {port} (events.clickhouse.url {ch['url']})")
    sel = svc[0]["spec"].get("selector") or {}
    backends = [(w, k) for w in docs if w.get("kind") in ("Deployment", "StatefulSet")
                and sel and label_match({"matchLabels": sel}, w["spec"]["template"]["metadata"].get("labels", {}))
                for k in w["spec"]["template"]["spec"]["containers"]]
    if not backends:
        fail(f"{overlay}: the Service {host} selects no Deployment or StatefulSet of the overlay")
    user = ch.get("user", "default")
    ours = pod_env(c).get(ch.get("password_env") or "", {})
    ours_ref = (ours.get("valueFrom") or {}).get("secretKeyRef")
    for w, k in backends:
        env = pod_env(k)
        where = f"{overlay}: {w['kind']}/{w['metadata']['name']} container {k['name']}"
        if "CLICKHOUSE_USER" in env and env["CLICKHOUSE_USER"].get("value") != user:
            fail(f"{where}: CLICKHOUSE_USER is {env['CLICKHOUSE_USER'].get('value')!r}, but cohort ships as "
                 f"events.clickhouse.user {user!r}")
        if "CLICKHOUSE_PASSWORD" in env:
            ref = (env["CLICKHOUSE_PASSWORD"].get("valueFrom") or {}).get("secretKeyRef")
            if "value" in env["CLICKHOUSE_PASSWORD"] or not ref:
                fail(f"{where}: CLICKHOUSE_PASSWORD is a committed value; read it from the Secret "
                     f"{CLICKHOUSE_SECRET} (created in the cluster, deploy/README.md)")
            if not ours_ref or (ref.get("name"), ref.get("key")) != (ours_ref.get("name"), ours_ref.get("key")):
                fail(f"{where}: CLICKHOUSE_PASSWORD reads {ref}, but cohort's "
                     f"{ch.get('password_env')} reads {ours_ref}: they must be the same Secret key")
    password = (f"password {ch['password_env']} from the Secret {CLICKHOUSE_SECRET} on both sides"
                if ch.get("password_env") else "no password")
    return (f"events.clickhouse.url {ch['url']} -> Service {host}:{port} -> "
            f"{sorted({w['kind'] + '/' + w['metadata']['name'] for w, _ in backends})}; user {user!r}, {password}")


def k8s(build, overlay, binary, outdir):
    docs = load_all(build)
    outdir = pathlib.Path(outdir)
    for d in docs:
        if d.get("apiVersion", "").startswith(OPERATOR_GROUP) and d.get("kind") not in OPERATOR_KINDS:
            fail(f"{overlay}: unknown kind {d.get('kind')} in {d['apiVersion']}")
    cms = find(docs, "ConfigMap", "cohort-routes")
    if len(cms) != 1:
        names = [d["metadata"]["name"] for d in find(docs, "ConfigMap")]
        fail(f"{overlay}: expected one ConfigMap named exactly cohort-routes (no name-suffix hash: "
             f"a hashed name rolls the pods instead of hot-reloading), found {names}")
    routes_text = cms[0]["data"]["routes.yaml"]
    routes_file = outdir / "routes.yaml"
    routes_file.write_text(routes_text)
    r = subprocess.run([binary, "check", str(routes_file)], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{overlay}: cohort check rejects the ConfigMap's routes.yaml:\n{r.stdout}{r.stderr}")
    ok(f"cohort check: {r.stdout.splitlines()[0]}")
    routes = yaml.safe_load(routes_text)
    admin_listen = (routes.get("admin") or {}).get("listen", "127.0.0.1:9901")
    if admin_listen.startswith("127.") or admin_listen.startswith("[::1]") or admin_listen.startswith("localhost"):
        fail(f"{overlay}: admin.listen {admin_listen} is loopback: kubelet probes and Prometheus cannot reach it")
    sd = routes.get("shutdown") or {}
    ships = bool((routes.get("events") or {}).get("clickhouse"))
    need_s = (sd.get("grace_ms", 5000) + sd.get("drain_timeout_ms", 20000)
              + (sd.get("ship_timeout_ms", 10000) if ships else 0)) / 1000 + 5
    token_envs = [t["env"] for t in (routes.get("admin") or {}).get("tokens") or []]
    ch = (routes.get("events") or {}).get("clickhouse") or None
    password_env = (ch or {}).get("password_env")
    cluster_secrets = [TOKENS_SECRET] + ([CLICKHOUSE_SECRET] if password_env else [])

    workloads = [d for d in docs if d.get("kind") in ("Deployment", "StatefulSet")]
    cohort_pods = []
    for w in workloads:
        spec = w["spec"]["template"]["spec"]
        for c in spec["containers"]:
            if c["name"] == "cohort":
                cohort_pods.append((w, spec, c))
    if not cohort_pods:
        fail(f"{overlay}: no Deployment or StatefulSet has a container named cohort")
    for w, spec, c in cohort_pods:
        where = f"{overlay}: {w['kind']}/{w['metadata']['name']}"
        args = c.get("args", [])
        if "--config" not in args or args[args.index("--config") + 1] != "/etc/cohort/routes.yaml":
            fail(f"{where}: cohort is not started with --config /etc/cohort/routes.yaml (args {args})")
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        cm_mounts = [m for m in c.get("volumeMounts", [])
                     if vols.get(m["name"], {}).get("configMap", {}).get("name") == "cohort-routes"]
        if not cm_mounts:
            fail(f"{where}: the ConfigMap cohort-routes is not mounted in the cohort container")
        for m in cm_mounts:
            if "subPath" in m or "subPathExpr" in m:
                fail(f"{where}: the ConfigMap is mounted with subPath: kubelet never updates it (no hot reload)")
            if m["mountPath"].rstrip("/") != "/etc/cohort":
                fail(f"{where}: the ConfigMap is mounted at {m['mountPath']}, not /etc/cohort")
        tgps = spec.get("terminationGracePeriodSeconds", 30)
        if tgps < need_s:
            fail(f"{where}: terminationGracePeriodSeconds {tgps} < grace_ms + drain_timeout_ms{' + ship_timeout_ms' if ships else ''} + 5 s = {need_s:g} s")
        sc = c.get("securityContext", {})
        psc = spec.get("securityContext", {})
        if not sc.get("readOnlyRootFilesystem"):
            fail(f"{where}: the cohort container's root filesystem is not read-only")
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            fail(f"{where}: runAsNonRoot is not set")
        for want, probe in (("/readyz", "readinessProbe"), ("/healthz", "livenessProbe")):
            p = c.get(probe, {}).get("httpGet", {})
            if p.get("path") != want or p.get("port") not in ("admin", 9901):
                fail(f"{where}: {probe} is not GET {want} on the admin port")
        env = {e["name"] for e in c.get("env", [])}
        missing = [e for e in token_envs if e not in env]
        if missing:
            fail(f"{where}: admin.tokens read {missing}, which the cohort container does not set")
        # The Secrets are created in the cluster, not rendered: a rendered one would replace it
        # on apply (or, hashed, take the pods' references away from it).
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref and ref.get("name") not in cluster_secrets:
                fail(f"{where}: {e['name']} reads the Secret {ref.get('name')}, not one of {cluster_secrets}")
        if password_env:
            pw = [e for e in c.get("env", []) if e["name"] == password_env]
            ref = (pw[0].get("valueFrom") or {}).get("secretKeyRef") if len(pw) == 1 else None
            if not ref or "value" in pw[0] or ref.get("name") != CLICKHOUSE_SECRET:
                fail(f"{where}: events.clickhouse.password_env is {password_env}, which the cohort container "
                     f"must set exactly once from the Secret {CLICKHOUSE_SECRET} (secretKeyRef), never as a "
                     f"value: {pw}")
        # Worker threads: without a CPU limit there is no CPU quota, and cohort's default would
        # be one worker per node core; COHORT_WORKERS carries the CPU request instead.
        cpu = cpu_cores((c.get("resources", {}).get("requests") or {}).get("cpu", ""))
        if not cpu:
            fail(f"{where}: the cohort container has no CPU request (resources.requests.cpu): "
                 f"COHORT_WORKERS would be 0 and cohort would start one worker per node core")
        workers = [e for e in c.get("env", []) if e["name"] == "COHORT_WORKERS"]
        rf = (workers[0].get("valueFrom") or {}).get("resourceFieldRef") if len(workers) == 1 else None
        if (not rf or "value" in workers[0] or rf.get("resource") != "requests.cpu"
                or rf.get("containerName", "cohort") != "cohort" or str(rf.get("divisor", "1")) != "1"):
            fail(f"{where}: the cohort container does not set COHORT_WORKERS exactly once from the downward "
                 f"API (resourceFieldRef: containerName cohort, resource requests.cpu, divisor \"1\"): {workers}")
        data_dirs = [routes.get("events", {}).get("dir", "./data/events"),
                     (routes.get("admin") or {}).get("state_file", "./data/state.json")]
        mounts = [m["mountPath"].rstrip("/") + "/" for m in c.get("volumeMounts", []) if not m.get("readOnly")]
        for p in data_dirs:
            if not any(p.startswith(m) for m in mounts):
                fail(f"{where}: {p} is on no writable volume (the root filesystem is read-only)")
        ok(f"{w['kind']}/{w['metadata']['name']}: --config /etc/cohort/routes.yaml, directory mount, "
           f"no subPath, grace {tgps} s >= {need_s:g} s{' (ship_timeout_ms included)' if ships else ''}, "
           f"probes, non-root, read-only root, tokens {token_envs} from env, data on a volume")
        if ch:
            ok(check_clickhouse(docs, overlay, ch, c))
        ok(f"{w['kind']}/{w['metadata']['name']}: CPU request {cpu:g} cores -> COHORT_WORKERS="
           f"{math.ceil(cpu)} (downward API, requests.cpu)")
        ok(check_network_policy(docs, overlay, w, c))
    secrets = [d["metadata"]["name"] for d in find(docs, "Secret")
               if d["metadata"]["name"].startswith((TOKENS_SECRET, CLICKHOUSE_SECRET))]
    if secrets:
        fail(f"{overlay}: renders the Secret {secrets}: {TOKENS_SECRET} and {CLICKHOUSE_SECRET} are created "
             f"in the cluster (deploy/README.md), never generated from committed values")
    svc = find(docs, "Service", "cohort")
    if not svc or svc[0]["spec"]["ports"][0]["targetPort"] not in ("http", 8080):
        fail(f"{overlay}: the Service cohort does not target cohort's public port")
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
        if not find(docs, kind):
            fail(f"{overlay}: no {kind}")
    for h in find(docs, "HorizontalPodAutoscaler"):
        t = h["spec"]["scaleTargetRef"]
        if not find(docs, t["kind"], t["name"]):
            fail(f"{overlay}: the HPA scales {t['kind']}/{t['name']}, which this overlay does not have")
    ok("Service cohort -> port http; HPA target exists; PDB present")
    # The control map of the rules must name each experiment's control.
    rules = pathlib.Path(__file__).resolve().parent / "prometheus" / "cohort-rules.yaml"
    text = rules.read_text()
    pairs = set(re.findall(r'"experiment", "([^"]+)", "", ""\), "variant", "([^"]+)"', text))
    for e in routes.get("experiments", []):
        if (e["name"], e["control"]) not in pairs:
            fail(f"{overlay}: deploy/prometheus/cohort-rules.yaml's cohort:experiment_control:info does not "
                 f"map experiment {e['name']} to its control {e['control']} (it has {sorted(pairs)})")
    ok("cohort-rules.yaml's control map matches routes.yaml")


def debug_pod(spec, out):
    c = yaml.safe_load(pathlib.Path(spec).read_text())
    if not isinstance(c, dict):
        fail(f"{spec}: not a map (a partial container spec)")
    c = dict(c, name="collect", image="busybox:1.37", command=["sleep", "600"])
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cohort-0"},
           "spec": {"containers": [{"name": "cohort", "image": "cohort",
                                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/cohort"}]}],
                    "ephemeralContainers": [c],
                    "volumes": [{"name": "data", "emptyDir": {}}]}}
    pathlib.Path(out).write_text(yaml.safe_dump(pod, sort_keys=False))


# ---------------------------------------------------------------- Prometheus Operator kinds
def label_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def monitoring(build, outdir, rules_file):
    docs = load_all(build)
    sms = find(docs, "ServiceMonitor")
    prs = find(docs, "PrometheusRule")
    if not sms or not prs:
        fail(f"expected a ServiceMonitor and a PrometheusRule, found {len(sms)} and {len(prs)}")
    services = find(docs, "Service")
    for sm in sms:
        spec = sm.get("spec")
        name = f"ServiceMonitor/{sm['metadata']['name']}"
        if not isinstance(spec, dict):
            fail(f"{name}: spec is not a map")
        sel = spec.get("selector")
        if not isinstance(sel, dict) or not sel:
            fail(f"{name}: spec.selector must be a non-empty map (matchLabels/matchExpressions)")
        unknown = set(sel) - {"matchLabels", "matchExpressions"}
        if unknown:
            fail(f"{name}: unknown keys in spec.selector: {sorted(unknown)}")
        eps = spec.get("endpoints")
        if not isinstance(eps, list) or not eps:
            fail(f"{name}: spec.endpoints must be a non-empty list")
        for ep in eps:
            if not isinstance(ep, dict) or not (ep.get("port") or ep.get("targetPort")):
                fail(f"{name}: each endpoint needs a port (a Service port name)")
        matched = [s for s in services if label_match(sel, s["metadata"].get("labels", {}))]
        if not matched:
            fail(f"{name}: spec.selector {sel} matches no Service of the overlay")
        for ep in eps:
            if ep.get("port") and not any(ep["port"] in [p.get("name") for p in s["spec"]["ports"]] for s in matched):
                fail(f"{name}: endpoint port {ep['port']!r} is not a port name of {[s['metadata']['name'] for s in matched]}")
        ok(f"{name}: selects Service {[s['metadata']['name'] for s in matched]}, endpoints {[e.get('port') for e in eps]}")
    source = yaml.safe_load(pathlib.Path(rules_file).read_text())
    for pr in prs:
        spec = pr.get("spec")
        name = f"PrometheusRule/{pr['metadata']['name']}"
        if not isinstance(spec, dict) or not isinstance(spec.get("groups"), list) or not spec["groups"]:
            fail(f"{name}: spec.groups must be a non-empty list")
        out = pathlib.Path(outdir) / f"prometheusrule-{pr['metadata']['name']}.rules.yaml"
        out.write_text(yaml.safe_dump({"groups": spec["groups"]}, sort_keys=False))
        print(out)
        if spec["groups"] != source["groups"]:
            fail(f"{name}: spec.groups differ from {rules_file}; run python3 deploy/prometheus/gen-prometheusrule.py")
        ok(f"{name}: spec.groups extracted for promtool and equal to {pathlib.Path(rules_file).name}")


# ---------------------------------------------------------------- PromQL
def dashboard_exprs(path):
    dash = json.loads(pathlib.Path(path).read_text())
    exprs, metrics_from_vars = [], []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    exprs.append((f"panel {p.get('id')} {p.get('title')!r} {t.get('refId')}", t["expr"]))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.match(r"\s*label_values\(\s*(.+?)\s*,\s*[A-Za-z_]\w*\s*\)\s*$", q)
            if m:
                exprs.append((f"variable ${v['name']}", m.group(1)))
            else:
                fail(f"variable ${v['name']}: not a label_values(SELECTOR, label) query: {q}")
    if not exprs:
        fail(f"{path}: no PromQL found")
    return exprs


def grafana_to_promql(expr):
    expr = re.sub(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def dashboard_rules(path, out):
    rules = [{"record": f"dashboard:expr_{i}:check", "expr": grafana_to_promql(e)}
             for i, (_, e) in enumerate(dashboard_exprs(path))]
    pathlib.Path(out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    ok(f"{len(rules)} dashboard expressions written to {out} for promtool")


KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "offset", "bool", "inf", "nan", "atan2", "start", "end"}


def metric_names(expr):
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", s):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def exposed_names(metrics_text):
    names = set()
    for line in metrics_text.splitlines():
        m = re.match(r"# TYPE (\S+) (\w+)", line)
        if m:
            names.add(m.group(1))
            if m.group(2) in ("histogram", "summary"):
                names.update(m.group(1) + s for s in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            names.add(re.match(r"[^{\s]+", line).group(0))
    return names


def check_metric_names(metrics_file, rule_files, dashboard):
    exposed = exposed_names(pathlib.Path(metrics_file).read_text())
    if not any(n.startswith("cohort_") for n in exposed):
        fail(f"{metrics_file} has no cohort_ metric: the scrape failed")
    uses, recorded = [], set()
    for rf in rule_files:
        for g in yaml.safe_load(pathlib.Path(rf).read_text())["groups"]:
            for r in g["rules"]:
                if "record" in r:
                    recorded.add(r["record"])
                uses.append((f"{pathlib.Path(rf).name}: {r.get('alert') or r.get('record')}", r["expr"]))
    uses += [(f"{pathlib.Path(dashboard).name}: {w}", e) for w, e in dashboard_exprs(dashboard)]
    bad, used = [], set()
    for where, e in uses:
        for n in metric_names(e):
            if n in recorded:
                continue
            used.add(n)
            if n not in exposed:
                bad.append(f"{where}: {n}")
    if bad:
        fail("metric names not on cohort's /metrics:\n  " + "\n  ".join(bad))
    ok(f"{len(uses)} expressions use {len(used)} cohort metric names, all on /metrics: {', '.join(sorted(used))}")


def test_config(routes, out, pub, admin, workdir):
    cfg = yaml.safe_load(pathlib.Path(routes).read_text())
    cfg["listen"] = f"127.0.0.1:{pub}"
    cfg.setdefault("admin", {})
    cfg["admin"]["listen"] = f"127.0.0.1:{admin}"
    cfg["admin"]["state_file"] = f"{workdir}/state.json"
    cfg["admin"]["tokens"] = []
    cfg.setdefault("events", {})["dir"] = f"{workdir}/events"
    cfg["shutdown"] = {"grace_ms": 0, "drain_timeout_ms": 1000}
    pathlib.Path(out).write_text(yaml.safe_dump(cfg, sort_keys=False))


def main(argv):
    if not argv:
        fail(__doc__)
    cmd, args = argv[0], argv[1:]
    if cmd == "docker-context":
        docker_context()
    elif cmd == "placeholders":
        placeholders(*args)
    elif cmd == "docs-agree":
        docs_agree(*args)
    elif cmd == "validate-warnings":
        validate_warnings(*args)
    elif cmd == "k8s":
        k8s(*args)
    elif cmd == "monitoring":
        monitoring(*args)
    elif cmd == "debug-pod":
        debug_pod(*args)
    elif cmd == "dashboard-rules":
        dashboard_rules(*args)
    elif cmd == "test-config":
        test_config(*args)
    elif cmd == "metric-names":
        i = args.index("--dashboard")
        check_metric_names(args[0], args[1:i], args[i + 1])
    else:
        fail(f"unknown subcommand {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])
