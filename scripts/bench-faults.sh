#!/usr/bin/env bash
# Fault injection: 100 trials (LOCKSMITH_FAULT_TRIALS) of kill -9 or a server
# restart at a random moment of `locksmith apply` over a folder mixing
# transactional migrations and concurrent index builds, each followed by one
# rerun. Fails on the first broken invariant (see
# crates/locksmith/tests/fault_injection.rs); otherwise rewrites the "faults"
# section of docs/benchmarks.md and prints it.
#
#   bash scripts/bench-faults.sh
#   LOCKSMITH_FAULT_TRIALS=300 LOCKSMITH_FAULT_SEED=42 bash scripts/bench-faults.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -p pg-locksmith --test fault_injection -- --ignored --nocapture fault_injection_benchmark
