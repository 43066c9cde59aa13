#!/usr/bin/env bash
# One entry point for a fresh machine: creates ./.venv on first use (or when
# pyproject.toml changes), installs watcherd with its test extras, then
#   ./dev.sh test [pytest args]      runs the test suite
#   ./dev.sh run --config FILE       runs the daemon (any watcherd command works)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${WATCHERD_VENV:-$here/.venv}"

ensure_venv() {
    if [ ! -x "$venv/bin/watcherd" ] || [ "$here/pyproject.toml" -nt "$venv/.installed" ]; then
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --upgrade pip
        "$venv/bin/python" -m pip install --quiet -e "$here[test]"
        touch "$venv/.installed"
    fi
}

ensure_venv
if [ "${1:-}" = "test" ]; then
    shift
    cd "$here"
    exec "$venv/bin/python" -m pytest "$@"
fi
exec "$venv/bin/watcherd" "$@"
