//! The plugin contract on the host's side: the types and traits generated from
//! `wit/streamhost.wit`, which the batch, the runtime and the effects all speak.
//!
//! Imports are `trappable`: a host function returns `wasmtime::Result`, so a plugin that
//! breaks a host rule (exceeds the effects cap, for example) fails its batch with a
//! typed error instead of getting a value back.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: trappable },
});
