"""Alerts and dashboard against the real promtool and the real PrometheusMonitor exposition.

- `promtool check rules` / `promtool test rules` on helm/validator-signer/files/alerts.yaml and its
  unit tests (helm/validator-signer/tests/alerts_test.yaml), with a firing and a quiet case per alert;
- every metric the alerts and the dashboard query exists in PrometheusMonitor's exposition after one
  event of each kind (so a renamed metric breaks here, not in production);
- `promtool check metrics` accepts that exposition.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from signer.observability.metrics import PrometheusMonitor
from tests.support import REPO_ROOT, markdown_anchors, missing_component
from tests.unit.test_metrics import record_one_of_each

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "helm" / "validator-signer"
ALERTS = CHART / "files" / "alerts.yaml"
ALERT_TESTS = CHART / "tests" / "alerts_test.yaml"
DASHBOARD = CHART / "files" / "dashboard.json"

METRIC_RE = re.compile(r"\bsigner_[a-z0-9_]+\b")
PANEL_TOPICS = {
    "requests": "signer_requests_total",
    "outcomes": "sum by (outcome) (rate(signer_requests_total",
    "latency percentiles": "histogram_quantile(0.99, sum by (le) (rate(signer_request_duration_seconds",
    "signing latency": "signer_signing_duration_seconds_bucket",
    "batch sizes": "signer_batch_size_bucket",
    "refusals by offence": "sum by (offence) (increase(signer_protection_refusals_total",
    "store latency": "signer_protection_store_duration_seconds_bucket",
    "per-client rate limiting": "sum by (client) (rate(signer_rate_limited_total",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        missing_component("promtool (Debian package prometheus)")
    assert found is not None
    return found


def run_promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([promtool(), *args], input=stdin, capture_output=True, timeout=60, check=False)


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def used_metrics() -> list[tuple[str, str]]:
    used = {("alerts", name) for rule in alert_rules() for name in METRIC_RE.findall(rule["expr"])}
    used |= {("dashboard", name) for expr in dashboard_exprs() for name in METRIC_RE.findall(expr)}
    return sorted(used)


def exposed_sample_names() -> set[str]:
    monitor = PrometheusMonitor()
    record_one_of_each(monitor)
    return {
        sample.name for family in text_string_to_metric_families(monitor.render().decode()) for sample in family.samples
    }


# --- promtool -----------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout.decode()


def test_promtool_test_rules() -> None:
    result = run_promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert "SUCCESS" in result.stdout.decode()


def test_promtool_test_rules_catches_a_broken_alert(tmp_path: Path) -> None:
    """The unit tests are strict enough to fail: raise one threshold and they must."""
    broken = ALERTS.read_text().replace("> 0.1\n", "> 10\n")
    assert broken != ALERTS.read_text()
    (tmp_path / "files").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "files" / "alerts.yaml").write_text(broken)
    (tmp_path / "tests" / "alerts_test.yaml").write_text(ALERT_TESTS.read_text())
    result = run_promtool("test", "rules", str(tmp_path / "tests" / "alerts_test.yaml"))
    assert result.returncode != 0
    assert "SignerSigningLatencyHigh" in result.stdout.decode() + result.stderr.decode()


@pytest.mark.parametrize("alert", [r["alert"] for r in alert_rules()])
def test_alert_has_a_runbook_and_a_firing_and_a_quiet_unit_test(alert: str) -> None:
    rule = next(r for r in alert_rules() if r["alert"] == alert)
    runbook = rule["annotations"].get("runbook", "")
    assert runbook.strip() and "\n" not in runbook.strip(), "one runbook line"
    assert rule["labels"]["severity"] in {"warning", "critical"}
    cases = [
        case
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == alert
    ]
    assert any(case["exp_alerts"] for case in cases), "no test where it fires"
    assert any(not case["exp_alerts"] for case in cases), "no test where it stays quiet"


@pytest.mark.parametrize("alert", [r["alert"] for r in alert_rules()])
def test_alert_runbook_points_to_its_section_in_operations_md(alert: str) -> None:
    runbook = next(r for r in alert_rules() if r["alert"] == alert)["annotations"]["runbook"]
    match = re.search(r"Runbook: docs/OPERATIONS\.md#([a-z0-9-]+)$", runbook.strip())
    assert match, f"{alert}: the runbook does not end with 'Runbook: docs/OPERATIONS.md#<anchor>'"
    assert match.group(1) == alert.lower()
    assert match.group(1) in markdown_anchors(REPO_ROOT / "docs" / "OPERATIONS.md"), "no such section"


def test_the_expected_alerts_exist() -> None:
    assert {r["alert"] for r in alert_rules()} == {
        "SignerSlashingProtectionRefusals",
        "SignerSigningLatencyHigh",
        "SignerRateLimitingSustained",
        "SignerProtectionStoreUnavailable",
        "SignerNotReady",
        "SignerKeyModuleErrors",
    }


def test_promtool_check_metrics_accepts_the_exposition() -> None:
    monitor = PrometheusMonitor()
    record_one_of_each(monitor)
    result = run_promtool("check", "metrics", stdin=monitor.render())
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


# --- names in alerts and dashboard exist --------------------------------------------------------


@pytest.mark.parametrize(("source", "metric"), used_metrics(), ids=[f"{s}-{m}" for s, m in used_metrics()])
def test_queried_metric_is_exposed(source: str, metric: str) -> None:
    assert metric in exposed_sample_names(), f"{source} queries {metric}: not exposed"


def test_names_are_found_at_all() -> None:
    """Guard the extraction above: both sources really query metrics."""
    sources = {source for source, _ in used_metrics()}
    assert sources == {"alerts", "dashboard"}
    assert len(used_metrics()) >= 15


@pytest.mark.parametrize("topic", list(PANEL_TOPICS))
def test_dashboard_has_a_panel_for(topic: str) -> None:
    assert any(PANEL_TOPICS[topic] in expr for expr in dashboard_exprs()), topic


def test_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
