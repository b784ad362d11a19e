#!/usr/bin/env bash
# The whole check, as CI runs it (.ci/run): set-up, lint, format, types, then pytest.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -x tests/unit
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*"; }

step "setup"
bash scripts/setup.sh

step "ruff check"
.venv/bin/ruff check .

step "ruff format --check"
.venv/bin/ruff format --check .

step "mypy"
.venv/bin/mypy

step "pytest"
status=0
.venv/bin/python -m pytest -ra "$@" || status=$?
if [ "$status" -eq 5 ]; then
	printf '\nFAILED: pytest collected no tests (exit 5); a test run that runs nothing is a failure.\n' >&2
	exit 1
fi
if [ "$status" -ne 0 ]; then
	printf '\nFAILED: pytest exited with status %s\n' "$status" >&2
fi
exit "$status"
