#!/usr/bin/env bash
# Affinity benchmark: BENCH_SERVERS (1000) servers over BENCH_CLUSTERS (2) throwaway clusters with
# pg_stat_statements, collected by 2 and then 4 running collectors (BENCH_INTERVAL-second slots, 15):
# share of servers per collector, statements slots lost through a graceful restart and a kill -9, and
# servers moved after the kill.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_test_role
cargo build --release --locked --bins -p pgmon-api -p pgmon-collector -p pgmon-tests
exec target/release/bench_affinity
