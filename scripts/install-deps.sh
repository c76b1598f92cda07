#!/usr/bin/env bash
# Installs everything the signer and its test suite need on a fresh Debian machine (idempotent).
# System packages: softhsm2 + opensc (PKCS#11 tests), prometheus (promtool), PostgreSQL server
# binaries (throwaway test servers). Python packages: the project with its dev extra. Tools: helm.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v softhsm2-util >/dev/null 2>&1 || need_apt+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || need_apt+=(opensc)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

PYTHON="${PYTHON:-python3}"
stamp=".deps-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || ! "$PYTHON" -c "import signer" >/dev/null 2>&1; then
  echo "install-deps: pip install -e .[dev]"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi

if [ -x scripts/install-tools.sh ]; then
  scripts/install-tools.sh
fi
