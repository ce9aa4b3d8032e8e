#!/usr/bin/env bash
# Installs, upgrades and removes the .deb on this machine and checks that it
# works and leaves nothing behind (CI runs it as root on a fresh machine):
#
#  1. builds the package twice (packaging/deb.sh), as 0.1.0-1 and 0.1.0-2;
#  2. dpkg -i the first: `pigeon --version`, `man -w pigeon` and
#     `man -w pigeon-send`, `systemd-analyze verify` of the user unit, the
#     bash/zsh/fish completions (bash loads its script; zsh and fish parse
#     theirs when installed), README and licences;
#  3. dpkg -i the second (an upgrade): the same checks, the new version;
#  4. dpkg -r, then dpkg -P: every file the package had installed (dpkg -L)
#     is gone, so is every directory that did not exist before, and dpkg
#     no longer knows the package.
#
# Needs root; installs man-db and systemd with apt-get if missing. Refuses
# to run if a `pigeon` package is already installed. Never starts the unit
# (that would put a node on the network). Bounded: TEST_DEB_TIMEOUT seconds
# (default 1200) for everything, apt and a first cargo-deb install included.
set -euo pipefail
if [ -z "${PIGEON_TEST_DEB_TIMED:-}" ]; then
    PIGEON_TEST_DEB_TIMED=1 exec timeout --foreground "${TEST_DEB_TIMEOUT:-1200}" bash "$0" "$@"
fi
cd "$(dirname "$0")/.."
root=$PWD

say() { printf 'test-deb: %s\n' "$*"; }
fail() { printf 'test-deb: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i); CI runs it as root"
command -v dpkg >/dev/null || fail "needs dpkg (a Debian-like system)"
if dpkg-query -W -f='${Status}' pigeon 2>/dev/null | grep -qv "not-installed"; then
    fail "a pigeon package is already installed here ($(dpkg-query -W -f='${Version} ${Status}' pigeon)); remove it first"
fi

# --- what the checks need -------------------------------------------------
need=()
command -v man >/dev/null || need+=(man-db)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ "${#need[@]}" -gt 0 ]; then
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq
    timeout 600 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Ubuntu's minimized images replace man with a script that only says so.
if dpkg-divert --list /usr/bin/man 2>/dev/null | grep -q .; then
    fail "/usr/bin/man is diverted (a minimized image): run \`unminimize\` or check the man pages by hand"
fi
# Debian/Ubuntu container images often tell dpkg not to install manual pages
# or documentation (path-exclude in /etc/dpkg/dpkg.cfg.d/). Our own files
# are included again on dpkg's command line (later options win), so what is
# checked is the package, not the image's trimming; the system's settings
# are left alone.
include=()
if grep -qs '^path-exclude' /etc/dpkg/dpkg.cfg.d/* /etc/dpkg/dpkg.cfg 2>/dev/null; then
    say "dpkg excludes paths here ($(grep -hs '^path-exclude' /etc/dpkg/dpkg.cfg.d/* /etc/dpkg/dpkg.cfg | tr '\n' ' ')); including pigeon's"
    include=(--path-include='/usr/share/man/man1/pigeon*' --path-include='/usr/share/doc/pigeon/*'
             --path-include='/usr/share/bash-completion/completions/pigeon'
             --path-include='/usr/share/zsh/vendor-completions/_pigeon'
             --path-include='/usr/share/fish/vendor_completions.d/pigeon.fish')
fi

# --- build ----------------------------------------------------------------
out=$root/target/debian/test
rm -rf "$out"
mkdir -p "$out/1" "$out/2"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
say "building pigeon $version as ${version}-1 and ${version}-2"
bash packaging/deb.sh --deb-version "${version}-1" -o "$out/1/" >/dev/null
# The second build reuses the binary and assets; only the version differs.
cargo deb --no-build --no-strip --locked --deb-version "${version}-2" -o "$out/2/" >/dev/null
deb1=$(ls "$out"/1/pigeon_*.deb)
deb2=$(ls "$out"/2/pigeon_*.deb)
say "$(basename "$deb1") ($(du -k "$deb1" | cut -f1) KiB), $(basename "$deb2")"

# Remove the package if anything below fails: the machine stays as it was.
installed=0
cleanup() {
    if [ "$installed" = 1 ]; then
        say "cleaning up: dpkg -P pigeon"
        dpkg -P pigeon >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

# Every directory the package would create (/usr/share/doc/pigeon, and
# /usr/lib/systemd/user or the like on a machine without them), noted
# before it exists: removing the package must remove them again.
new_dirs=()
while read -r d; do
    [ -e "$d" ] || new_dirs+=("$d")
done < <(dpkg-deb -c "$deb1" | awk '$1 ~ /^d/ {print $NF}' | sed 's|^\./|/|; s|/$||' | grep -v '^$')

check_installed() { # expected version
    local want=$1
    [ "$(dpkg-query -W -f='${Version}' pigeon)" = "$want" ] || fail "dpkg says $(dpkg-query -W -f='${Version}' pigeon), not $want"
    [ -x /usr/bin/pigeon ] || fail "no /usr/bin/pigeon"
    local v
    v=$(/usr/bin/pigeon --version) || fail "pigeon --version failed"
    [ "$v" = "pigeon $version" ] || fail "pigeon --version says '$v'"
    say "  pigeon --version: $v ($(stat -c %s /usr/bin/pigeon) bytes)"
    local page
    page=$(man -w pigeon) || fail "man -w pigeon finds no page"
    [ "$page" = /usr/share/man/man1/pigeon.1.gz ] || fail "man -w pigeon: $page"
    man -w pigeon-send >/dev/null || fail "man -w pigeon-send finds no page"
    MANWIDTH=80 man pigeon-send 2>/dev/null | grep -q -- '--sealed' || fail "man pigeon-send does not render"
    say "  man pages: $(dpkg -L pigeon | grep -c '^/usr/share/man/man1/') ($page, $(man -w pigeon-send))"
    local unit=/usr/lib/systemd/user/pigeon.service
    [ -f "$unit" ] || fail "no $unit"
    # --user: as the user manager loads it (which wants a runtime directory,
    # absent when root has no login session, as in CI: a temporary one);
    # --man=yes: the pages its Documentation= names must exist. Warnings
    # (an unknown key, a bad value) do not change the exit code: any output
    # about our unit fails the check.
    local verify rt
    rt=$(mktemp -d)
    verify=$(XDG_RUNTIME_DIR=$rt systemd-analyze --user verify --man=yes "$unit" 2>&1) \
        || { rm -rf "$rt"; fail "systemd-analyze --user verify $unit: $verify"; }
    rm -rf "$rt"
    if grep -i 'pigeon' <<<"$verify"; then fail "systemd-analyze verify complains about the unit"; fi
    grep -qx 'ExecStart=/usr/bin/pigeon daemon' "$unit" || fail "the unit does not run /usr/bin/pigeon daemon"
    # Installed, not enabled (each user enables it), and nothing started it.
    [ ! -e /etc/systemd/user/default.target.wants/pigeon.service ] || fail "the package enabled the user unit"
    say "  systemd-analyze --user verify $unit: ok"
    local c
    for c in /usr/share/bash-completion/completions/pigeon /usr/share/zsh/vendor-completions/_pigeon \
             /usr/share/fish/vendor_completions.d/pigeon.fish; do
        [ -s "$c" ] || fail "missing or empty: $c"
    done
    bash -c 'source /usr/share/bash-completion/completions/pigeon && complete -p pigeon' >/dev/null \
        || fail "bash cannot load its completions"
    local checked="bash (loaded)"
    if command -v zsh >/dev/null; then
        zsh -n /usr/share/zsh/vendor-completions/_pigeon || fail "zsh -n _pigeon"
        checked+=", zsh (parsed)"
    else checked+=", zsh (present; no zsh here to parse it)"; fi
    if command -v fish >/dev/null; then
        fish -n /usr/share/fish/vendor_completions.d/pigeon.fish || fail "fish -n pigeon.fish"
        checked+=", fish (parsed)"
    else checked+=", fish (present; no fish here to parse it)"; fi
    say "  completions: $checked"
    local d
    for d in README.md LICENSE-MIT LICENSE-APACHE copyright; do
        [ -s "/usr/share/doc/pigeon/$d" ] || fail "missing /usr/share/doc/pigeon/$d"
    done
    say "  /usr/share/doc/pigeon: $(ls /usr/share/doc/pigeon | tr '\n' ' ')"
}

# --- install --------------------------------------------------------------
say "dpkg -i $(basename "$deb1")"
installed=1
dpkg "${include[@]}" -i "$deb1" >/dev/null
check_installed "${version}-1"
mapfile -t files1 < <(dpkg -L pigeon | while read -r f; do [ -d "$f" ] || echo "$f"; done)

# --- upgrade --------------------------------------------------------------
say "dpkg -i $(basename "$deb2") (upgrade)"
dpkg "${include[@]}" -i "$deb2" >/dev/null
check_installed "${version}-2"
mapfile -t files2 < <(dpkg -L pigeon | while read -r f; do [ -d "$f" ] || echo "$f"; done)
[ "${#files1[@]}" = "${#files2[@]}" ] || fail "the upgrade changed the file list: ${#files1[@]} -> ${#files2[@]} files"

# --- remove and purge -----------------------------------------------------
say "dpkg -r pigeon"
dpkg -r pigeon >/dev/null
[ ! -e /usr/bin/pigeon ] || fail "/usr/bin/pigeon is still there after dpkg -r"
# No conffiles, so dpkg -r already forgets the package; -P must still
# succeed and leave it unknown.
say "dpkg -P pigeon (state after -r: $(dpkg-query -W -f='${db:Status-Abbrev}' pigeon 2>/dev/null || echo gone))"
dpkg -P pigeon >/dev/null 2>&1
installed=0
if dpkg-query -W -f='${Status}' pigeon 2>/dev/null | grep -qv "not-installed"; then
    fail "dpkg still knows pigeon: $(dpkg-query -W -f='${Status}' pigeon)"
fi
left=()
for f in "${files1[@]}" "${files2[@]}" "${new_dirs[@]}"; do
    if [ -e "$f" ] || [ -L "$f" ]; then left+=("$f"); fi
done
[ "${#left[@]}" = 0 ] || fail "left behind: ${left[*]}"
say "removed: its ${#files2[@]} files, and the ${#new_dirs[@]} directories it had created (${new_dirs[*]}), are gone"
say "passed"
