//! streamhost: consume Kafka partitions, run each batch through a sandboxed WebAssembly
//! plugin, commit offsets and state only after the plugin succeeded.

pub mod admin;
pub mod baseline;
pub mod batch;
pub mod cli;
pub mod effects;
pub mod input;
pub mod job;
pub mod metrics;
pub mod mirror;
pub mod offsets;
pub mod pipeline;
pub mod policy;
pub mod produce;
pub mod progress;
pub mod registry;
pub mod runtime;
pub mod scaffold;
pub mod sink;
pub mod source;
pub mod store;
pub mod testrun;
