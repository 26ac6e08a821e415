#!/usr/bin/env bash
# Builds the plugin: ./build.sh [OUT.wasm]  (default: wordcount.wasm here).
# Needs Rust with the wasm32-wasip2 target (rustup target add wasm32-wasip2).
set -euo pipefail
# OUT is taken relative to where the script was called from.
OUT="$(realpath -m -- "${1:-$(dirname "$0")/wordcount.wasm}")"
# The output's folder may not exist yet (build/plugins/ on a fresh clone).
mkdir -p "$(dirname "$OUT")"
cd "$(dirname "$0")"
cargo build --quiet --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/wordcount.wasm" "$OUT"
