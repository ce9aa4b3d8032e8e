#!/usr/bin/env bash
# Builds the Debian package: the release binary, then (with that binary)
# the manual pages and shell completions into target/assets/, then
# `cargo deb` from [package.metadata.deb] in Cargo.toml. Prints the .deb's
# path last. Extra arguments go to cargo deb, e.g.
#
#   packaging/deb.sh                              # target/debian/pigeon_0.1.0-1_amd64.deb
#   packaging/deb.sh --deb-version 0.1.0-2 -o /tmp/debs/
#
# Installs cargo-deb (CARGO_DEB_VERSION, pinned) with cargo if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
CARGO_DEB_VERSION=${CARGO_DEB_VERSION:-3.8.0}

if ! cargo deb --version >/dev/null 2>&1; then
    echo "deb.sh: installing cargo-deb $CARGO_DEB_VERSION (a few minutes, once)" >&2
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" >&2
fi

echo "deb.sh: cargo build --release" >&2
cargo build --release --locked >&2
# cargo-deb finds the binary under the real target directory (it rewrites
# target/release/ itself); the generated assets are always under ./target.
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
pigeon="$target_dir/release/pigeon"
[ -x "$pigeon" ] || { echo "deb.sh: no binary at $pigeon" >&2; exit 1; }

assets="$root/target/assets"
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
"$pigeon" man --dir "$assets/man" >/dev/null
"$pigeon" completions bash >"$assets/completions/pigeon.bash"
"$pigeon" completions zsh >"$assets/completions/_pigeon"
"$pigeon" completions fish >"$assets/completions/pigeon.fish"
echo "deb.sh: $(ls "$assets/man" | wc -l) manual pages and 3 completion scripts in $assets" >&2

# --no-build: the binary above; --no-strip: Cargo already removed the debug
# info ([profile.release] strip = "debuginfo") and cargo-deb's strip would
# also remove the symbol table that names functions in panic backtraces.
cargo deb --no-build --no-strip --locked "$@"
