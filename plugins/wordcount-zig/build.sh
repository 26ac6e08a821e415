#!/usr/bin/env bash
# Builds the plugin: ./build.sh [OUT.wasm]  (default: wordcount-zig.wasm here).
# Needs Zig 0.17 (PyPI ziglang), wit-bindgen 0.61, wasm-tools and the WASI preview1
# reactor adapter (scripts/build-plugins installs them all).
set -euo pipefail
# OUT is taken relative to where the script was called from.
OUT="$(realpath -m -- "${1:-$(dirname "$0")/wordcount-zig.wasm}")"
# The output's folder may not exist yet (build/plugins/ on a fresh clone).
mkdir -p "$(dirname "$OUT")"
cd "$(dirname "$0")"
TOOLS="$HOME/.cache/streamhost/toolchains"
export PATH="$TOOLS/cargo/bin:$TOOLS/pyvenv/bin:$PATH"
ADAPTER="${WASI_ADAPTER:-$TOOLS/adapter/wasi_snapshot_preview1.reactor.wasm}"
if command -v zig >/dev/null; then ZIG=(zig); else ZIG=(python-zig); fi
if ! "${ZIG[@]}" version >/dev/null 2>&1; then
    echo "error: zig not found; run scripts/build-plugins, or: pip install ziglang==0.17.0" >&2
    exit 127
fi
for tool in wit-bindgen wasm-tools; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool not found; run scripts/build-plugins (see docs/plugins/zig.md)" >&2
        exit 127
    fi
done
[ -f "$ADAPTER" ] || { echo "error: WASI adapter $ADAPTER missing; run scripts/build-plugins" >&2; exit 127; }

mkdir -p gen
# There is no Zig bindings generator: translate the C bindings' header into Zig.
wit-bindgen c --world plugin ../../wit --out-dir gen >/dev/null
"${ZIG[@]}" translate-c gen/plugin.h -Igen -lc -target wasm32-wasi \
    --cache-dir gen/zig-cache > src/bindings.zig
# A reactor: no main, only the exports the bindings declare (Zig brings its own wasi-libc).
"${ZIG[@]}" build-exe src/main.zig gen/plugin.c gen/plugin_component_type.o -Igen -lc -target wasm32-wasi \
    -mexec-model=reactor -fno-entry -rdynamic -O ReleaseSmall \
    --cache-dir gen/zig-cache -femit-bin=gen/core.wasm
wasm-tools component new gen/core.wasm --adapt "wasi_snapshot_preview1=$ADAPTER" -o "$OUT"
