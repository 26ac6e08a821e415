# Shared by the scripts in this folder: repo root, one shared cargo target dir, helpers.
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# One target dir for every build of this repo (host, plugins, CI): wasmtime is slow to
# build on 2 cores, so never build it twice.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamhost/target}"
export PATH="$HOME/.cargo/bin:$PATH"
PLUGIN_OUT="$ROOT/build/plugins"

# Each step's line carries the time of day, so a log shows where a run's time went.
say() { printf '\033[1m==> %s %s\033[0m\n' "$(date +%T)" "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs Debian packages that are missing; runs apt-get update once, only when needed.
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}
