#!/usr/bin/env bash
# Builds {{name}}.wasm. Needs componentize-js:
#   npm install @bytecodealliance/componentize-js@0.23.0
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PWD/node_modules/.bin:$HOME/.cache/streamhost/toolchains/npm/node_modules/.bin:$PATH"
if ! command -v componentize-js >/dev/null; then
    echo "error: componentize-js not found; install it: npm install @bytecodealliance/componentize-js@0.23.0" >&2
    exit 127
fi
# No HTTP: the host offers plugins no network, so the component must not import wasi:http.
componentize-js app.js --wit wit --world-name plugin -d http fetch-event -o {{name}}.wasm
