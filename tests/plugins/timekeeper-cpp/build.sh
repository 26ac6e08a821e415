#!/usr/bin/env bash
# Builds the plugin: ./build.sh [OUT.wasm]  (default: timekeeper-cpp.wasm here).
# Needs clang++-19 with wasi-libc and libc++ for wasm32 (Debian), wit-bindgen 0.61,
# wasm-tools and the WASI preview1 reactor adapter (scripts/install-toolchains cpp), as
# for plugins/wordcount-cpp.
set -euo pipefail
# OUT is taken relative to where the script was called from.
OUT="$(realpath -m -- "${1:-$(dirname "$0")/timekeeper-cpp.wasm}")"
mkdir -p "$(dirname "$OUT")"
cd "$(dirname "$0")"
TOOLS="$HOME/.cache/streamhost/toolchains"
export PATH="$TOOLS/cargo/bin:$TOOLS/pyvenv/bin:$PATH"
ADAPTER="${WASI_ADAPTER:-$TOOLS/adapter/wasi_snapshot_preview1.reactor.wasm}"
for tool in clang++-19 wit-bindgen wasm-tools; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool not found; run scripts/install-toolchains cpp (see docs/plugins/cpp.md)" >&2
        exit 127
    fi
done
[ -f "$ADAPTER" ] || { echo "error: WASI adapter $ADAPTER missing; run scripts/install-toolchains cpp" >&2; exit 127; }
if [ ! -f /usr/lib/wasm32-wasi/libc++.a ]; then
    echo "error: libc++ for wasm32 missing; apt-get install libc++-19-dev-wasm32 libc++abi-19-dev-wasm32" >&2
    exit 127
fi

rm -rf gen
mkdir -p gen
# Bindings for the contract (world timer-plugin): C++ types, the export glue, the
# component-type section.
wit-bindgen cpp --world timer-plugin ../../../wit --out-dir gen >/dev/null

# Fixes to wit-bindgen 0.61's gen/timer_plugin.cpp; the build stops if they no longer apply.
# 1. emit::Send moves option<list<u8>> fields out of a const element (a deleted copy
#    constructor): the file does not compile. Borrow the fields instead. (Send, state::Apply
#    and the timers calls stay unused: they lower lists in place; see bulk_imports.h.)
# 2. Each export copies the host's array (records and headers of `process`, the timers of
#    `on-timers`, the pairs of `init`) into a new wit::vector and never frees the host's:
#    72 bytes a record and 24 a timer leaked per call. Free them before the export runs.
sed -i -E \
    -e 's/wit::vector<uint8_t> (payload[0-9]+) = \(std::move\((\(_iter_elem\)\.[a-z]+)\)\)\.value\(\);/auto const\& \1 = \2.value();  \/\/ patched by build.sh/' \
    -e 's/^(  auto result[0-9]+ = exports::streamhost::plugin::handler::Process\()/  if (arg8 > 0) free(arg7);  \/\/ patched by build.sh\n  if (arg10 > 0) free(arg9);\n\1/' \
    -e 's/^(  auto result[0-9]+ = exports::streamhost::plugin::timer_handler::OnTimers\()/  if (arg7 > 0) free(arg6);  \/\/ patched by build.sh\n\1/' \
    -e 's/^(  auto result[0-9]+ = exports::streamhost::plugin::lifecycle::Init\()/  if (arg1 > 0) free(arg0);  \/\/ patched by build.sh\n\1/' \
    gen/timer_plugin.cpp
# The patches, and the lines that show the freed pointers are the copied arrays.
check() { [ "$(grep -cE "$2" gen/timer_plugin.cpp)" = "$1" ]; }
if ! check 3 '^ *auto const& payload[0-9]+ = \(_iter_elem\)\.[a-z]+\.value\(\);  // patched' ||
    ! check 1 '^  if \(arg8 > 0\) free\(arg7\);  // patched' ||
    ! check 1 '^  if \(arg7 > 0\) free\(arg6\);  // patched' ||
    ! check 1 '^  if \(arg1 > 0\) free\(arg0\);  // patched' ||
    ! check 1 '^  auto _base[0-9]+ = arg7;$' ||
    ! check 1 '^  auto _base[0-9]+ = arg9;$' ||
    ! check 1 '^  auto _base[0-9]+ = arg6;$' ||
    ! check 1 '^  auto _base[0-9]+ = arg0;$'; then
    echo "error: gen/timer_plugin.cpp is not what build.sh knows how to patch (wit-bindgen $(wit-bindgen --version | awk '{print $2}'), expected 0.61.0)" >&2
    exit 1
fi

# Debian's wasi-libc targets WASI preview1; a reactor has no main, only exports.
# -fno-exceptions: Debian's wasm32 libc++abi has no exception support. -std=c++23: the
# bindings use std::expected. --strip-debug: Debian's libc++.a carries DWARF.
clang++-19 --target=wasm32-wasi -std=c++23 -O2 -fno-exceptions -mexec-model=reactor \
    -Wall -Wextra -Werror -Wl,--strip-debug -Igen \
    -o gen/core.wasm timekeeper.cpp gen/timer_plugin.cpp gen/timer_plugin_component_type.o
# Wrap the core module into a component; the adapter maps preview1 calls onto WASI 0.2.
wasm-tools component new gen/core.wasm --adapt "wasi_snapshot_preview1=$ADAPTER" -o "$OUT"
