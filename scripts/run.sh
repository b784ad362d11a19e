#!/usr/bin/env bash
# The main job on its embedded default: set up what is missing, then run the first-run stack
# (embedded broker, private MariaDB with a sample shop and a trickle of changes, one worker with
# its status view, PostgreSQL or SQLite as the target). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m devstack "$@"
