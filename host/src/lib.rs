//! streamhost: consume Kafka partitions, run each batch through a sandboxed WebAssembly
//! plugin, commit offsets and state only after the plugin succeeded.
//!
//! The modules follow one batch through the host, in the order the data flows:
//! * [`kafka`]: the consumer that fetches partitions, the producer that sends emits and
//!   dead letters, the offset mirror, and the one place every Kafka client is configured;
//! * [`batch`]: one partition's records `[from, until)` as the plugin sees them, and the
//!   effects the batch produced, buffered until it commits;
//! * [`runtime`]: wasmtime, the sandbox and the host imports a plugin calls;
//! * [`store`]: where offsets and state become durable (Redis, or memory for `host test`);
//! * [`pipeline`]: a partition worker cuts batches, runs them through the batch executor
//!   (the plugin under the error policy, then timers) and commits: the commit protocol,
//!   in `pipeline/worker.rs`;
//! * [`job`]: one job: its consumer, its partition workers, its plugin slot, and its
//!   settings (one type for `host run`'s flags and the API);
//! * [`admin`]: `host serve`, the HTTP API over jobs and the plugin registry;
//! * [`tools`]: what a person runs by hand: `host test`, `offsets`, `produce`, `new`;
//! * [`telemetry`]: metrics and progress, which every stage above reports to;
//! * [`retry`]: the one backoff rule and stop-aware wait of every retrying loop;
//! * [`contract`]: the plugin contract's types, generated from `wit/`.
//!
//! Errors: library errors are `thiserror` enums whose message names its cause inline
//! ("cannot read input file F: No such file or directory"); none hands that cause on again
//! as its `source()`, so the chain the edges print (`error: {e:#}`, with `anyhow` context
//! added there) says each cause once.

pub mod admin;
pub mod args;
pub mod batch;
pub mod cli;
pub mod clock;
pub mod contract;
pub mod job;
pub mod kafka;
pub mod pipeline;
pub mod retry;
pub mod runtime;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tools;
