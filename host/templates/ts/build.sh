#!/usr/bin/env bash
# Builds {{name}}.wasm. Needs TypeScript, jco (for the types) and componentize-js:
#   npm install @bytecodealliance/componentize-js@0.23.0 typescript@7.0.2 @bytecodealliance/jco@1.35.0 @bytecodealliance/preview2-shim@0.25.0
# (streamhost's scripts/install-toolchains ts puts them in ~/.cache/streamhost).
set -euo pipefail
cd "$(dirname "$0")"
MODULES="$PWD/node_modules"
[ -d "$MODULES/@bytecodealliance/jco" ] || MODULES="$HOME/.cache/streamhost/toolchains/npm/node_modules"
export PATH="$PWD/node_modules/.bin:$HOME/.cache/streamhost/toolchains/npm/node_modules/.bin:$PATH"
if ! command -v componentize-js >/dev/null || ! command -v tsc >/dev/null || [ ! -d "$MODULES/@bytecodealliance/jco" ]; then
    echo "error: componentize-js, tsc or jco not found; install them: npm install @bytecodealliance/componentize-js@0.23.0 typescript@7.0.2 @bytecodealliance/jco@1.35.0 @bytecodealliance/preview2-shim@0.25.0" >&2
    exit 127
fi

# The contract's types, from wit/: jco's guest types. (`jco guest-types` itself fails in
# jco 1.35, "failed to read path for WIT": its WIT reader gets no file system. The same
# generator is called here with wit/ preopened.)
rm -rf types dist
node --input-type=module - "$MODULES" wit plugin types <<'JS'
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

tsc -p tsconfig.json # type-checks app.ts -> dist/app.js
# No HTTP: the host offers plugins no network, so the component must not import wasi:http.
componentize-js dist/app.js --wit wit --world-name plugin -d http fetch-event -o {{name}}.wasm
