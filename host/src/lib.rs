//! streamhost: consume Kafka partitions, run each batch through a sandboxed WebAssembly
//! plugin, commit offsets and state only after the plugin succeeded.

pub mod batch;
pub mod cli;
pub mod effects;
pub mod input;
pub mod runtime;
pub mod store;
pub mod testrun;
