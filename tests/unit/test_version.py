"""The version is written once, in signer/__init__.py; everything that shows one derives from it or
is checked against it here (package metadata, build_info metric, admin Status, Helm appVersion,
image tags in the docs, the newest CHANGELOG release)."""

from __future__ import annotations

import ast
import re
import tomllib

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import signer
from signer.observability.metrics import PrometheusMonitor
from tests.support import REPO_ROOT

VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
IMAGE_TAG_RE = re.compile(r"validator-signer:([0-9][0-9A-Za-z.+-]*)")
DOCS_WITH_IMAGE_TAGS = ["README.md", "Dockerfile", "helm/README-deploy.md", "docs/OPERATIONS.md"]


def test_the_version_is_a_release_number() -> None:
    assert VERSION_RE.match(signer.__version__), signer.__version__


def test_pyproject_reads_the_version_from_the_package() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"], "pyproject.toml writes a second version"
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "signer.__version__"}
    # setuptools reads the attribute statically when it is a literal: keep it one.
    tree = ast.parse((REPO_ROOT / "signer" / "__init__.py").read_text(encoding="utf-8"))
    literals = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__version__"]
        and isinstance(node.value, ast.Constant)
    ]
    assert literals == [signer.__version__]


def test_build_info_reports_the_package_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the metadata of whatever distribution happens to be installed: the code's own version."""
    monkeypatch.setattr(signer, "__version__", "9.8.7-test")
    monitor = PrometheusMonitor()
    samples = [
        sample
        for family in text_string_to_metric_families(monitor.render().decode())
        for sample in family.samples
        if sample.name == "signer_build_info"
    ]
    assert [s.labels["version"] for s in samples] == ["9.8.7-test"]


def test_helm_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((REPO_ROOT / "helm" / "validator-signer" / "Chart.yaml").read_text(encoding="utf-8"))
    assert str(chart["appVersion"]) == signer.__version__


def test_helm_example_values_pin_the_package_version() -> None:
    tags = []
    for path in sorted((REPO_ROOT / "helm" / "validator-signer" / "ci").glob("*.yaml")):
        tag = (yaml.safe_load(path.read_text(encoding="utf-8")).get("image") or {}).get("tag")
        if tag:
            tags.append((path.name, str(tag)))
    assert all(tag == signer.__version__ for _, tag in tags), tags


@pytest.mark.parametrize("name", DOCS_WITH_IMAGE_TAGS)
def test_image_tags_in_the_docs_are_the_package_version(name: str) -> None:
    tags = IMAGE_TAG_RE.findall((REPO_ROOT / name).read_text(encoding="utf-8"))
    assert tags, f"{name}: no validator-signer:<version> tag found (update DOCS_WITH_IMAGE_TAGS)"
    assert set(tags) == {signer.__version__}, f"{name}: {sorted(set(tags))}"


def test_changelog_newest_release_is_the_package_version() -> None:
    text = (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert headings[:1] == ["Unreleased"], "the CHANGELOG starts with an Unreleased section"
    releases = [h for h in headings if h != "Unreleased"]
    assert releases and releases[0] == signer.__version__, releases
    assert re.search(rf"^## \[{re.escape(signer.__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", text, re.MULTILINE)
