#!/usr/bin/env bash
# Idempotent set-up of a development or CI machine (Debian/Ubuntu) for sluice:
#   1. MariaDB server programs for the private test/first-run server (devstack/mariadb.py):
#      mariadbd, mariadb-install-db and my_print_defaults (which mariadb-install-db runs).
#   2. .venv with Python 3.11, and the project installed editable with its dev extras.
# Every step checks first; a second run does nothing and takes well under a second or two.
#
# MariaDB: only the packages holding the programs are installed (mariadb-server-core,
# mariadb-client-core). They have no service scripts, so installing them never stops or
# restarts a MariaDB server already running on the machine (mariadb-server's maintainer
# scripts stop/restart the system service). Full mariadb-server is the fallback where those
# package names do not exist.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'setup: %s\n' "$*"; }
die() {
	printf 'setup: ERROR: %s\n' "$*" >&2
	exit 1
}

SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
	SUDO=(sudo)
fi

APT_UPDATED=0
apt_install() {
	command -v apt-get >/dev/null 2>&1 || die "need the packages: $*; no apt-get here, install them by hand"
	if [ "$APT_UPDATED" -eq 0 ]; then
		say "apt-get update"
		"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
		APT_UPDATED=1
	fi
	say "apt-get install $*"
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "$@"
}

# A program on PATH or in the sbin/bin directories (/usr/sbin is not on a user's PATH).
find_prog() {
	local dir found
	# bash's `command -v` may also name a file on PATH that is not executable: check it.
	found=$(command -v "$1" 2>/dev/null) || found=""
	if [ -n "$found" ] && [ -f "$found" ] && [ -x "$found" ]; then
		echo "$found"
		return 0
	fi
	for dir in /usr/sbin /usr/local/sbin /usr/bin /usr/local/bin; do
		if [ -x "$dir/$1" ]; then
			echo "$dir/$1"
			return 0
		fi
	done
	return 1
}

# --- 1. MariaDB server programs ---------------------------------------------------------
mariadb_missing() {
	local prog missing=""
	for prog in mariadbd mariadb-install-db my_print_defaults; do
		find_prog "$prog" >/dev/null || missing="$missing $prog"
	done
	echo "${missing# }"
}

missing=$(mariadb_missing)
if [ -n "$missing" ]; then
	say "MariaDB programs missing: $missing"
	if ! apt_install mariadb-server-core mariadb-client-core; then
		say "falling back to the full mariadb-server package"
		apt_install mariadb-server
	fi
	missing=$(mariadb_missing)
	[ -z "$missing" ] || die "still missing after install: $missing"
	say "installed MariaDB programs: $(find_prog mariadbd)"
else
	say "MariaDB programs present: $(find_prog mariadbd) ($(find_prog mariadb-install-db))"
fi

# --- 2. Python 3.11 virtualenv --------------------------------------------------------
is_py311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }

if [ -x .venv/bin/python ] && is_py311 .venv/bin/python; then
	say ".venv present ($(.venv/bin/python -V 2>&1))"
else
	if [ -e .venv ]; then
		say ".venv is not a Python 3.11 virtualenv: recreating it"
		rm -rf .venv
	fi
	PY=${PYTHON:-}
	if [ -z "$PY" ]; then
		for candidate in python3.11 python3; do
			if command -v "$candidate" >/dev/null 2>&1 && is_py311 "$candidate"; then
				PY=$("$candidate" -c 'import sys; print(sys.executable)')
				break
			fi
		done
	fi
	if [ -z "$PY" ]; then
		apt_install python3.11 python3.11-venv
		PY=$(command -v python3.11) || die "python3.11 not found after install"
	fi
	# Debian's python3.11 lacks ensurepip (needed by venv) until python3.11-venv is installed.
	if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
		apt_install python3.11-venv
	fi
	say "creating .venv with $PY"
	"$PY" -m venv .venv
fi

# --- 3. The project, editable, with dev extras ----------------------------------------
# Reinstalled only when what pip installs from pyproject.toml (build system, [project],
# [tool.setuptools]) changed since the last successful install; lint settings do not count.
stamp_file=.venv/.sluice-setup-stamp
stamp=$(
	.venv/bin/python - <<'PY'
import hashlib, json, tomllib
with open("pyproject.toml", "rb") as fh:
    doc = tomllib.load(fh)
parts = [doc.get("build-system"), doc.get("project"), doc.get("tool", {}).get("setuptools")]
print(hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest())
PY
)
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] &&
	.venv/bin/python -c 'import importlib.metadata as m; m.distribution("sluice")' 2>/dev/null; then
	say "sluice already installed in .venv (pyproject.toml unchanged)"
else
	say "pip install -e '.[dev]' (quiet; takes a while on a fresh .venv)"
	.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	echo "$stamp" >"$stamp_file"
	say "installed sluice and its dev dependencies into .venv"
fi

# --- 4. Report on PostgreSQL (not installed here; tests that need it say so) -----------
if .venv/bin/python -c 'import sys; from devstack.postgres import postgres_available as ok
sys.exit(0 if ok(timeout=2) else 1)' 2>/dev/null; then
	say "PostgreSQL reachable (${SLUICE_PG_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres})"
else
	say "note: PostgreSQL not reachable at" \
		"${SLUICE_PG_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
fi
say "done"
