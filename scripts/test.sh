#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: installs the pinned test tools (solc and anvil from
# npm, per package-lock.json), then runs every test, including the anvil-backed ones, under the
# default crypto backend, and the crypto unit tests under the RustCrypto backend too.
set -euo pipefail
cd "$(dirname "$0")/.."

npm ci --no-audit --no-fund --loglevel=error
cargo test --all-targets
cargo test --lib --features rustcrypto crypto
