#!/usr/bin/env bash
# From a fresh Debian/Ubuntu machine with Rust installed to a running pgmon, for development:
# installs and starts PostgreSQL, creates the pam_stats role and database, writes a config and secrets
# under ./.pgmon/, builds in release, migrates, creates an admin (password printed once), registers the
# local PostgreSQL as the first monitored server, starts pgmon-api and pgmon-collector in the background
# (logs in ./.pgmon/), builds the web UI (web/, with Node.js) and prints its URL and the Swagger UI's. Running it again rebuilds and restarts; it never
# overwrites secrets, the config or existing users.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DIR="$PWD/.pgmon"
LISTEN="${PGMON_LISTEN:-127.0.0.1:8000}"
mkdir -p "$DIR"
chmod 700 "$DIR"

command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
ensure_packages gcc curl openssl procps
ensure_postgres

# The store: a pam_stats role with a generated password, owning the pam_stats database.
if [ ! -s "$DIR/store_password" ]; then
    (umask 077; openssl rand -hex 24 > "$DIR/store_password")
fi
STORE_PW=$(cat "$DIR/store_password")
pg_super <<SQL
SELECT 'CREATE ROLE pam_stats LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pam_stats') \gexec
ALTER ROLE pam_stats PASSWORD '$STORE_PW';
SELECT 'CREATE DATABASE pam_stats OWNER pam_stats' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'pam_stats') \gexec
SQL

# A least-privilege monitoring role on the local server (what pgmon uses to watch it).
if [ ! -s "$DIR/monitor_password" ]; then
    (umask 077; openssl rand -hex 24 > "$DIR/monitor_password")
fi
MON_PW=$(cat "$DIR/monitor_password")
pg_super <<SQL
SELECT 'CREATE ROLE pgmon_monitor LOGIN CONNECTION LIMIT 10' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgmon_monitor') \gexec
ALTER ROLE pgmon_monitor PASSWORD '$MON_PW';
GRANT pg_monitor TO pgmon_monitor;
SQL

CONFIG="$DIR/pgmon.toml"
if [ ! -f "$CONFIG" ]; then
    cat > "$CONFIG" <<TOML
# Development config written by scripts/quickstart.sh.
[store]
url = "postgres://pam_stats:$STORE_PW@127.0.0.1:5432/pam_stats"

[api]
listen = "$LISTEN"
# Plain HTTP on localhost: browsers drop Secure cookies there.
secure_cookies = false
web_dir = "$PWD/web/dist"

[collector]
spool_dir = "$DIR/spool"

[secrets]
jwt_secret_file = "$DIR/jwt_secret"
encryption_key_file = "$DIR/encryption_key.key"
TOML
    chmod 600 "$CONFIG"
fi
# Configs written before the spool existed: keep it under .pgmon/ (/var/lib/pgmon is the package's).
if ! grep -q '^spool_dir' "$CONFIG"; then
    if grep -q '^\[collector\]' "$CONFIG"; then
        sed -i "s|^\[collector\]\$|[collector]\nspool_dir = \"$DIR/spool\"|" "$CONFIG"
    else
        printf '\n[collector]\nspool_dir = "%s/spool"\n' "$DIR" >> "$CONFIG"
    fi
fi
LISTEN=$(sed -n 's/^listen = "\(.*\)"/\1/p' "$CONFIG" | head -n 1)
# Configs written before the web UI existed: point them at it.
grep -q '^web_dir' "$CONFIG" || sed -i "s|^\[api\]\$|[api]\nweb_dir = \"$PWD/web/dist\"|" "$CONFIG"

ensure_web_build

log "building (release)"
cargo build --release --locked --bins
API="$PWD/target/release/pgmon-api"
COLLECTOR="$PWD/target/release/pgmon-collector"

"$API" --config "$CONFIG" init-secrets
"$API" --config "$CONFIG" migrate

ADMIN_PW=""
if ! pg_super -d pam_stats -At -c "SELECT 1 FROM users WHERE login = 'admin'" | grep -q 1; then
    ADMIN_PW=$(openssl rand -base64 18 | tr -d '/+=' | cut -c1-20)
    printf '%s' "$ADMIN_PW" | "$API" --config "$CONFIG" user add admin --role admin >/dev/null
fi

stop() {
    local pidfile="$DIR/$1.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill "$(cat "$pidfile")" || true
        for _ in $(seq 1 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$pidfile"
}
start() {
    local name=$1; shift
    stop "$name"
    nohup "$@" >>"$DIR/$name.log" 2>&1 </dev/null &
    echo $! > "$DIR/$name.pid"
}

log "starting pgmon-api and pgmon-collector"
start api "$API" --config "$CONFIG" serve
start collector "$COLLECTOR" --config "$CONFIG" run
BASE="http://$LISTEN"
for _ in $(seq 1 100); do
    curl -fsS "$BASE/api/health" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS "$BASE/api/health" >/dev/null || die "pgmon-api did not come up; see $DIR/api.log"

# The local PostgreSQL as the first monitored server (first run only: it needs the new admin's password).
if [ -n "$ADMIN_PW" ]; then
    TOKEN=$(curl -fsS -X POST "$BASE/token" --data-urlencode "username=admin" --data-urlencode "password=$ADMIN_PW" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    python3 - "$MON_PW" > "$DIR/server.json" <<'PY'
import json, sys
print(json.dumps({"name": "local", "host": "127.0.0.1", "port": 5432, "dbname": "postgres",
                  "user": "pgmon_monitor", "password": sys.argv[1], "sslmode": "prefer",
                  "description": "the PostgreSQL on this machine"}))
PY
    chmod 600 "$DIR/server.json"
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$BASE/servers" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' --data @"$DIR/server.json")
    rm -f "$DIR/server.json"
    case "$code" in
        200|201|409) ;;
        *) log "registering the local server answered HTTP $code (see $DIR/api.log)" ;;
    esac
fi

echo
echo "pgmon is running (logs: $DIR/api.log, $DIR/collector.log; stop: kill \$(cat $DIR/*.pid))"
if [ -n "$ADMIN_PW" ]; then
    echo "admin login: admin / $ADMIN_PW   (shown once; change it with: $API --config $CONFIG user passwd admin)"
else
    echo "admin login: admin (already created on an earlier run)"
fi
echo "Web UI:     $BASE/"
echo "Swagger UI: $BASE/docs"
