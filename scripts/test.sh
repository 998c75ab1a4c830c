#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: installs the pinned test tools (solc and anvil from
# npm, per package-lock.json), then runs every test, including the anvil-backed ones, under the
# default crypto backend, the crate doc's example, the crypto unit tests under the RustCrypto
# backend too, checks that each feature layer builds on its own, and smoke-runs every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

npm ci --no-audit --no-fund --loglevel=error
cargo test --all-targets
cargo test --doc
cargo test --lib --features rustcrypto crypto
bash scripts/check-layers.sh
# A smoke run of every fuzz target (libFuzzer on the stable toolchain), a few seconds each.
FUZZ_SECONDS="${FUZZ_SECONDS:-2}" bash scripts/fuzz.sh
