//! The smallest plugin: world `basic-plugin` (no `init`), emits every record unchanged.

use exports::streamhost::plugin::handler;
use streamhost::plugin::emit;
use streamhost::plugin::types::{Batch, Header, OutputRecord, PluginError, Span};

wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "basic-plugin" });

struct Echo;

impl handler::Guest for Echo {
    fn process(batch: Batch) -> Result<(), PluginError> {
        let bytes = |s: Span| batch.data[s.start as usize..(s.start + s.len) as usize].to_vec();
        let out: Vec<OutputRecord> = batch
            .records
            .iter()
            .map(|r| {
                let first = r.first_header as usize;
                let headers = batch.headers[first..first + r.header_count as usize]
                    .iter()
                    .map(|h| Header {
                        name: String::from_utf8_lossy(&bytes(h.name)).into_owned(),
                        value: h.value.map(bytes),
                    })
                    .collect();
                OutputRecord {
                    topic: None,
                    key: r.key.map(bytes),
                    value: r.value.map(bytes),
                    headers,
                }
            })
            .collect();
        emit::send(&out);
        Ok(())
    }
}

export!(Echo);
