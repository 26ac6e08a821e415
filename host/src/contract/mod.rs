//! The plugin contract on the host's side: the types and traits generated from
//! `wit/streamhost.wit` (version 0.2.0), which the batch, the runtime and the effects all
//! speak, and in `v0_1` those of the frozen 0.1.0 contract (`wit/0.1.0/`), which older
//! plugins were built against. The runtime adapts a 0.1.0 plugin to the current types
//! at the boundary (`runtime::compat`), so nothing past it knows the old version.
//!
//! Imports are `trappable`: a host function returns `wasmtime::Result`, so a plugin that
//! breaks a host rule (exceeds the effects cap, for example) fails its batch with a
//! typed error instead of getting a value back.

// The host binds every export a plugin may have: the largest world, plus the handler
// of a `columns-plugin`, which no plugin world combines with `handler`.
wasmtime::component::bindgen!({
    path: "../wit",
    inline: "
        package streamhost:host;
        world all-exports {
            include streamhost:plugin/event-time-plugin@0.2.0;
            export streamhost:plugin/columns-handler@0.2.0;
        }
    ",
    world: "streamhost:host/all-exports",
    imports: { default: trappable },
});

/// The contract of plugins built against `streamhost:plugin@0.1.0`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "plugin",
        imports: { default: trappable },
    });
}
