#!/usr/bin/env bash
# Each feature layer builds alone, and the verification core (nitro, tdx, dstack) depends on no
# async runtime, network stack or CLI crate, in under 60 crates.
set -euo pipefail
cd "$(dirname "$0")/.."

for features in nitro tdx dstack registry chain service; do
    cargo check --lib --quiet --no-default-features --features "$features"
done

core=$(cargo tree -e normal --no-default-features --features dstack --prefix none | sed 's/ (\*)//' | sort -u)
count=$(wc -l <<<"$core")
forbidden=$(grep -E '^(tokio|alloy|tonic|axum|hyper|reqwest|clap) ' <<<"$core" || true)
if [[ -n "$forbidden" ]]; then
    echo "the verification core depends on: $forbidden" >&2
    exit 1
fi
if ((count >= 60)); then
    echo "the verification core builds with $count crates (the bound is 60):" >&2
    echo "$core" >&2
    exit 1
fi
echo "verification core (nitro, tdx, dstack): $count crates, no runtime or network stack"
