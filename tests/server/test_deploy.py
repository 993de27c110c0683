"""deploy/: the systemd unit, the Kubernetes example and the Grafana dashboard, checked
field by field against what the server really reads and exports (a live node is scraped)."""
import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import requests
import yaml

from getbatch.config import SETTINGS, Config

from .test_metrics import parse

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENV_NAMES = {s.env for s in SETTINGS}


def _check_env(env):
    """Every GETBATCH_* name is a setting, and every literal value parses as that setting."""
    names = {k for k in env if k.startswith("GETBATCH_")}
    assert names, env
    assert names <= ENV_NAMES, names - ENV_NAMES
    literal = {k: v for k, v in env.items() if k in ENV_NAMES}
    Config.load(env=literal)   # raises ConfigError on a bad value
    return literal


# -- systemd

def _env_file():
    """The env file's variables, commented-out examples included (they must be right too)."""
    env = {}
    for line in (DEPLOY / "systemd" / "getbatch.env").read_text().splitlines():
        m = re.fullmatch(r"#?(GETBATCH_[A-Z_]+)=(.*)", line.strip())
        if m:
            env[m.group(1)] = m.group(2)
    return env


def _unit():
    p = configparser.ConfigParser(strict=True, interpolation=None)
    p.optionxform = str
    p.read(DEPLOY / "systemd" / "getbatch.service")
    return p


def test_systemd_unit_runs_serve_with_the_env_file_and_a_writable_data_dir():
    unit = _unit()["Service"]
    env = _env_file()
    literal = _check_env(env)
    assert unit["ExecStart"].endswith("/getbatch serve")
    assert unit["EnvironmentFile"].endswith("getbatch.env")
    data_dir = literal["GETBATCH_DATA_DIR"]
    assert data_dir in unit["ReadWritePaths"].split()
    assert data_dir == "/var/lib/" + unit["StateDirectory"]
    assert literal["GETBATCH_HOST"] == "0.0.0.0"
    # graceful stop: gunicorn waits 10 s for requests in flight
    assert unit["KillSignal"] == "SIGTERM" and int(unit["TimeoutStopSec"]) > 10
    # a bad setting exits 2: no restart loop
    assert unit["RestartPreventExitStatus"] == "2"
    from getbatch.cli import gunicorn_options
    assert gunicorn_options(Config())["graceful_timeout"] < int(unit["TimeoutStopSec"])


def test_systemd_unit_verifies(tmp_path):
    """systemd's own checker (apt package systemd), with ExecStart pointed at a real file."""
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze missing: apt-get install systemd"
    text = (DEPLOY / "systemd" / "getbatch.service").read_text()
    unit = tmp_path / "getbatch.service"
    unit.write_text(re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={sys.executable}", text))
    r = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), r.stderr + r.stdout


# -- Kubernetes

def _docs():
    with open(DEPLOY / "kubernetes" / "getbatch.yaml") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_kubernetes_statefulset_headless_service_probes_and_volumes():
    docs = _docs()
    sts = docs[("StatefulSet", "getbatch")]
    headless = docs[("Service", sts["spec"]["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (c,) = pod["spec"]["containers"]
    assert c["command"] == ["getbatch", "serve"]
    # the pod's env as Kubernetes builds it for pod getbatch-0 in namespace ns: a $(VAR) of a
    # variable defined earlier is expanded (a later or unknown one would stay as text)
    fields = {"metadata.name": "getbatch-0", "metadata.namespace": "ns"}
    env = {}
    for e in c["env"]:
        if "valueFrom" in e:
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
            continue
        for ref in re.findall(r"\$\((\w+)\)", e["value"]):
            assert ref in env, (e["name"], ref)
        env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], e["value"])
    literal = _check_env(env)
    assert literal["GETBATCH_NODE_ID"] == "getbatch-0"

    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    port = int(literal["GETBATCH_PORT"])
    assert ports["http"] == port and literal["GETBATCH_HOST"] == "0.0.0.0"
    for svc in (d for (kind, _), d in docs.items() if kind == "Service"):
        assert svc["spec"]["selector"].items() <= labels.items()
        (p,) = svc["spec"]["ports"]
        assert p["targetPort"] in ("http", port)
    for probe in ("readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/v1/health" and get["port"] in ("http", port)
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/path"] == "/metrics" and int(ann["prometheus.io/port"]) == port

    (claim,) = sts["spec"]["volumeClaimTemplates"]
    (mount,) = c["volumeMounts"]
    assert mount["name"] == claim["metadata"]["name"]
    assert mount["mountPath"] == literal["GETBATCH_DATA_DIR"]

    # every node advertises its stable name through the headless Service, on its port
    adv = urlsplit(env["GETBATCH_ADVERTISE"])
    assert adv.hostname == f"getbatch-0.{headless['metadata']['name']}.ns.svc.cluster.local"
    assert adv.port == port and adv.scheme == "http"
    assert all(urlsplit(u).scheme == "http" and urlsplit(u).port
               for u in env["GETBATCH_ETCD"].split(","))


# -- Grafana

_PROMQL_WORDS = {"sum", "by", "rate", "histogram_quantile", "clamp_min", "le", "node_id", "op",
                 "path", "label_values"}


def _queries(dash):
    out = [dash["templating"]["list"][1]["definition"]]
    for panel in dash["panels"]:
        out += [t["expr"] for t in panel.get("targets", [])]
    return out


def test_dashboard_queries_use_only_series_a_live_node_exports(node):
    dash = json.loads((DEPLOY / "grafana" / "getbatch-dashboard.json").read_text())
    exported = {name for name, _ in parse(requests.get(node.url + "/metrics", timeout=10).text)[0]}
    used = set()
    for q in _queries(dash):
        # drop label matchers, legends and grafana variables; what is left are names
        bare = re.sub(r'\{[^}]*\}|\[[^\]]*\]|"[^"]*"|\$\w+|\b\d[\d.]*(e-?\d+)?\b', " ", q)
        names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare)) - _PROMQL_WORDS
        assert names, q
        assert names <= exported, (q, names - exported)
        used |= names
    # every family of the node is on the dashboard
    families = {re.sub(r"_(bucket|sum|count)$", "", n) if n.startswith("getbatch_") and not
                n.endswith("_total") else n for n in exported}
    shown = {re.sub(r"_(bucket|sum|count)$", "", n) if n.startswith("getbatch_") and not
             n.endswith("_total") else n for n in used}
    assert families <= shown, families - shown
    assert {p["gridPos"]["y"] for p in dash["panels"]}   # laid out
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_deploy_doc_names_the_files():
    text = (DEPLOY.parent / "docs" / "deploy.md").read_text()
    for f in ("deploy/systemd/getbatch.service", "deploy/systemd/getbatch.env",
              "deploy/kubernetes/getbatch.yaml", "deploy/grafana/getbatch-dashboard.json"):
        assert f in text and (DEPLOY.parent / f).is_file(), f
