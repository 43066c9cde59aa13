#!/usr/bin/env bash
# One entry point for a fresh machine: creates ./.venv on first use (or when
# pyproject.toml or constraints.txt changes), installs watcherd with its test
# extras at the tested versions (constraints.txt), then
#   ./dev.sh test [pytest args]      runs the test suite
#   ./dev.sh lint                    runs ruff and mypy, as CI does before the tests
#   ./dev.sh run --config FILE       runs the daemon (any watcherd command works)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${WATCHERD_VENV:-$here/.venv}"

ensure_venv() {
    if [ ! -x "$venv/bin/watcherd" ] || [ "$here/pyproject.toml" -nt "$venv/.installed" ] \
            || [ "$here/constraints.txt" -nt "$venv/.installed" ]; then
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --upgrade pip
        (cd "$here" && "$venv/bin/python" -m pip install --quiet -c constraints.txt -e '.[test]')
        touch "$venv/.installed"
    fi
}

ensure_venv
if [ "${1:-}" = "test" ]; then
    shift
    cd "$here"
    exec "$venv/bin/python" -m pytest "$@"
fi
if [ "${1:-}" = "lint" ]; then
    cd "$here"
    "$venv/bin/ruff" check watcherd tests bench
    exec "$venv/bin/mypy"  # the files and settings are in pyproject.toml
fi
exec "$venv/bin/watcherd" "$@"
