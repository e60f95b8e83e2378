#!/usr/bin/env bash
# Statements benchmark: a server with 5,000 statements and 500 MB of query text; per slot of a running
# collector: wall time, collector CPU and RSS, bytes from the server; against SELECT * FROM
# pg_stat_statements. BENCH_STATEMENTS and BENCH_TEXT_KB change the size.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_test_role
cargo build --release --locked --bins -p pgmon-collector -p pgmon-tests
exec target/release/bench_statements
