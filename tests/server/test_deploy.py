"""deploy/: the systemd unit, the Kubernetes example and the Grafana dashboard, checked
field by field against what the server really reads and exports (a live node is scraped)."""
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
    """{section: {key: [values, in order]}}: a unit may repeat a key (LoadCredential=)."""
    unit, section = {}, None
    for line in (DEPLOY / "systemd" / "getbatch.service").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = unit.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key, []).append(value)
    return {name: _Last(keys) for name, keys in unit.items()}


class _Last(dict):
    """A unit section: [key] is the last value (as systemd reads most keys), all(key) every one."""

    def __getitem__(self, key):
        return super().__getitem__(key)[-1]

    def all(self, key):
        return self.get(key, [])


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
    from getbatch.server.startup import gunicorn_options
    assert gunicorn_options(Config())["graceful_timeout"] < int(unit["TimeoutStopSec"])


def test_systemd_unit_gives_the_secrets_as_credentials_never_world_readable():
    unit = _unit()["Service"]
    creds = dict(c.split(":", 1) for c in unit.all("LoadCredential"))
    assert set(creds) == {"tls.key", "auth.key"}
    env = dict(kv.split("=", 1) for line in unit.all("Environment") for kv in line.split())
    assert env == {"GETBATCH_TLS_KEY": "%d/tls.key", "GETBATCH_AUTH_KEY_FILE": "%d/auth.key"}
    # the env file (0644 by the install line of docs/deploy.md) names no secret
    file_env = _env_file()
    assert not {"GETBATCH_TLS_KEY", "GETBATCH_AUTH_KEY", "GETBATCH_AUTH_KEY_FILE",
                "GETBATCH_ETCD_KEY"} & set(file_env)
    literal = _check_env(dict(file_env, **{k: "/run/credentials/getbatch.service/" +
                                             v.split("/")[1] for k, v in env.items()}))
    assert literal["GETBATCH_AUTH"] == "true" and literal["GETBATCH_TLS_CA"]
    assert urlsplit(file_env["GETBATCH_ADVERTISE"]).scheme == "https"
    assert all(urlsplit(u).scheme == "https" for u in file_env["GETBATCH_ETCD"].split(","))
    assert unit["UMask"] == "0027"
    text = (DEPLOY.parent / "docs" / "deploy.md").read_text()
    for src in creds.values():   # the doc installs each credential root-only
        assert "-m 0600 " in text and src in text, src


def _analyze(tmp_path, *args):
    """systemd-analyze (apt package systemd) on the unit, its ExecStart pointed at a real file."""
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze missing: apt-get install systemd"
    text = (DEPLOY / "systemd" / "getbatch.service").read_text()
    unit = tmp_path / "getbatch.service"
    unit.write_text(re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={sys.executable}", text))
    return subprocess.run([tool, *args, str(unit)], capture_output=True, text=True, timeout=60)


def test_systemd_unit_sandbox_scores_well(tmp_path):
    """`systemd-analyze security` (0 safe .. 10 exposed): the stock unit scored 8.5."""
    r = _analyze(tmp_path, "security", "--offline=true")
    m = re.search(r"Overall exposure level for getbatch.service: ([\d.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout


def test_systemd_unit_verifies(tmp_path):
    r = _analyze(tmp_path, "verify")
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), r.stderr + r.stdout


# -- Kubernetes

def _load(name):
    with open(DEPLOY / "kubernetes" / name) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def _docs():
    docs = _load("getbatch.yaml") + _load("etcd.yaml")
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _pod_env(c, pod="getbatch-0", namespace="getbatch"):
    """The container's env as Kubernetes builds it for `pod`: a $(VAR) of a variable defined
    earlier is expanded (a later or unknown one would stay as text)."""
    fields = {"metadata.name": pod, "metadata.namespace": namespace}
    env = {}
    for e in c["env"]:
        if "valueFrom" in e:
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
            continue
        for ref in re.findall(r"\$\((\w+)\)", e["value"]):
            assert ref in env, (e["name"], ref)
        env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], e["value"])
    return env


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
    env = _pod_env(c)
    literal = _check_env(env)
    assert literal["GETBATCH_NODE_ID"] == "getbatch-0"

    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    port = int(literal["GETBATCH_PORT"])
    assert ports["https"] == port and literal["GETBATCH_HOST"] == "0.0.0.0"
    for svc in (d for (kind, name), d in docs.items() if kind == "Service"
                and d["spec"]["selector"] == labels):
        (p,) = svc["spec"]["ports"]
        assert p["targetPort"] in ("https", port)
    ready, live = c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]
    assert ready["path"] == "/v1/health?readiness=true" and live["path"] == "/v1/health"
    assert ready["port"] == live["port"] == "https" and ready["scheme"] == live["scheme"] == "HTTPS"
    # kubelet probes show no client certificate: client auth must stay off
    assert literal.get("GETBATCH_TLS_CLIENT_AUTH", "false") == "false"
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/path"] == "/metrics" and int(ann["prometheus.io/port"]) == port
    assert ann["prometheus.io/scheme"] == "https"

    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]] == literal["GETBATCH_DATA_DIR"]
    # every file setting points into a mounted secret
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
    for key in ("GETBATCH_TLS_CERT", "GETBATCH_TLS_KEY", "GETBATCH_TLS_CA", "GETBATCH_AUTH_KEY_FILE",
                "GETBATCH_ETCD_CA", "GETBATCH_ETCD_CERT", "GETBATCH_ETCD_KEY"):
        assert any(literal[key].startswith(mounts[v] + "/") for v in secrets), key

    # every node advertises its stable name through the headless Service, on its port, https
    adv = urlsplit(env["GETBATCH_ADVERTISE"])
    assert adv.hostname == f"getbatch-0.{headless['metadata']['name']}.getbatch.svc.cluster.local"
    assert adv.port == port and adv.scheme == "https"


def test_kubernetes_etcd_is_deployed_under_the_names_the_nodes_use():
    docs = _docs()
    (c,) = docs[("StatefulSet", "getbatch")]["spec"]["template"]["spec"]["containers"]
    etcd = docs[("StatefulSet", "etcd")]
    svc = docs[("Service", etcd["spec"]["serviceName"])]
    assert svc["spec"]["clusterIP"] == "None"
    client_port = {p["name"]: p["port"] for p in svc["spec"]["ports"]}["client"]
    expected = {f"etcd-{i}.{svc['metadata']['name']}" for i in range(etcd["spec"]["replicas"])}
    urls = [urlsplit(u) for u in _pod_env(c)["GETBATCH_ETCD"].split(",")]
    assert {u.hostname for u in urls} == expected
    assert {(u.scheme, u.port) for u in urls} == {("https", client_port)}
    (e,) = etcd["spec"]["template"]["spec"]["containers"]
    args = dict(a.partition("=")[::2] for a in e["command"][1:])
    assert "--client-cert-auth" in args and "--peer-client-cert-auth" in args
    assert args["--listen-client-urls"] == f"https://0.0.0.0:{client_port}"
    members = dict(m.split("=", 1) for m in args["--initial-cluster"].split(","))
    assert set(members) == {f"etcd-{i}" for i in range(etcd["spec"]["replicas"])}


def _pod_specs():
    for d in _docs().values():
        if d["kind"] in ("StatefulSet", "Deployment", "DaemonSet"):
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]


def test_kubernetes_pods_meet_the_restricted_pod_security_standard():
    """The "restricted" profile's rules (kubernetes.io/docs/concepts/security/
    pod-security-standards), plus a read-only root with writable data and /tmp volumes."""
    ns = _docs()[("Namespace", "getbatch")]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                       "persistentVolumeClaim", "projected", "secret"}
    for name, spec in _pod_specs():
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), (name, key)
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost")
        for v in spec.get("volumes", []):
            kinds = set(v) - {"name"}
            assert kinds <= allowed_volumes, (name, v)
            if "secret" in v:   # key files: never world-readable
                assert v["secret"]["defaultMode"] & 0o007 == 0, (name, v)
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, name
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, name
            assert sc.get("allowPrivilegeEscalation") is False, name
            assert not sc.get("privileged"), name
            assert "ALL" in sc["capabilities"]["drop"], name
            assert set(sc["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}, name
            assert not any("hostPort" in p for p in c.get("ports", [])), name
            assert sc.get("readOnlyRootFilesystem") is True, name
            writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
            claims = {m["mountPath"] for m in c["volumeMounts"]
                      if m["name"] not in {v["name"] for v in spec.get("volumes", [])}}
            assert claims and claims <= writable, name   # the data volume
        assert spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]


def test_kubernetes_manifests_pass_the_schema_validator():
    import kubernetes_validate   # a test dependency (pyproject.toml), with the schemas offline
    for name in ("getbatch.yaml", "etcd.yaml"):
        for d in _load(name):
            kubernetes_validate.validate(d, "1.30", strict=True)


def test_kubernetes_disruption_budgets_cover_each_statefulset():
    docs = _docs()
    for (kind, name), sts in docs.items():
        if kind != "StatefulSet":
            continue
        pdb = docs[("PodDisruptionBudget", name)]
        assert pdb["spec"]["selector"] == sts["spec"]["selector"]
        assert pdb["spec"]["maxUnavailable"] == 1 < sts["spec"]["replicas"]


def test_the_dockerfile_builds_the_image_the_manifest_names():
    docker = (DEPLOY / "Dockerfile").read_text()
    sts = _docs()[("StatefulSet", "getbatch")]
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    project = (DEPLOY.parent / "pyproject.toml").read_text()
    version = re.search(r'(?m)^version = "([^"]+)"', project).group(1)
    assert c["image"] == f"getbatch:{version}"
    assert f"docker build -f deploy/Dockerfile -t {c['image']} ." in docker
    user = re.search(r"(?m)^USER (\d+):(\d+)$", docker)
    pod_sc = sts["spec"]["template"]["spec"]["securityContext"]
    assert (int(user.group(1)), int(user.group(2))) == (pod_sc["runAsUser"], pod_sc["runAsGroup"])
    assert re.search(r"(?m)^ENTRYPOINT \[\"getbatch\"\]", docker)
    # the only writable paths of the read-only root are volumes
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/data", "/tmp"} <= mounts
    assert "GETBATCH_DATA_DIR=/data" in docker


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
              "deploy/kubernetes/getbatch.yaml", "deploy/kubernetes/etcd.yaml",
              "deploy/Dockerfile", "deploy/grafana/getbatch-dashboard.json"):
        assert f in text and (DEPLOY.parent / f).is_file(), f
