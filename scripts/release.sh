#!/usr/bin/env bash
# Builds the release artifacts into OUTDIR: one statically linked `locksmith`
# (glibc with crt-static: no libc, no /etc needed at run time; connect by IP
# address, since a static glibc cannot load the NSS modules name lookups
# use), its man page, shell completions, and a tarball of the three.
#
#   bash scripts/release.sh OUTDIR
#
# Check the binary in an empty root (as root, needs chroot):
#   LOCKSMITH_RELEASE_BIN=OUTDIR/locksmith cargo nextest run -p pg-locksmith --test release
#
# The wheels for PyPI come from the same sources: `maturin build --release`
# (pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: scripts/release.sh OUTDIR}"
target=x86_64-unknown-linux-gnu
mkdir -p "$out"

started=$(date +%s)
# --target keeps RUSTFLAGS off the build scripts and proc macros (they must
# stay dynamic to be loaded by cargo and rustc). getrandom 0.4 finds glibc's
# getrandom() with dlsym, which a static binary cannot do, and then falls back
# to /dev/urandom, absent from an empty root: link the function directly.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
  CARGO_PROFILE_RELEASE_STRIP=symbols \
  cargo build --release --locked --target "$target" -p pg-locksmith
bin="${CARGO_TARGET_DIR:-target}/$target/release/locksmith"
echo "--- built in $(( $(date +%s) - started ))s" >&2

# Static means no interpreter and no shared libraries.
if readelf -l "$bin" | grep -q 'INTERP' || readelf -d "$bin" | grep -q 'NEEDED'; then
  echo "$bin is not statically linked:" >&2
  readelf -d "$bin" | grep NEEDED >&2 || true
  exit 1
fi

install -m 0755 "$bin" "$out/locksmith"
"$out/locksmith" man > "$out/locksmith.1"
mkdir -p "$out/completions"
"$out/locksmith" completions bash > "$out/completions/locksmith.bash"
"$out/locksmith" completions zsh > "$out/completions/_locksmith"
"$out/locksmith" completions fish > "$out/completions/locksmith.fish"

version=$("$out/locksmith" --version | awk '{print $2}')
tarball="locksmith-$version-x86_64-linux.tar.gz"
tar -czf "$out/$tarball" -C "$out" locksmith locksmith.1 completions
echo "--- $out/locksmith: $(du -h "$out/locksmith" | cut -f1) ($(stat -c %s "$out/locksmith") bytes), static" >&2
echo "--- $out/$tarball: $(du -h "$out/$tarball" | cut -f1)" >&2
