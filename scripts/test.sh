#!/usr/bin/env bash
# Install everything the test suite needs (Debian packages, a venv with the project) and run it.
# Usage: bash scripts/test.sh [pytest args…]      (the README's test command; CI runs it too)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh

VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
# BFL's official Python client, for the client-compatibility test. Without its dependencies: it pins
# pillow==10.4.0, and it works with the project's Pillow (the test shows it).
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps blackforest==0.1.3
exec "$VENV/bin/python" -m pytest "$@"
