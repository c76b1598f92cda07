#!/usr/bin/env bash
# Install Lodestar 1.5.1 (a real Ethereum consensus client, for the devnet e2e test) into
# <repo>/.tools/lodestar with `npm ci`, from the locked tree in tests/e2e/lodestar/ (package.json +
# package-lock.json: Lodestar's own v1.5.1 lock, the only Lodestar whose packages the npm registry
# reachable here serves completely; see tests/e2e/lodestar.py). Cached: skipped while the installed
# lock equals the committed one. Needs node 20 + npm, and python3,
# make and g++ (node-gyp builds two native modules against the node headers).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="${repo_root}/tests/e2e/lodestar"
dest="${repo_root}/.tools/lodestar"
stamp="${dest}/.installed-lock-sha256"
expected_version="v1.5.1"

log() { printf 'install-lodestar: %s\n' "$*" >&2; }

lodestar_version() {
  # prints a banner; the line "  * Version: v1.5.1/<git describe of the cwd>" carries the version
  (cd "${dest}" && NODE_NO_WARNINGS=1 node_modules/.bin/lodestar --version 2>/dev/null) \
    | grep -m 1 -o 'Version: v[0-9.]*' | cut -d' ' -f2 || true
}

want="$(sha256sum "${src}/package-lock.json" | cut -d' ' -f1)"
# The stamp is written only after a complete install whose binary printed the right version.
if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${want}" && -x "${dest}/node_modules/.bin/lodestar" ]]; then
  log "lodestar ${expected_version} already installed in ${dest} (lock unchanged)"
  exit 0
fi

for tool in node npm python3 make g++; do
  command -v "${tool}" >/dev/null || { log "${tool} is required (scripts/install-deps.sh installs it)"; exit 1; }
done

started=$(date +%s)
rm -rf "${dest}"
mkdir -p "${dest}"
cp "${src}/package.json" "${src}/package-lock.json" "${dest}/"
log "npm ci (Lodestar ${expected_version}, ~800 packages, ~230 MB)"
(cd "${dest}" && npm ci --no-audit --no-fund --loglevel=error)
version="$(lodestar_version)"
if [[ "${version}" != ${expected_version}* ]]; then
  log "unexpected lodestar version '${version}' (want ${expected_version})"
  exit 1
fi
echo "${want}" >"${stamp}"
log "installed lodestar ${version} into ${dest} in $(($(date +%s) - started)) s"
