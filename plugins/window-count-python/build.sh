#!/usr/bin/env bash
# Builds the plugin: ./build.sh [OUT.wasm]  (default: window-count-python.wasm here).
# Needs componentize-py 0.25 (scripts/build-plugins installs it).
set -euo pipefail
# OUT is taken relative to where the script was called from.
OUT="$(realpath -m -- "${1:-$(dirname "$0")/window-count-python.wasm}")"
# The output's folder may not exist yet (build/plugins/ on a fresh clone).
mkdir -p "$(dirname "$OUT")"
cd "$(dirname "$0")"
export PATH="$HOME/.cache/streamhost/toolchains/pyvenv/bin:$PATH"
if ! command -v componentize-py >/dev/null; then
    echo "error: componentize-py not found; run scripts/build-plugins, or: pip install componentize-py==0.25.1" >&2
    exit 127
fi
componentize-py -d ../../wit -w timer-plugin componentize app -o "$OUT"
