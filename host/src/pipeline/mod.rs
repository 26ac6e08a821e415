//! From a partition's records to a committed batch.
//!
//! * `executor`: one batch through the plugin under the error policy, with its timers
//!   (the worker's, the replay's and `host test`'s);
//! * `policy`: what a failed batch does next (retry, dead-letter, skip, stop);
//! * `relay`: `--delivery exactly-once`: publishes the outbox in Kafka transactions;
//! * `slot`: the job's current plugin, swappable at a batch boundary;
//! * `time`: a partition's watermark, late records, and firing timers and expiries;
//! * `worker`: one partition worker: the commit protocol, top to bottom.

pub mod executor;
pub mod policy;
pub mod relay;
pub mod replay;
pub mod slot;
pub mod time;
pub mod worker;
