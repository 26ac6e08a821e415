//! The Kafka side of the host: where batches come from and where emits go.
//!
//! * `config`: one builder for every Kafka client the host makes (bootstrap servers,
//!   the host's defaults, then the user's `-X` properties);
//! * `consumer`: the job's consumer, partition assignment and per-partition queues,
//!   and the start-up wait for the brokers;
//! * `errors`: which Kafka errors heal by waiting and which stop the job;
//! * `producer`: the emits and dead letters of committed batches;
//! * `mirror`: copies offsets committed in Redis to the Kafka group, best effort.

pub mod bulk;
pub mod config;
pub mod consumer;
pub mod dead_letters;
pub mod errors;
pub mod mirror;
pub mod producer;
