//! Records which plugin version handled each offset, for the hot-swap test. Built twice
//! by scripts/build-plugins, with TAGGER_VERSION=1 and =2 (tagger-v1.wasm, tagger-v2.wasm).
//!
//! Per record: `set <partition>:<offset>` = the version, and `incr seen:<partition>:<offset>`
//! by 1, so a record processed twice (across versions or not) would show a count of 2.

use exports::streamhost::plugin::handler;
use streamhost::plugin::state;
use streamhost::plugin::types::{Batch, KeyDelta, KeyValue, PluginError, StateOp};

wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "basic-plugin" });

const VERSION: &str = match option_env!("TAGGER_VERSION") {
    Some(v) => v,
    None => "0",
};

struct Tagger;

impl handler::Guest for Tagger {
    fn process(batch: Batch) -> Result<(), PluginError> {
        let mut ops = Vec::with_capacity(batch.records.len() * 2);
        for r in &batch.records {
            let at = format!("{}:{}", batch.partition, r.offset);
            ops.push(StateOp::Incr(KeyDelta {
                key: format!("seen:{at}"),
                delta: 1,
            }));
            ops.push(StateOp::Set(KeyValue {
                key: at,
                value: VERSION.as_bytes().to_vec(),
            }));
        }
        state::apply(&ops);
        Ok(())
    }
}

export!(Tagger);
