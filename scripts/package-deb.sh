#!/usr/bin/env bash
# Builds target/debian/pgmon_<version>_<arch>.deb with dpkg-deb (Debian's own tool): both binaries,
# both systemd units, the sysusers and tmpfiles entries, /etc/pgmon/pgmon.toml as a conffile, the
# maintainer scripts of packaging/debian and the web UI (web/dist, built if absent) in
# /usr/share/pgmon/web, where api.web_dir points by default. Prints the package's path.
#
# PGMON_DEB_PROFILE=debug packages the debug build; PGMON_DEB_BINDIR packages the binaries of that
# directory without building (the tests do: they run inside `cargo test`, which holds the build
# lock); PGMON_DEB_VERSION overrides the version (the upgrade test builds a second one).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v dpkg-deb >/dev/null || ensure_packages dpkg
profile=${PGMON_DEB_PROFILE:-release}
version=${PGMON_DEB_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)}
arch=$(dpkg --print-architecture)
if [ -n "${PGMON_DEB_BINDIR:-}" ]; then
    bindir=$PGMON_DEB_BINDIR
elif [ "$profile" = release ]; then
    cargo build --release --locked -p pgmon-api -p pgmon-collector >&2
    bindir=target/release
else
    cargo build --locked -p pgmon-api -p pgmon-collector >&2
    bindir=target/debug
fi

[ -f web/dist/index.html ] || ensure_web_build >&2

stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/usr/lib/sysusers.d" \
    "$stage/usr/lib/tmpfiles.d" "$stage/etc/pgmon" "$stage/usr/share/doc/pgmon"
install -m 0755 "$bindir/pgmon-api" "$bindir/pgmon-collector" "$stage/usr/bin/"
install -m 0644 systemd/pgmon-api.service systemd/pgmon-collector.service "$stage/lib/systemd/system/"
install -m 0644 systemd/pgmon.sysusers "$stage/usr/lib/sysusers.d/pgmon.conf"
install -m 0644 packaging/tmpfiles.conf "$stage/usr/lib/tmpfiles.d/pgmon.conf"
install -m 0640 packaging/pgmon.toml "$stage/etc/pgmon/pgmon.toml"
install -m 0644 README.md "$stage/usr/share/doc/pgmon/README.md"
install -d -m 0755 "$stage/usr/share/pgmon/web/assets"
install -m 0644 web/dist/index.html "$stage/usr/share/pgmon/web/"
find web/dist/assets -maxdepth 1 -type f ! -name '*.map' -exec install -m 0644 {} "$stage/usr/share/pgmon/web/assets/" \;
printf 'pgmon\nLicense: see the project repository.\n' > "$stage/usr/share/doc/pgmon/copyright"
install -m 0644 packaging/debian/conffiles "$stage/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" packaging/debian/control.in \
    > "$stage/DEBIAN/control"
mkdir -p target/debian
out="target/debian/pgmon_${version}_${arch}.deb"
# PGMON_DEB_COMPRESSOR: xz (the default), gzip, zstd or none (the tests: faster to build).
dpkg-deb --root-owner-group -Z"${PGMON_DEB_COMPRESSOR:-xz}" --build "$stage" "$out" >&2
echo "$out"
