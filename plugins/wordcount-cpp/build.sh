#!/usr/bin/env bash
# Builds the plugin: ./build.sh [OUT.wasm]  (default: wordcount-cpp.wasm here).
# Needs clang++-19 with wasi-libc and libc++ for wasm32 (Debian), wit-bindgen 0.61,
# wasm-tools and the WASI preview1 reactor adapter (scripts/install-toolchains cpp).
set -euo pipefail
# OUT is taken relative to where the script was called from.
OUT="$(realpath -m -- "${1:-$(dirname "$0")/wordcount-cpp.wasm}")"
# The output's folder may not exist yet (build/plugins/ on a fresh clone).
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

mkdir -p gen
# Bindings for the contract: C++ types, the export glue, the component-type section.
wit-bindgen cpp --world plugin ../../wit --out-dir gen >/dev/null

# Two fixes to wit-bindgen 0.61's gen/plugin.cpp; the build stops if they no longer apply.
# 1. emit::Send moves option<list<u8>> fields out of a const element (a deleted copy
#    constructor): the file does not compile. Borrow the fields instead. (Send and
#    state::Apply stay unusable: they lower lists in place; see bulk_imports.h.)
# 2. The process export lifts the host's arrays of records (arg7, length arg8) and headers
#    (arg9, arg10) into new vectors and never frees them: 72 bytes a record leaked per
#    batch, until the memory cap traps the instance. Free them before calling Process.
sed -i -E \
    -e 's/wit::vector<uint8_t> (payload[0-9]+) = \(std::move\((\(_iter_elem\)\.[a-z]+)\)\)\.value\(\);/auto const\& \1 = \2.value();  \/\/ patched by build.sh/' \
    -e 's/^(  auto result[0-9]+ = exports::streamhost::plugin::handler::Process\()/  if (arg8 > 0) free(arg7);  \/\/ patched by build.sh\n  if (arg10 > 0) free(arg9);\n\1/' \
    gen/plugin.cpp
if [ "$(grep -c 'auto const& payload[0-9]* = (_iter_elem)\.[a-z]*\.value();  // patched' gen/plugin.cpp)" != 3 ] ||
    [ "$(grep -c 'if (arg8 > 0) free(arg7);  // patched' gen/plugin.cpp)" != 1 ] ||
    [ "$(grep -cE '^  auto _base[0-9]+ = arg7;$' gen/plugin.cpp)" != 1 ] ||
    [ "$(grep -cE '^  auto _base[0-9]+ = arg9;$' gen/plugin.cpp)" != 1 ]; then
    echo "error: gen/plugin.cpp is not what build.sh knows how to patch (wit-bindgen $(wit-bindgen --version | awk '{print $2}'), expected 0.61.0)" >&2
    exit 1
fi

# Debian's wasi-libc targets WASI preview1; a reactor has no main, only exports.
# -fno-exceptions: Debian's wasm32 libc++abi has no exception support (a throw does not
# link: __cxa_throw is undefined); a failed .value() or bad_alloc aborts instead. RTTI works.
# -std=c++23: the bindings use std::expected. --strip-debug: Debian's libc++.a carries DWARF
# (~280 KB of it in this module); the name section stays, for trap backtraces.
clang++-19 --target=wasm32-wasi -std=c++23 -O2 -fno-exceptions -mexec-model=reactor \
    -Wall -Wextra -Werror -Wl,--strip-debug -Igen \
    -o gen/core.wasm wordcount.cpp gen/plugin.cpp gen/plugin_component_type.o
# Wrap the core module into a component; the adapter maps preview1 calls onto WASI 0.2.
wasm-tools component new gen/core.wasm --adapt "wasi_snapshot_preview1=$ADAPTER" -o "$OUT"
