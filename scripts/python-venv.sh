#!/usr/bin/env bash
# Creates the Python venv the `run` tests wrap (alembic + SQLAlchemy +
# psycopg2, as in the incident), idempotently: an existing venv that already
# imports all three is left alone. Prints the venv's python path on stdout.
#
#   bash scripts/python-venv.sh [VENV_DIR]      # default: target/py
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-target/py}"
python="$venv/bin/python"
check='import alembic, sqlalchemy, psycopg2'

if [[ -x "$python" ]] && "$python" -c "$check" >/dev/null 2>&1; then
  echo "$(cd "$venv" && pwd)/bin/python"
  exit 0
fi

base="$(command -v python3 || true)"
if [[ -z "$base" ]]; then
  echo "python3 not found: install it (apt-get install python3 python3-venv)" >&2
  exit 1
fi
mkdir -p "$(dirname "$venv")"
# Another test process may be creating the same venv: serialize on a lock file.
exec 9>"$venv.lock"
flock 9
if ! { [[ -x "$python" ]] && "$python" -c "$check" >/dev/null 2>&1; }; then
  if ! "$base" -m venv "$venv" >&2; then
    echo "python3 -m venv failed: on Debian/Ubuntu install python3-venv" >&2
    exit 1
  fi
  "$python" -m pip install -q --disable-pip-version-check alembic sqlalchemy psycopg2-binary >&2
  "$python" -c "$check"
fi
echo "$(cd "$venv" && pwd)/bin/python"
