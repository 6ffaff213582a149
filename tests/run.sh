#!/usr/bin/env bash
# The one test command: lint, format check, type check and the test suite.
#
#   bash tests/run.sh [pytest arguments...]
#
# It prepares what it needs: a .venv with the project and its test extra, and the
# PostgreSQL and Redis server binaries and Chromium for the browser tests (Debian
# packages, installed when running as root).
# The pytest session starts its own throwaway servers (see tests/services.py).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# --- Python environment --------------------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
# Reinstall only when the venv is new or pyproject.toml changed since the last install.
stamp=.venv/.modelreg-test-install
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
    # -qq: errors only (build back-end chatter and notices stay out of the test log).
    .venv/bin/python -m pip install -qq --disable-pip-version-check -e '.[test]'
    touch "$stamp"
fi

# --- Server binaries -----------------------------------------------------------------
have_initdb() {
    command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

if ! have_initdb || ! command -v redis-server >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "Installing the postgresql, redis-server and chromium packages..." >&2
        apt-get update -qq
        # Debian's postgresql package may create and start a cluster on port 5432; the
        # tests do not use it: they start their own servers on free ports.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            postgresql redis-server chromium >/dev/null
    else
        echo "warning: PostgreSQL (initdb), redis-server or chromium not found; install the" \
            "Debian packages 'postgresql', 'redis-server' and 'chromium' (as root)" >&2
    fi
fi

# --- Checks --------------------------------------------------------------------------
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
