#!/usr/bin/env bash
# Install everything the test suite needs (Debian packages, a venv with the project) and run it.
# Usage: bash scripts/test.sh [pytest args…]      (the README's test command; CI runs it too)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh

VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
exec "$VENV/bin/python" -m pytest "$@"
