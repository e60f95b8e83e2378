#!/usr/bin/env bash
# Collector benchmark: one stats slot of BENCH_SERVERS (1000) servers spread over BENCH_CLUSTERS (4)
# throwaway clusters with BENCH_DBS (50) databases each. Prints wall time, collector CPU time and peak
# RSS, rows and rows/s, and the write path against a plain COPY of the same rows.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_test_role
cargo build --release --locked --bins -p pgmon-api -p pgmon-collector -p pgmon-tests
exec target/release/bench_collector
