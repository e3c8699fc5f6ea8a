#!/usr/bin/env bash
# Refreshes vendor/bootstrap-italia/ from the npm package `bootstrap-italia` at a pinned version:
# the compiled CSS, the bundled JavaScript, the SVG sprite, the WOFF2 fonts and the licences.
# The binary embeds these files (src/web/assets.rs), so a clone builds with the Rust toolchain
# alone; this script is only for moving to another version:
#
#   scripts/vendor-bootstrap-italia.sh 2.18.3
#
# npm checks the tarball against the registry's integrity hash; the script records the version
# and the SHA-256 of every file it copies in vendor/bootstrap-italia/VERSION.
set -euo pipefail

version="${1:?usage: $0 VERSION (e.g. 2.18.3)}"
root="$(cd "$(dirname "$0")/.." && pwd)"
target="$root/vendor/bootstrap-italia"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

command -v npm >/dev/null || { echo "npm is needed to fetch bootstrap-italia: apt-get install npm" >&2; exit 1; }
(cd "$work" && npm pack --silent "bootstrap-italia@$version" >/dev/null)
tar -xzf "$work/bootstrap-italia-$version.tgz" -C "$work"
dist="$work/package/dist"

rm -rf "$target"
mkdir -p "$target"/{css,js,svg,fonts}
cp "$work/package/LICENSE" "$target/LICENSE"
cp "$dist/css/bootstrap-italia.min.css" "$target/css/"
cp "$dist/js/bootstrap-italia.bundle.min.js" "$target/js/"
cp "$dist/svg/sprites.svg" "$target/svg/"
# The fonts Bootstrap Italia's own loader declares, WOFF2 only (every browser in use reads it).
for family in Titillium_Web Lora Roboto_Mono; do
    mkdir -p "$target/fonts/$family"
    cp "$dist/fonts/$family/"*.woff2 "$target/fonts/$family/"
    cp "$dist/fonts/$family/"{OFL.txt,LICENSE.txt} "$target/fonts/$family/" 2>/dev/null || true
done

{
    echo "bootstrap-italia $version (npm, BSD-3-Clause; fonts under their own licences beside them)"
    echo "fetched $(date -u +%Y-%m-%d) by scripts/vendor-bootstrap-italia.sh"
    echo
    (cd "$target" && find . -type f ! -name VERSION | sort | xargs sha256sum)
} > "$target/VERSION"
echo "vendor/bootstrap-italia: $version"
