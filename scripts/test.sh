#!/usr/bin/env bash
# Runs the whole test suite against real services: installs and starts what the tests need
# (PostgreSQL, PostgreSQL 12-18 binaries from npm, sshd binaries, Python's cryptography for the
# Fernet interop test, openssl for throwaway certificates, schemathesis, Node.js and Chromium for
# the web UI's browser tests),
# builds, then runs `cargo test` for the whole workspace. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
ensure_packages gcc openssh-server openssh-client procps curl iproute2 util-linux prometheus chromium openssl
ensure_postgres
python3 -c 'import cryptography' 2>/dev/null || ensure_packages python3-cryptography
# schemathesis, pinned, in a virtualenv of its own (tests/tests/schemathesis.rs runs it).
ST_VERSION=4.32.5
if ! target/st-venv/bin/st --version 2>/dev/null | grep -q "$ST_VERSION"; then
    python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || ensure_packages python3-venv
    log "installing schemathesis $ST_VERSION"
    rm -rf target/st-venv
    python3 -m venv target/st-venv
    target/st-venv/bin/pip install -q "schemathesis==$ST_VERSION"
fi

# PostgreSQL 12 to 18 for the version matrix (tests/tests/activity.rs, collector.rs), cached.
export PGMON_TEST_PG_MAJORS_DIR
PGMON_TEST_PG_MAJORS_DIR=$(scripts/pg-majors.sh)

# A superuser for the tests, with a password, so that they work whatever pg_hba.conf says about TCP.
ensure_test_role

# Databases left behind by interrupted earlier runs.
pg_super -At -c "SELECT datname FROM pg_database WHERE datname LIKE 'pgmon\_test\_%'" | while read -r db; do
    pg_super -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || true
done

# The web UI (tests/tests/web.rs drives it in Chromium with playwright-core, from web/node_modules).
ensure_web_build

log "building"
cargo build --workspace --bins --tests --locked
log "running the test suite"
cargo test --workspace --locked --no-fail-fast -- --test-threads=4
