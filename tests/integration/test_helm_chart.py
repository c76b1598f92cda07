"""The Helm chart, rendered by the real helm (3.18, scripts/install-tools.sh) and validated offline.

Every values file (defaults and helm/validator-signer/ci/*.yaml): `helm lint --strict`, `helm template`,
each manifest against the Kubernetes 1.33 OpenAPI schemas with kubernetes-validate (strict), and the
rendered signer.toml through signer.config.parse_config, so the chart and the config cannot drift.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tomllib
import typing
from collections.abc import Iterator
from functools import cache
from typing import Any

import kubernetes_validate
import pydantic
import pytest
import yaml

from signer.config import Config, parse_config
from tests.support import REPO_ROOT, missing_component

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "helm" / "validator-signer"
K8S_VERSION = "1.33.0"
"""The version of kubectl-v33 whose layer ships our helm; kubernetes-validate has its schemas."""
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
"""Prometheus-operator CRDs: kubernetes-validate ships no schema for them; checked structurally below."""

CASES = {
    "default": None,
    "sqlite": CHART / "ci" / "sqlite-values.yaml",
    "postgres-ha": CHART / "ci" / "postgres-ha-values.yaml",
    "pkcs11": CHART / "ci" / "pkcs11-values.yaml",
    "distributed": CHART / "ci" / "distributed-values.yaml",
}
CASE_IDS = list(CASES)


def helm_binary() -> str:
    local = REPO_ROOT / ".tools" / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("helm")
    if found is None:
        missing_component("helm (run scripts/install-tools.sh)")
    assert found is not None
    return found


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=60, check=False)


def template_args(case: str, *extra: str) -> list[str]:
    values = CASES[case]
    return [
        "template",
        "signer",
        str(CHART),
        "--namespace",
        "validators",
        *(["-f", str(values)] if values else []),
        *extra,
    ]


@cache
def _rendered(case: str) -> tuple[dict[str, Any], ...]:
    result = run_helm(*template_args(case))
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def rendered(case: str) -> list[dict[str, Any]]:
    helm_binary()  # skip or fail early with the right message
    return list(_rendered(case))


def one(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"{kind} *{name_suffix}: {len(found)} found"
    return found[0]


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] in {"StatefulSet", "Deployment"}]
    assert len(found) == 1
    return found[0]


def signer_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = workload(docs)["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "signer")


def rendered_toml(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return tomllib.loads(one(docs, "ConfigMap", "-config")["data"]["signer.toml"])


# --- helm lint and template ---------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_IDS)
def test_helm_lint_strict(case: str) -> None:
    values = CASES[case]
    result = run_helm("lint", "--strict", str(CHART), *(["-f", str(values)] if values else []))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("case", CASE_IDS)
def test_every_manifest_validates_against_kubernetes_schemas(case: str) -> None:
    docs = rendered(case)
    assert docs
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1", name
            continue  # checked structurally in test_monitoring_resources
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = list(exc.path)
            pytest.fail(f"{case}: {name} is not a valid {K8S_VERSION} object: {exc.message} at {where}")


@pytest.mark.parametrize("case", CASE_IDS)
def test_rendered_config_is_accepted_by_signer_config(case: str) -> None:
    docs = rendered(case)
    config = parse_config(rendered_toml(docs))
    assert isinstance(config, Config)
    values_file = CASES[case]
    values = yaml.safe_load(values_file.read_text()) if values_file else {}
    wanted_backend = values.get("config", {}).get("protection", {}).get("backend", "sqlite")
    assert config.protection.backend == wanted_backend
    # what the chart owns points into what the pod mounts
    assert str(config.keys.data_dir) == "/var/lib/signer"
    pin = config.keys.pin if config.keys.module == "emulated" else config.keys.pkcs11.pin  # type: ignore[union-attr]
    assert pin is not None and str(pin.file) == "/var/run/signer/pin"
    mounts = {m["mountPath"]: m["name"] for m in signer_container(docs)["volumeMounts"]}
    assert mounts["/var/run/signer"] == "secrets"
    assert mounts["/var/lib/signer"] == "data"
    if config.protection.backend == "sqlite":
        assert str(config.protection.sqlite_path).startswith("/var/lib/signer/")
    if config.server.tls is not None:
        assert mounts["/etc/signer/tls"] == "tls"
        assert str(config.server.tls.cert_file).startswith("/etc/signer/tls/")
    ports = {p["name"]: p["containerPort"] for p in signer_container(docs)["ports"]}
    assert ports["grpc"] == int(config.server.grpc_listen.rsplit(":", 1)[1])
    assert ports["metrics"] == int(config.server.metrics_listen.rsplit(":", 1)[1])
    if config.server.http_listen is None:
        assert "http" not in ports
    else:
        assert ports["http"] == int(config.server.http_listen.rsplit(":", 1)[1])


def test_values_map_one_to_one_onto_config_keys() -> None:
    """Values under `config` become the same TOML keys, numbers keep their type."""
    result = run_helm(
        *template_args(
            "postgres-ha",
            "--set",
            "config.batching.max_batch=128",
            "--set-json",
            "config.server.shutdown_grace_s=2.5",
        )
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    toml = rendered_toml(docs)
    assert toml["batching"]["max_batch"] == 128 and isinstance(toml["batching"]["max_batch"], int)
    assert toml["server"]["shutdown_grace_s"] == 2.5
    assert toml["limits"]["per_key_rate"] == {"per_second": 10, "burst": 20}
    assert isinstance(toml["protection"]["pool_size"], int)
    assert [c["name"] for c in toml["clients"]] == ["vouch-a", "vouch-b", "cometbft-node"]
    assert toml["protection"]["password"] == {"file": "/var/run/signer/postgres-password"}


def test_operator_secrets_are_mounted_from_a_secret_where_the_config_reads_them() -> None:
    """Each operator named in config.clients gets its secret file from secrets.operators (an existing
    Secret in ci/sqlite-values.yaml; one the chart makes from values here), read-only under
    /var/run/signer/operators/, and the rendered config names exactly that file."""
    docs = rendered("sqlite")
    config = parse_config(rendered_toml(docs))
    (ops,) = [c for c in config.clients if c.name == "ops"]
    assert {o.name: str(o.secret.file) for o in ops.operators} == {
        "alice": "/var/run/signer/operators/alice",
        "bob": "/var/run/signer/operators/bob",
    }
    assert config.admin.second_factor and config.admin.require_approval
    volumes = {v["name"]: v for v in workload(docs)["spec"]["template"]["spec"]["volumes"]}
    sources = [s["secret"] for s in volumes["secrets"]["projected"]["sources"]]
    (operators,) = [s for s in sources if s["name"] == "signer-operators"]
    assert operators["items"] == [
        {"key": "alice", "path": "operators/alice"},
        {"key": "bob", "path": "operators/bob"},
    ]
    assert volumes["secrets"]["projected"]["defaultMode"] == 0o440
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-operators")]

    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # noqa: S105 - a test TOTP secret
    result = run_helm(
        *template_args(
            "default",
            "--set",
            "config.clients[0].name=admin",
            "--set",
            "config.clients[0].operators[0].name=carol",
            "--set",
            f"secrets.operators.values.carol={secret}",
        )
    )
    assert result.returncode == 0, result.stderr
    made = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "Secret"]
    (operators_secret,) = [d for d in made if d["metadata"]["name"].endswith("-operators")]
    assert operators_secret["data"] == {"carol": base64.b64encode(secret.encode()).decode()}


# --- the schema and the config models cannot drift ---------------------------------------------

CHART_OWNED = {
    "Config": set(),
    "ServerConfig": set(),
    "TlsConfig": {"cert_file", "key_file", "client_ca_file"},
    "KeysConfig": {"data_dir", "pin"},
    "Pkcs11Config": {"pin"},
    "ProtectionConfig": {"sqlite_path", "password"},
    "OperatorConfig": {"secret"},
    "AuditConfig": {"hmac_key"},
}


def _model_of(annotation: Any) -> type[pydantic.BaseModel] | None:
    """The pydantic model inside X | None, tuple[X, ...], or X."""
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, pydantic.BaseModel):
            return arg
        inner = [a for a in typing.get_args(arg) if isinstance(a, type) and issubclass(a, pydantic.BaseModel)]
        if inner:
            return inner[0]
    return None


def _schema_pairs() -> Iterator[tuple[str, type[pydantic.BaseModel], dict[str, Any]]]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    pending: list[tuple[str, type[pydantic.BaseModel], dict[str, Any]]] = [
        ("config", Config, schema["properties"]["config"])
    ]
    while pending:
        path, model, node = pending.pop()
        if node.get("type") == "array":
            node = node["items"]
        yield path, model, node
        for field, info in model.model_fields.items():
            sub = _model_of(info.annotation)
            if sub is not None and field in node["properties"]:
                pending.append((f"{path}.{field}", sub, node["properties"][field]))


@pytest.mark.parametrize(("path", "model", "node"), list(_schema_pairs()), ids=[p for p, _, _ in _schema_pairs()])
def test_values_schema_has_exactly_the_config_keys(
    path: str, model: type[pydantic.BaseModel], node: dict[str, Any]
) -> None:
    owned = CHART_OWNED.get(model.__name__, set())
    assert node["additionalProperties"] is False, f"{path}: unknown keys must be refused"
    assert set(node["properties"]) == set(model.model_fields) - owned, path


# --- modes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["default", "sqlite", "pkcs11"])
def test_sqlite_store_is_a_single_statefulset_with_a_volume_claim(case: str) -> None:
    docs = rendered(case)
    sts = workload(docs)
    assert sts["kind"] == "StatefulSet"
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == one(docs, "Service", "-headless")["metadata"]["name"]
    claims = sts["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]


def test_postgres_store_is_a_deployment_of_several_replicas() -> None:
    docs = rendered("postgres-ha")
    deploy = workload(docs)
    assert deploy["kind"] == "Deployment"
    assert deploy["spec"]["replicas"] == 3
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "signer-keys-rwx"
    sources = volumes["secrets"]["projected"]["sources"]
    assert {"name": "signer-db", "items": [{"key": "password", "path": "postgres-password"}]} in [
        s["secret"] for s in sources
    ]
    assert one(docs, "PodDisruptionBudget")["spec"] == {
        "minAvailable": 2,
        "selector": deploy["spec"]["selector"],
    }


def test_sqlite_with_several_replicas_fails_with_a_clear_message() -> None:
    result = run_helm(*template_args("sqlite", "--set", "replicaCount=2"))
    assert result.returncode != 0
    assert "several replicas require the PostgreSQL store" in result.stderr
    assert "replicaCount=2" in result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "config.server.metrics_listen=127.0.0.1:9090"], "listens on loopback only"),
        (["--set", "config.server.http_listen=127.0.0.1:9000"], "config.server.http_listen=127.0.0.1:9000 listens"),
        (["--set", "config.server.http_client_certs=sometimes"], "http_client_certs must be one of"),
        (["--set", "tls.enabled=false"], "set config.server.allow_insecure_plaintext=true"),
        (
            [
                "--set",
                "config.keys.module=pkcs11",
                "--set",
                "config.keys.pkcs11.library_path=/x.so",
                "--set",
                "config.keys.pkcs11.token_label=t",
            ],
            "needs pkcs11.volume",
        ),
        (["--set", "config.keys.data_dir=/elsewhere"], "additional property data_dir is not allowed"),
        (["--set", "config.protection.backend=postgres"], "dsn is required"),
        (
            ["--set", "config.clients[0].name=a", "--set", "config.clients[0].operations[0]=sign_everything"],
            "operations.0 must be one of",
        ),
        (["--set", "tls.existingSecret=", "--set", "tls.certificate=x"], "give all three"),
        (
            ["--set", "config.clients[0].name=a", "--set", "config.clients[0].operators[0].name=alice"],
            "operator alice of config.clients has no secret",
        ),
        (
            [
                "--set",
                "config.clients[0].name=a",
                "--set-json",
                'config.clients[0].operators=[{"name": "alice", "secret": {"file": "/etc/alice"}}]',
            ],
            "additional property secret is not allowed",
        ),
        (["--set", "config.audit.rotate_bytes=1048576"], "stdout cannot be rotated"),
        (["--set", "secrets.auditHmacKey.value=too-short"], "auditHmacKey.value"),
    ],
    ids=[
        "loopback-listen",
        "loopback-rest-listen",
        "unknown-client-certs-mode",
        "plaintext-without-consent",
        "pkcs11-without-library",
        "chart-owned-key",
        "postgres-without-dsn",
        "unknown-operation",
        "partial-inline-tls",
        "operator-without-secret",
        "operator-secret-inline",
        "rotating-stdout",
        "short-audit-hmac-key",
    ],
)
def test_inconsistent_values_fail_rendering(extra: list[str], message: str) -> None:
    result = run_helm(*template_args("default", *extra))
    assert result.returncode != 0, "rendered although it should not"
    assert message.lower() in result.stderr.lower(), result.stderr


def _projected_secrets(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    volumes = {v["name"]: v for v in workload(docs)["spec"]["template"]["spec"]["volumes"]}
    return [s["secret"] for s in volumes["secrets"]["projected"]["sources"]]


def test_the_audit_hmac_key_is_mounted_from_a_secret_and_named_in_the_config() -> None:
    docs = rendered("sqlite")  # secrets.auditHmacKey.existingSecret: signer-audit-hmac
    toml = rendered_toml(docs)
    assert toml["audit"]["hmac_key"] == {"file": "/var/run/signer/audit-hmac-key"}
    assert toml["audit"]["rotate_bytes"] == 104857600
    assert {"name": "signer-audit-hmac", "items": [{"key": "hmac-key", "path": "audit-hmac-key"}]} in (
        _projected_secrets(docs)
    )
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-audit-hmac")]


def test_the_chart_creates_the_audit_hmac_secret_from_a_value_and_without_one_there_is_no_key() -> None:
    key = "9f" * 32
    result = run_helm(*template_args("default", "--set", f"secrets.auditHmacKey.value={key}"))
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    secret = one(docs, "Secret", "-audit-hmac")
    assert base64.b64decode(secret["data"]["hmac-key"]).decode() == key
    assert {"name": secret["metadata"]["name"], "items": [{"key": "hmac-key", "path": "audit-hmac-key"}]} in (
        _projected_secrets(docs)
    )
    assert rendered_toml(docs)["audit"]["hmac_key"] == {"file": "/var/run/signer/audit-hmac-key"}
    plain = rendered("default")
    assert "hmac_key" not in rendered_toml(plain)["audit"]
    assert all(item["path"] != "audit-hmac-key" for s in _projected_secrets(plain) for item in s["items"])
    assert not [d for d in plain if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-audit-hmac")]


def test_pkcs11_mounts_the_library_volume_and_runs_the_sidecar() -> None:
    docs = rendered("pkcs11")
    toml = rendered_toml(docs)
    assert toml["keys"]["pkcs11"]["token_label"] == "validator-signer"  # noqa: S105 (a label)
    assert toml["keys"]["pkcs11"]["pin"] == {"file": "/var/run/signer/pin"}
    spec = workload(docs)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["pkcs11"]["hostPath"]["path"] == "/opt/vendor-hsm"
    mounts = {m["name"]: m for m in signer_container(docs)["volumeMounts"]}
    assert mounts["pkcs11"]["mountPath"] == "/opt/hsm" and mounts["pkcs11"]["readOnly"] is True
    assert toml["keys"]["pkcs11"]["library_path"].startswith(mounts["pkcs11"]["mountPath"] + "/")
    assert [c["name"] for c in spec["containers"]] == ["signer", "hsm-client"]
    pin = volumes["secrets"]["projected"]["sources"][0]["secret"]
    assert pin == {"name": "hsm-user-pin", "items": [{"key": "user-pin", "path": "pin"}]}


# --- hardening, probes, spreading ---------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_IDS)
def test_pod_is_hardened_and_probed(case: str) -> None:
    docs = rendered(case)
    spec = workload(docs)["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    container = signer_container(docs)
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["resources"]["limits"]["memory"]
    assert spec["topologySpreadConstraints"]
    assert "command" not in container and "args" not in container, "the image entrypoint runs the signer"
    one(docs, "PodDisruptionBudget")
    service = one(docs, "Service", "signer-validator-signer")
    rest = {"http"} if case != "pkcs11" else set()  # the REST front is on unless http_listen is null
    assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "metrics"} | rest


def test_rest_port_is_exposed_where_http_listen_is_set() -> None:
    """The REST front (Web3Signer API): container port from http_listen, Service port from
    service.httpPort, https under tls.enabled; none of it when http_listen is null (pkcs11 case)."""
    docs = rendered("postgres-ha")
    ports = {p["name"]: p["containerPort"] for p in signer_container(docs)["ports"]}
    assert ports["http"] == 9443
    service = one(docs, "Service", "signer-validator-signer")
    (http,) = [p for p in service["spec"]["ports"] if p["name"] == "http"]
    assert http == {"name": "http", "port": 9443, "targetPort": "http", "protocol": "TCP", "appProtocol": "https"}
    assert rendered_toml(docs)["server"]["http_listen"] == "0.0.0.0:9443"
    default = rendered("default")
    assert rendered_toml(default)["server"]["http_listen"] == "0.0.0.0:9000"
    assert {p["name"]: p["port"] for p in one(default, "Service", "signer-validator-signer")["spec"]["ports"]}[
        "http"
    ] == 9000
    off = rendered("pkcs11")
    assert "http_listen" not in rendered_toml(off)["server"]
    assert "http" not in {p["name"] for p in signer_container(off)["ports"]}


def test_a_distributed_release_renders_its_peers_and_lets_the_other_participants_in() -> None:
    docs = rendered("distributed")
    config = parse_config(rendered_toml(docs))
    assert config.distributed is not None
    assert config.distributed.id == 2
    assert [(p.id, p.identity) for p in config.distributed.peers] == [(1, "signer-1"), (2, "signer-2"), (3, "signer-3")]
    assert config.server.tls is not None  # peers are recognised by their certificates
    ingress = one(docs, "NetworkPolicy")["spec"]["ingress"]
    peers = [
        r
        for r in ingress
        if r["from"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "validator-signer"}}
    ]
    assert [r["ports"] for r in peers] == [[{"port": "grpc", "protocol": "TCP"}]]
    # Without distributed accounts, no such rule.
    plain = one(rendered("sqlite"), "NetworkPolicy")["spec"]["ingress"]
    assert not [
        r
        for r in plain
        if r["from"][0]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == "validator-signer"
    ]


def test_network_policy_admits_only_labelled_clients_and_prometheus() -> None:
    assert not [d for d in rendered("default") if d["kind"] == "NetworkPolicy"]
    policy = one(rendered("postgres-ha"), "NetworkPolicy")
    grpc_rule, metrics_rule = policy["spec"]["ingress"]
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}, {"port": "http", "protocol": "TCP"}]
    assert grpc_rule["from"] == [
        {
            "podSelector": {"matchLabels": {"validator-signer/client": "true"}},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "validators"}},
        }
    ]
    assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics_rule["from"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}


# --- monitoring resources -----------------------------------------------------------------------


def test_monitoring_resources() -> None:
    docs = rendered("postgres-ha")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    assert monitor["spec"]["selector"]["matchLabels"] == workload(docs)["spec"]["selector"]["matchLabels"]
    rule = one(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    dashboard = one(docs, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["validator-signer.json"]) == json.loads(
        (CHART / "files" / "dashboard.json").read_text()
    )
    assert not [d for d in rendered("default") if d["kind"] in CRD_KINDS]


# --- the image ----------------------------------------------------------------------------------


def test_dockerfile_agrees_with_the_chart() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)[1:]
    assert len(stages) >= 2, "multi-stage build"
    final = stages[-1]
    assert "python:3.11-slim" in dockerfile
    assert "build-essential" not in final and "gcc" not in final, "no build tools in the final image"
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", final, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert entrypoint == ["signer", "serve", "--config", "/etc/signer/signer.toml"]
    user = re.search(r"^USER (\d+)(?::(\d+))?$", final, re.MULTILINE)
    assert user is not None, "a numeric non-root USER, so runAsNonRoot can verify it"
    docs = rendered("default")
    pod_sc = workload(docs)["spec"]["template"]["spec"]["securityContext"]
    assert int(user.group(1)) == pod_sc["runAsUser"] != 0
    config_mount = next(m for m in signer_container(docs)["volumeMounts"] if m["name"] == "config")
    assert config_mount["mountPath"] == entrypoint[-1]
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert ignored[0] != "!*" and "*" in ignored and "!signer/" in ignored
