//! From a partition's records to a committed batch.
//!
//! * `batch`: the records `[from, until)` of one partition, as the plugin sees them;
//! * `effects`: what a batch produced (emits, state writes), buffered until it commits;
//! * `policy`: what a failed batch does next (retry, dead-letter, skip, stop);
//! * `slot`: the job's current plugin, swappable at a batch boundary;
//! * `worker`: one partition worker: the commit protocol, top to bottom.

pub mod batch;
pub mod effects;
pub mod policy;
pub mod slot;
pub mod worker;
