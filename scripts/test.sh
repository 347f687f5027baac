#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests that start
# their own throwaway PostgreSQL clusters. Used by CI and by the README.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --doc --locked
else
  cargo test --workspace --locked --no-fail-fast
fi
