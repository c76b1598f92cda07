"""End to end (issue 8): every metric the Grafana dashboard and the alert rules query exists in a live server.

The PromQL of ``helm/validator-signer/files/dashboard.json`` (panel and template-variable queries)
and ``files/alerts.yaml`` (rule expressions) is read here; each ``signer_*`` name in it must be a
sample name of a live ``signer serve --dev`` process's ``/metrics`` after the traffic of
tests/e2e/test_metrics_e2e.py (a histogram is queried through its ``_bucket``/``_sum``/``_count``
series: a bare histogram name in PromQL selects nothing, so it fails here). Labels the queries
aggregate or match on (``by (...)``, ``{label=...}``) must exist on those series, except the ones
Prometheus adds at scrape time. Names mentioned in prose (descriptions, runbooks) must name a family.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.e2e.harness import SignerProcess
from tests.e2e.test_metrics_e2e import DEV_KEYS, RATE_LIMIT, Samples, Traffic, drive_traffic, scrape
from tests.support import REPO_ROOT

pytestmark = pytest.mark.e2e

FILES = REPO_ROOT / "helm" / "validator-signer" / "files"
DASHBOARD = FILES / "dashboard.json"
ALERTS = FILES / "alerts.yaml"

TARGET_LABELS = frozenset({"namespace", "job", "instance", "pod", "container", "service", "endpoint"})
"""Labels Prometheus (or the Operator's ServiceMonitor) attaches at scrape time, not the signer."""

_METRIC = re.compile(r"\bsigner_[A-Za-z0-9_:]+")
_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _dashboard_queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and isinstance(value.get("query"), str):
                yield value["query"]  # template variables
            elif key == "query" and isinstance(value, str) and "signer_" in value:
                yield value
            else:
                yield from _dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_queries(item)


def _alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def queries() -> dict[str, list[str]]:
    """source -> PromQL expressions."""
    found = {"dashboard.json": list(_dashboard_queries(json.loads(DASHBOARD.read_text(encoding="utf-8"))))}
    found["alerts.yaml"] = [str(rule["expr"]) for rule in _alert_rules()]
    return found


def prose() -> str:
    """Every alert annotation, and every dashboard string that is not a query."""
    texts = [str(v) for rule in _alert_rules() for v in rule.get("annotations", {}).values()]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))

    def strings(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key not in ("expr", "query"):
                    yield from strings(value)
        elif isinstance(node, list):
            for item in node:
                yield from strings(item)
        elif isinstance(node, str):
            yield node

    texts += list(strings(dashboard))
    return "\n".join(texts)


def queried_names() -> list[tuple[str, str]]:
    """(source, metric name) for every signer_* name in a query, sorted, unique."""
    pairs = {(source, name) for source, exprs in queries().items() for e in exprs for name in _METRIC.findall(e)}
    return sorted(pairs)


def labels_used(expr: str) -> set[str]:
    used: set[str] = set()
    for group in _BY.findall(expr):
        used |= {label.strip() for label in group.split(",") if label.strip()}
    for group in _MATCHERS.findall(expr):
        used |= set(_MATCHER_LABEL.findall(group))
    return used - TARGET_LABELS


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Samples]:
    proc = SignerProcess.dev(
        tmp_path_factory.mktemp("dashboard-live"), dev_keys=DEV_KEYS, extra_args=["--rate-limit", RATE_LIMIT]
    ).start()
    try:
        traffic: Traffic = drive_traffic(proc)
        assert traffic.rate_limited_after > 0 and traffic.module_failure_state > 0, traffic
        yield scrape(proc)[1]
    finally:
        assert proc.terminate() == 0, proc.logs


def test_the_files_query_metrics() -> None:
    """The extraction itself works (an empty list would make every other test pass)."""
    by_source: dict[str, set[str]] = {}
    for source, name in queried_names():
        by_source.setdefault(source, set()).add(name)
    assert len(by_source.get("dashboard.json", ())) >= 10, by_source
    assert len(by_source.get("alerts.yaml", ())) >= 5, by_source
    assert labels_used('sum by (method, le) (rate(x_bucket{namespace="a", outcome="b"}[5m]))') == {
        "method", "le", "outcome"
    }  # fmt: skip


@pytest.mark.parametrize(("source", "name"), queried_names(), ids=[f"{s}:{n}" for s, n in queried_names()])
def test_queried_metric_exists_live(live: Samples, source: str, name: str) -> None:
    assert name in live, f"{source} queries {name}, which the live /metrics does not have: {sorted(live)}"


@pytest.mark.parametrize("source", sorted(queries()))
def test_queried_labels_exist_live(live: Samples, source: str) -> None:
    problems: list[str] = []
    for expr in queries()[source]:
        names = set(_METRIC.findall(expr))
        present = {label for name in names for labels, _ in live.get(name, []) for label in labels}
        missing = labels_used(expr) - present
        if names and missing:
            problems.append(f"{sorted(missing)} not on {sorted(names)} in: {expr}")
    assert not problems, "\n".join(problems)


def _family_exists(live: Samples, name: str) -> bool:
    return name in live or any(name + suffix in live for suffix in _HISTOGRAM_SUFFIXES)


@pytest.mark.parametrize("name", sorted(set(_METRIC.findall(prose()))))
def test_metric_named_in_prose_exists_live(live: Samples, name: str) -> None:
    assert _family_exists(live, name), f"{name} is named in the dashboard or an alert; /metrics has no such family"
