#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ with libFuzzer (libfuzzer-sys) on the stable toolchain, without
# cargo-fuzz: the same coverage instrumentation cargo-fuzz asks rustc for (no sanitizer, which
# would need nightly). Then runs every target for FUZZ_SECONDS (default 3) from a corpus seeded
# with fixtures/ and the shared samples (../shared/samples, or TEE_VERIFIER_SAMPLES), kept in
# target/fuzz/corpus/. Prints each target's executions and corpus size; a crash fails the run
# and leaves its input in target/fuzz/artifacts/TARGET/. FUZZ_RUNS stops each target after that
# many executions instead (a campaign; FUZZ_SECONDS is then ignored).
#
#   bash scripts/fuzz.sh                       # smoke: every target, 3 s each
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh x509_crl
#   FUZZ_RUNS=10000000 bash scripts/fuzz.sh    # campaign: 10 M executions per target
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-3}"
runs="${FUZZ_RUNS:-}"
if [ -n "$runs" ]; then budget="-runs=$runs"; else budget="-max_total_time=$seconds"; fi
samples="${TEE_VERIFIER_SAMPLES:-../shared/samples}"
root="$PWD/target/fuzz"
host="$(rustc -vV | sed -n 's/^host: //p')"
targets=(nitro_document tdx_quote tdx_collateral event_log dstack_evidence webhook_body
    x509_certificate x509_crl registry_toml measurement_document)
if [ "$#" -gt 0 ]; then targets=("$@"); fi

# --target keeps these flags off build scripts and proc macros, as cargo-fuzz does.
RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares" \
    cargo build --quiet --release --manifest-path fuzz/Cargo.toml --target "$host" \
    --target-dir "$root/build" --bins

# Seeds: every fixture and sample a target's parser reads (a missing one is an error).
seeds() {
    case "$1" in
        nitro_document) echo fixtures/nitro/*.cbor "$samples"/nitro/*.cbor "$samples"/dstack/*.cose ;;
        tdx_quote) echo fixtures/tdx/*.bin "$samples"/tdx/*.bin ;;
        tdx_collateral) echo fixtures/tdx/collateral.json "$samples"/tdx/*collateral*.json ;;
        event_log | dstack_evidence) echo "$samples"/dstack/* ;;
        webhook_body) echo fuzz/seeds/webhook_body/* ;;
        x509_certificate) echo fixtures/nitro/root.der "$samples"/roots/*.der ;;
        x509_crl) echo fuzz/seeds/x509_crl/* ;;
        registry_toml) echo fixtures/registry/*.toml fuzz/seeds/registry_toml/* ;;
        measurement_document) echo fuzz/seeds/measurement_document/* ;;
    esac
}

for target in "${targets[@]}"; do
    corpus="$root/corpus/$target"
    artifacts="$root/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    for seed in $(seeds "$target"); do
        cp "$seed" "$corpus/seed-$(basename "$seed")"
    done
    log="$root/$target.log"
    started="$(date +%s)"
    if ! "$root/build/$host/release/$target" "$budget" -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz target $target failed; its input is in $artifacts/" >&2
        exit 1
    fi
    execs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log")"
    elapsed=$(($(date +%s) - started))
    files="$(find "$corpus" -type f | wc -l)"
    bytes="$(du -sb "$corpus" | cut -f1)"
    printf '%-18s %12s execs in %ss, corpus %s files (%s bytes)\n' "$target" "$execs" "$elapsed" "$files" "$bytes"
done
