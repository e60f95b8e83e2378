#!/usr/bin/env bash
# A minimal Debian 12 root (debootstrap minbase, with systemd for `systemd-analyze verify --root`),
# made once and cached as a tarball for the package test (tests/tests/package.rs), which installs
# pgmon's .deb into a copy with `dpkg --root`. Prints the tarball's path. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages debootstrap systemd
base=/var/cache/pgmon-tests
tarball=$base/debroot-bookworm-systemd.tar
if [ ! -f "$tarball" ]; then
    log "making a minimal Debian 12 root for the package test (once)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    as_root debootstrap --variant=minbase --include=systemd bookworm "$work/root" http://deb.debian.org/debian >/dev/null
    as_root mkdir -p "$base"
    as_root tar -C "$work/root" -cf "$tarball.tmp" .
    as_root mv "$tarball.tmp" "$tarball"
fi
echo "$tarball"
