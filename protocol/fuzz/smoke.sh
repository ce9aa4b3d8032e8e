#!/usr/bin/env bash
# Runs every fuzz target (pigeon-protocol's decoders and the pigeon crate's
# engine, file server and capture reader) for FUZZ_SECONDS seconds each
# (default 10) and fails if any of them finds a crash, a timeout or an
# out-of-memory input. Usage, from anywhere:
#
#     protocol/fuzz/smoke.sh                 # every target, 10 s each
#     FUZZ_SECONDS=60 protocol/fuzz/smoke.sh # longer
#     protocol/fuzz/smoke.sh header entry    # only these targets
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 10)
#   FUZZ_SANITIZER  cargo-fuzz sanitizer: address (default) or none
#   FUZZ_RSS_MB     libFuzzer's -rss_limit_mb (default 1024)
#
# cargo-fuzz needs nightly flags (-Zsanitizer, sancov passes); on a stable
# toolchain RUSTC_BOOTSTRAP=1 unlocks them, so this script sets it.
set -euo pipefail

seconds="${FUZZ_SECONDS:-10}"
sanitizer="${FUZZ_SANITIZER:-address}"
rss_mb="${FUZZ_RSS_MB:-1024}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "smoke: building ${#targets[@]} targets (sanitizer: $sanitizer)" >&2
cargo fuzz build -s "$sanitizer"

logs="$here/target/smoke-logs"
mkdir -p "$logs"
failed=()
summary=()
for t in "${targets[@]}"; do
    log="$logs/$t.log"
    echo "smoke: $t for ${seconds}s (log: $log)" >&2
    status=0
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: bounded memory.
    cargo fuzz run -s "$sanitizer" "$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb="$rss_mb" \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs="$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 \2/p' "$log" | tail -n1)"
    if [ -n "$runs" ]; then
        set -- $runs
        rate=$(( $1 / ($2 > 0 ? $2 : 1) ))
        line="$t: $1 runs in $2 s (~$rate exec/s)"
    else
        line="$t: no 'Done' line"
    fi
    if [ "$status" -ne 0 ]; then
        line="$line: FAILED (exit $status)"
        failed+=("$t")
        # Show the crash report and the reproducer's path.
        grep -a -E -A25 'panicked at|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY' "$log" | head -n 60 >&2 || true
        grep -a -E 'Test unit written to|artifact_prefix' "$log" >&2 || true
    fi
    summary+=("$line")
    echo "smoke: $line" >&2
done

echo
echo "== fuzz smoke: ${seconds}s per target, sanitizer $sanitizer =="
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]} (reproduce: cd protocol/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> artifacts/<target>/<file>)"
    exit 1
fi
echo "all ${#targets[@]} targets passed"
