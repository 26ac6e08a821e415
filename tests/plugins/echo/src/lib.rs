//! The smallest plugin: world `basic-plugin` (no `init`), emits every record unchanged.

use exports::streamhost::plugin::handler;
use streamhost::plugin::emit;
use streamhost::plugin::types::{Batch, OutputRecord, PluginError};

wit_bindgen::generate!({ path: "../../../wit", world: "basic-plugin" });

struct Echo;

impl handler::Guest for Echo {
    fn process(batch: Batch) -> Result<(), PluginError> {
        let out: Vec<OutputRecord> = batch
            .records
            .into_iter()
            .map(|r| OutputRecord { topic: None, key: r.key, value: r.value, headers: r.headers })
            .collect();
        emit::send(&out);
        Ok(())
    }
}

export!(Echo);
