#!/usr/bin/env bash
# Web UI benchmark in Chromium: the fleet page with 1,000 servers (first render and refresh) and a
# server page over a year of history. Builds the UI and the binaries, generates a throwaway store,
# prints median and slowest of five runs each.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_packages chromium
ensure_web_build
ensure_test_role
export PGMON_TEST_PG_URL="${PGMON_TEST_PG_URL:-postgres://pgmon_test:pgmon_test@127.0.0.1:5432/postgres}"
cargo build --release --locked --bins -p pgmon-api -p pgmon-tests
exec target/release/bench_web
