#!/usr/bin/env bash
# Installs everything the signer and its test suite need on a fresh Debian machine (idempotent).
# System packages: softhsm2 + opensc (PKCS#11 tests), prometheus (promtool), PostgreSQL server
# binaries (throwaway test servers), g++ (Lodestar's native modules). Python packages: the project
# with its dev extra. Tools: helm; Lodestar 1.5.1 for the devnet e2e test (scripts/install-lodestar.sh).
# `install-deps.sh --serve` (make serve) installs only what running the signer needs: no test tools.
set -euo pipefail
SERVE_ONLY=0
if [ "${1:-}" = "--serve" ]; then SERVE_ONLY=1; fi
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PYTHON="${PYTHON:-python3}"

need_apt=()
# A fresh Debian has neither make (the README's commands) nor npm (helm comes from the npm
# registry, scripts/install-tools.sh) nor pip for its python3.
command -v make >/dev/null 2>&1 || need_apt+=(make)
"$PYTHON" -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if [ "$SERVE_ONLY" -eq 0 ]; then
  command -v npm >/dev/null 2>&1 || need_apt+=(npm)
  command -v softhsm2-util >/dev/null 2>&1 || need_apt+=(softhsm2)
  command -v pkcs11-tool >/dev/null 2>&1 || need_apt+=(opensc)
  command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
  if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need_apt+=(postgresql)
  fi
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# Debian's own python3 is "externally managed" (PEP 668): pip refuses to install into it unless
# told to. Outside a virtualenv on such an interpreter, install into it anyway (/usr/local).
if "$PYTHON" -c 'import os, sys, sysconfig
managed = os.path.isfile(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)'; then
  export PIP_BREAK_SYSTEM_PACKAGES=1
fi
stamp=".deps-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || ! "$PYTHON" -c "import signer" >/dev/null 2>&1; then
  echo "install-deps: pip install -e .[dev]"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
  # pyenv only exposes new console scripts (signer, ruff, ...) after a rehash.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
fi

if [ "$SERVE_ONLY" -eq 1 ]; then exit 0; fi
if [ -x scripts/install-tools.sh ]; then
  scripts/install-tools.sh
fi
# Lodestar (the devnet e2e test's consensus client) builds two native modules with node-gyp.
if [ -x scripts/install-lodestar.sh ]; then
  missing_build=()
  command -v g++ >/dev/null 2>&1 || missing_build+=(g++)
  if [ "${#missing_build[@]}" -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing_build[@]}"
  fi
  scripts/install-lodestar.sh
fi
