#!/usr/bin/env bash
# Builds the plugin: ./build.sh [OUT.wasm]  (default: wordcount-ts.wasm here).
# Needs TypeScript 7.0 and jco 1.35 (for the types) next to componentize-js 0.23
# (scripts/build-plugins installs them: scripts/install-toolchains ts).
#
# Three steps: the contract's types from the WIT (types/, made afresh each build),
# app.ts type-checked and compiled to one ES module (dist/app.js), and that module
# componentized exactly as plugins/wordcount-js is.
set -euo pipefail
# OUT is taken relative to where the script was called from.
OUT="$(realpath -m -- "${1:-$(dirname "$0")/wordcount-ts.wasm}")"
# The output's folder may not exist yet (build/plugins/ on a fresh clone).
mkdir -p "$(dirname "$OUT")"
cd "$(dirname "$0")"
NPM="$HOME/.cache/streamhost/toolchains/npm"
export PATH="$NPM/node_modules/.bin:$PATH"
if ! command -v componentize-js >/dev/null || ! command -v tsc >/dev/null || [ ! -d "$NPM/node_modules/@bytecodealliance/jco" ]; then
    echo "error: componentize-js, tsc or jco not found; run scripts/install-toolchains ts" >&2
    exit 127
fi

# Types of the imports and exports of the world `columns-plugin`, from the WIT: jco's guest
# types. Not `jco guest-types` itself: jco 1.35 runs its WIT reader with no file system
# preopened (preview2-shim 0.26 opens none by default), so the CLI fails with "failed to
# read path for WIT ... (os error 44)". The same generator is called here, with the WIT
# folder (and only it) preopened.
rm -rf types dist
node --input-type=module - "$NPM/node_modules" ../../wit columns-plugin types <<'JS'
import { createRequire } from "node:module";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
const [modules, witArg, world, out] = process.argv.slice(2);
const wit = resolve(witArg);
const jco = createRequire(join(modules, "@bytecodealliance/jco/package.json"));
const transpile = createRequire(jco.resolve("@bytecodealliance/jco-transpile"));
const load = (req, name) => import(pathToFileURL(req.resolve(name)).href);
const { _setPreopens } = await load(transpile, "@bytecodealliance/preview2-shim/filesystem");
_setPreopens({ [wit]: wit });
const { generateGuestTypes } = await load(jco, "@bytecodealliance/jco-transpile");
const files = await generateGuestTypes(wit, { worldName: world });
for (const [name, bytes] of Object.entries(files)) {
  mkdirSync(dirname(join(out, name)), { recursive: true });
  writeFileSync(join(out, name), bytes);
}
JS

tsc -p tsconfig.json # -> dist/app.js
# No HTTP: the host offers plugins no network, so the component must not import wasi:http.
componentize-js dist/app.js --wit ../../wit --world-name columns-plugin -d http fetch-event -o "$OUT"
