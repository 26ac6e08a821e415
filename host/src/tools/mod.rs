//! The commands a person runs by hand, beside the jobs themselves.
//!
//! * `test`: `host test`, a plugin over a file, with no Kafka and no Redis;
//! * `input`: the file formats `host test` and `host produce` read;
//! * `offsets`: `host offsets show|set|reset`;
//! * `produce`: `host produce`, a file's records to a topic;
//! * `new`: `host new`, a plugin project from a template;
//! * `state`: `host state get|scan`, a job's state read by key or prefix;
//! * `dlq`: `host dlq list|replay`, a job's dead letters and their replay;
//! * `topic`: `host topic list|describe|create|consume`, topics and their raw records.

pub mod dlq;
pub mod input;
pub mod new;
pub mod offsets;
pub mod produce;
pub mod state;
pub mod test;
pub mod topic;
