#!/usr/bin/env bash
# Runs schemathesis against a real pgmon-api inside a network namespace of its own (`unshare -n`,
# loopback only), with a throwaway PostgreSQL there as its store and as the monitored server: the
# fuzzer registers servers with any host it invents, and pgmon connects to them, so nothing must be
# able to leave the machine. Called by tests/tests/schemathesis.rs, which asserts its exit status.
#
# Usage (as root): unshare -n bash tests/schemathesis-isolated.sh BIN_DIR PG_BIN_DIR ST EXAMPLES WORKDIR
set -euo pipefail
bin=$1 pgbin=$2 st=$3 examples=$4 work=$5
repo=$(cd "$(dirname "$0")/.." && pwd)

ip link set lo up
chown postgres: "$work"
pg() { runuser -u postgres -- "$@"; }
port=55432
pg "$pgbin/initdb" -D "$work/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
pg "$pgbin/pg_ctl" -D "$work/data" -l "$work/pg.log" -w -o \
    "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$work -c fsync=off" start >/dev/null
trap 'pg "$pgbin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true; kill $(jobs -p) 2>/dev/null || true' EXIT
pg "$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE pam_stats"

printf 'Ar3CnqBqrMHX3yJfGCu7LRNn2Bz5VtiFYJ3Pv0pUkDY=\n' > "$work/key"
head -c 48 /dev/urandom | base64 > "$work/jwt"
chmod 600 "$work/key" "$work/jwt"
cat > "$work/pgmon.toml" <<EOF
[store]
url = "postgres://postgres@127.0.0.1:$port/pam_stats"
[api]
listen = "127.0.0.1:58000"
secure_cookies = false
bcrypt_cost = 4
login_attempts_per_minute = 100000
[secrets]
jwt_secret_file = "$work/key.jwt"
encryption_key_file = "$work/key"
[log]
level = "warn"
EOF
mv "$work/jwt" "$work/key.jwt"
api="$bin/pgmon-api --config $work/pgmon.toml"
$api migrate >/dev/null
# Logins a generated path parameter will not hit: a run must not change its own password.
printf 'admin-password-1' | $api user add st-admin-7f3a91 --role admin >/dev/null
printf 'viewer-password-1' | $api user add st-viewer-7f3a91 --role viewer >/dev/null
$api serve >"$work/api.out" 2>"$work/api.log" &
base=http://127.0.0.1:58000
for _ in $(seq 1 100); do curl -fsS "$base/api/health" >/dev/null 2>&1 && break; sleep 0.1; done
token() {
    curl -fsS -X POST "$base/api/token" --data-urlencode "username=$1" --data-urlencode "password=$2" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}
admin=$(token st-admin-7f3a91 admin-password-1)
curl -fsS -o /dev/null -X POST "$base/api/servers" -H "Authorization: Bearer $admin" \
    -H 'Content-Type: application/json' \
    -d "{\"name\": \"local\", \"host\": \"127.0.0.1\", \"port\": $port, \"user\": \"postgres\"}"
viewer=$(token st-viewer-7f3a91 viewer-password-1)

status=0
for role in admin viewer; do
    t=$admin
    [ "$role" = viewer ] && t=$viewer
    echo "=== schemathesis as $role"
    # schemathesis.toml (rules the document cannot state) is read from the directory st runs in.
    # Logging out revokes the token the run uses; logout is tested on its own.
    (cd "$repo" && NO_COLOR=1 "$st" run "$base/openapi.json" --url "$base/api" \
        -H "Authorization: Bearer $t" --checks all --max-examples "$examples" --workers 2 \
        --seed 20261201 --exclude-path-regex logout) || status=1
done
if grep -q panicked "$work/api.log"; then
    echo "pgmon-api panicked:"; cat "$work/api.log"; status=1
fi
exit $status
