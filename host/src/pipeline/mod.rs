//! From a partition's records to a committed batch.
//!
//! * `policy`: what a failed batch does next (retry, dead-letter, skip, stop);
//! * `relay`: `--delivery exactly-once`: publishes the outbox in Kafka transactions;
//! * `slot`: the job's current plugin, swappable at a batch boundary;
//! * `time`: a partition's watermark, late records, and firing timers and expiries;
//! * `worker`: one partition worker: the commit protocol, top to bottom.

pub mod policy;
pub mod relay;
pub mod replay;
pub mod slot;
pub mod time;
pub mod worker;
