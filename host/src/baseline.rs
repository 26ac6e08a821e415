//! The word count compiled into the host: the benchmarks' baseline for what the WASM
//! plugin costs (`host run --native-wordcount`, hidden from `--help`). It runs the
//! wordcount plugin's own counting code and fills the same effects buffer, so the only
//! difference is the sandbox.

use crate::batch::{Batch, value};
use crate::effects::Effects;
use crate::runtime::bindings::streamhost::plugin::types::{KeyDelta, StateOp};
use crate::runtime::{Limits, ProcessError};

#[path = "../../plugins/wordcount/src/count.rs"]
#[allow(dead_code)] // the plugin also uses `for_each_word`, for emits
mod count;

pub struct NativeWordcount {
    effects_bytes: usize,
}

impl NativeWordcount {
    pub fn new(limits: &Limits) -> Self {
        Self {
            effects_bytes: limits.effects_bytes,
        }
    }

    pub fn process(&mut self, batch: &Batch) -> Result<Effects, ProcessError> {
        let mut counts = std::collections::HashMap::new();
        for record in &batch.records {
            if let Some(v) = value(batch, record) {
                count::count_words(v, &mut counts);
            }
        }
        let ops = counts
            .into_iter()
            .map(|(key, delta)| StateOp::Incr(KeyDelta { key, delta }))
            .collect();
        let mut effects = Effects::new(self.effects_bytes);
        effects.apply(ops).map_err(|source| ProcessError::Effects {
            plugin: "native-wordcount".into(),
            source,
        })?;
        Ok(effects)
    }
}
