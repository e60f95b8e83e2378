#!/usr/bin/env bash
# Prints /api/health p50/p99 while 16 clients log in continuously, and pgmon-api RSS idle and under load.
# BENCH_SECS sets the storm's length (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_test_role
cargo build --release --locked --bins -p pgmon-api -p pgmon-tests
exec target/release/bench_auth
