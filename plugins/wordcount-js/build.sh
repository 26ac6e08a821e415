#!/usr/bin/env bash
# Builds the plugin: ./build.sh [OUT.wasm]  (default: wordcount-js.wasm here).
# Needs @bytecodealliance/componentize-js 0.23 (scripts/build-plugins installs it).
set -euo pipefail
# OUT is taken relative to where the script was called from.
OUT="$(realpath -m -- "${1:-$(dirname "$0")/wordcount-js.wasm}")"
# The output's folder may not exist yet (build/plugins/ on a fresh clone).
mkdir -p "$(dirname "$OUT")"
cd "$(dirname "$0")"
export PATH="$HOME/.cache/streamhost/toolchains/npm/node_modules/.bin:$PATH"
if ! command -v componentize-js >/dev/null; then
    echo "error: componentize-js not found; run scripts/build-plugins, or: npm install @bytecodealliance/componentize-js@0.23.0" >&2
    exit 127
fi
# No HTTP: the host offers plugins no network, so the component must not import wasi:http.
componentize-js app.js --wit ../../wit --world-name columns-plugin -d http fetch-event -o "$OUT"
