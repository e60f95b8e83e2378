# Shared helpers of the project's scripts. Every function is idempotent.

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Runs a command as the postgres OS user (peer authentication over the local socket).
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

APT_UPDATED=0
# Installs the Debian packages that are missing.
ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Makes sure a PostgreSQL cluster is installed, running and accepting connections on 127.0.0.1:5432.
ensure_postgres() {
    if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
        ensure_packages postgresql postgresql-contrib
    fi
    ensure_packages postgresql-client
    local ver cluster
    read -r ver cluster _ < <(pg_lsclusters -h | head -n 1)
    [ -n "${ver:-}" ] || die "no PostgreSQL cluster found after installing postgresql"
    if ! pg_lsclusters -h | head -n 1 | grep -q online; then
        log "starting PostgreSQL $ver/$cluster"
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" start || as_root pg_ctlcluster "$ver" "$cluster" start
    fi
    for _ in $(seq 1 60); do
        pg_isready -q -h 127.0.0.1 -p 5432 && return 0
        sleep 0.5
    done
    die "PostgreSQL does not accept connections on 127.0.0.1:5432"
}

# psql as the postgres superuser through the local socket.
pg_super() {
    as_postgres psql -X -q -v ON_ERROR_STOP=1 "$@"
}

# A superuser for the tests and benchmarks, with a password, so that they work whatever pg_hba.conf
# says about TCP; exports PGMON_TEST_PG_URL (kept when already set).
ensure_test_role() {
    pg_super <<'SQL'
SELECT 'CREATE ROLE pgmon_test LOGIN SUPERUSER PASSWORD ''pgmon_test'''
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgmon_test') \gexec
SQL
    export PGMON_TEST_PG_URL="${PGMON_TEST_PG_URL:-postgres://pgmon_test:pgmon_test@127.0.0.1:5432/postgres}"
}

# Builds the web UI into web/dist (Node.js 18 or later: Debian's nodejs and npm if none is there).
# npm ci only when the lockfile changed since the last install; the build itself takes seconds.
ensure_web_build() {
    local major
    major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    if [ "$major" -lt 18 ] || ! command -v npm >/dev/null 2>&1; then
        ensure_packages nodejs npm
        major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
        [ "$major" -ge 18 ] || die "Node.js 18 or later is needed to build the web UI (found $(node --version 2>/dev/null || echo none))"
    fi
    if ! cmp -s web/package-lock.json web/node_modules/.pgmon-lock 2>/dev/null; then
        log "installing the web UI's packages (npm ci)"
        (cd web && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in web/"
        cp web/package-lock.json web/node_modules/.pgmon-lock
    fi
    log "building the web UI"
    (cd web && npm run --silent build) || die "the web UI's build failed"
}
