#!/usr/bin/env bash
# Builds {{name}}.wasm. Needs componentize-py: pip install componentize-py==0.25.1
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/.cache/streamhost/toolchains/pyvenv/bin:$PATH"
if ! command -v componentize-py >/dev/null; then
    echo "error: componentize-py not found; install it: pip install componentize-py==0.25.1" >&2
    exit 127
fi
componentize-py -d wit -w plugin componentize app -o {{name}}.wasm
