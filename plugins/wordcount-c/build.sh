#!/usr/bin/env bash
# Builds the plugin: ./build.sh [OUT.wasm]  (default: wordcount-c.wasm here).
# Needs clang-19 with wasi-libc (Debian), wit-bindgen 0.61, wasm-tools and the WASI
# preview1 reactor adapter (scripts/build-plugins installs them all).
set -euo pipefail
# OUT is taken relative to where the script was called from.
OUT="$(realpath -m -- "${1:-$(dirname "$0")/wordcount-c.wasm}")"
# The output's folder may not exist yet (build/plugins/ on a fresh clone).
mkdir -p "$(dirname "$OUT")"
cd "$(dirname "$0")"
TOOLS="$HOME/.cache/streamhost/toolchains"
export PATH="$TOOLS/cargo/bin:$TOOLS/pyvenv/bin:$PATH"
ADAPTER="${WASI_ADAPTER:-$TOOLS/adapter/wasi_snapshot_preview1.reactor.wasm}"
for tool in clang-19 wit-bindgen wasm-tools; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool not found; run scripts/build-plugins (see docs/plugins/c.md)" >&2
        exit 127
    fi
done
[ -f "$ADAPTER" ] || { echo "error: WASI adapter $ADAPTER missing; run scripts/build-plugins" >&2; exit 127; }

mkdir -p gen
# Bindings for the contract: types, import stubs and the component-type section.
wit-bindgen c --world plugin ../../wit --out-dir gen >/dev/null
# Debian's wasi-libc targets WASI preview1; a reactor has no main, only exports.
clang-19 --target=wasm32-wasi -O2 -mexec-model=reactor \
    -Wall -Wextra -Werror -Wno-unused-parameter -Igen \
    -o gen/core.wasm wordcount.c gen/plugin.c gen/plugin_component_type.o
# Wrap the core module into a component; the adapter maps preview1 calls onto WASI 0.2.
wasm-tools component new gen/core.wasm --adapt "wasi_snapshot_preview1=$ADAPTER" -o "$OUT"
