#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests that start
# their own throwaway PostgreSQL clusters. Used by CI and by the README.
set -euo pipefail
cd "$(dirname "$0")/.."
# The `run` tests wrap a real alembic + SQLAlchemy + psycopg2 (from PyPI).
if [[ -z "${LOCKSMITH_TEST_PYTHON:-}" ]]; then
  echo "--- python venv for the run tests (alembic, SQLAlchemy, psycopg2)"
  LOCKSMITH_TEST_PYTHON="$(bash scripts/python-venv.sh)"
  export LOCKSMITH_TEST_PYTHON
fi
# The other PostgreSQL majors for the conformance test (installed by setup.sh;
# idempotent, so this only lists them when they are there).
if [[ -z "${LOCKSMITH_PG_BINS:-}" ]]; then
  LOCKSMITH_PG_BINS=$(bash scripts/pg-versions.sh | paste -sd: -)
  export LOCKSMITH_PG_BINS
fi
# The guard's scenarios again on the newest major (tests start their servers
# from LOCKSMITH_PG_BIN). The standby tests stay on Debian's server: the npm
# builds ship no pg_basebackup.
newest=$(tr ':' '\n' <<<"$LOCKSMITH_PG_BINS" | grep -E '/18/' | head -n 1 || true)
guard_tests=(-p pg-locksmith --test apply --test apply_blockers --test faults --test hold
  --test online --test online_retype --test online_batches --test run_guard
  -p pg-locksmith-pg --test guard)
# The online type change and batches on the oldest major too (catalogs differ:
# PostgreSQL 18 keeps NOT NULL as constraints, 13 lacks what 14 added).
oldest=$(tr ':' '\n' <<<"$LOCKSMITH_PG_BINS" | grep -E '/13/' | head -n 1 || true)
online_tests=(-p pg-locksmith --test online --test online_retype --test online_batches)
# The packaging tests (tests/ship.rs) build the wheel into this target dir,
# which relinks target/*/locksmith: run alone and last, never while other
# tests spawn that binary.
ship=(-p pg-locksmith --test ship)
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast -E 'not binary_id(pg-locksmith::ship)'
  cargo test --workspace --doc --locked
  if [[ -n "$newest" ]]; then
    echo "--- the guard's scenarios on PostgreSQL 18 ($newest)"
    LOCKSMITH_PG_BIN="$newest" cargo nextest run --locked --no-fail-fast "${guard_tests[@]}"
  fi
  if [[ -n "$oldest" ]]; then
    echo "--- the online steps on PostgreSQL 13 ($oldest)"
    LOCKSMITH_PG_BIN="$oldest" cargo nextest run --locked --no-fail-fast "${online_tests[@]}"
  fi
  echo "--- packaging: pip and pre-commit from PyPI, alone"
  cargo nextest run --locked --no-fail-fast "${ship[@]}"
else
  cargo test --workspace --locked --no-fail-fast
  if [[ -n "$newest" ]]; then
    LOCKSMITH_PG_BIN="$newest" cargo test --locked --no-fail-fast "${guard_tests[@]}"
  fi
fi
