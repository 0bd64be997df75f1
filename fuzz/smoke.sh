#!/usr/bin/env bash
# Fuzz smoke run: every target (or the ones named as arguments) for
# FUZZ_SECONDS (default 45) each, starting from the committed seeds.
#
#   fuzz/smoke.sh                      # all targets, 45 s each
#   FUZZ_SECONDS=300 fuzz/smoke.sh differential
#   FUZZ_SANITIZER=none fuzz/smoke.sh  # ~5x the executions; scrim forbids unsafe
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Works on the stable
# toolchain: RUSTC_BOOTSTRAP=1 lets it take the -Z sanitizer flags.
# Seeds stay untouched: they are copied into fuzz/corpus/<target> (ignored by
# git), which libFuzzer grows. Crashes land in fuzz/artifacts/<target>/.
# fuzz/dicts/<target>.dict, when present, is passed as -dict.
set -euo pipefail

export RUSTC_BOOTSTRAP=1
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${FUZZ_SECONDS:-45}"
sanitizer="${FUZZ_SANITIZER:-address}"
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    targets=(rewrite_bytes differential chunking rule_file gateway_parsers)
fi

cargo fuzz build --sanitizer "$sanitizer"

failed=()
for t in "${targets[@]}"; do
    [[ -d "fuzz/seeds/$t" ]] || { echo "smoke: no seeds for target '$t'" >&2; exit 2; }
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus"
    cp -R "fuzz/seeds/$t/." "$corpus/"
    args=(-max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1)
    if [[ -f "fuzz/dicts/$t.dict" ]]; then
        args+=(-dict="fuzz/dicts/$t.dict")
    fi
    echo "=== $t: ${seconds}s ==="
    if ! cargo fuzz run --sanitizer "$sanitizer" "$t" "$corpus" -- "${args[@]}"; then
        failed+=("$t")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "smoke: FAILED: ${failed[*]} (reproducers in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
echo "smoke: all ${#targets[@]} targets ran ${seconds}s without a failure"
