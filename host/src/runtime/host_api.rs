//! The functions a plugin imports: emit, state, timers and log. All of them buffer into
//! the batch's `Effects`; nothing leaves the host until the batch succeeded. A plugin of
//! contract 0.1.0 reaches the same functions through `compat`.

use std::sync::Arc;

use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use super::limits::Limiter;
use crate::batch::effects::EffectError;
use crate::batch::effects::Effects;
use crate::contract::streamhost::plugin::types::{Level, OutputRecord, StateOp, Timer, TimerId};
use crate::contract::streamhost::plugin::{emit, log, state, timers, types};
use crate::store::StateStore;

/// Per-instance data of a wasmtime `Store`.
pub(crate) struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub effects: Effects,
    pub store: Arc<dyn StateStore>,
    pub plugin: Arc<str>,
    pub partition: Option<i32>,
    /// Whether the plugin exports `timer-handler`: setting timers needs it.
    pub timer_handler: bool,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl emit::Host for HostState {
    fn send(&mut self, records: Vec<OutputRecord>) -> wasmtime::Result<()> {
        self.effects.emit(records)?;
        Ok(())
    }
}

impl state::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let mut values = self
            .effects
            .get_many(&*self.store, self.partition, &[key.as_str()])?;
        Ok(values.pop().flatten())
    }

    fn get_many(&mut self, keys: Vec<String>) -> wasmtime::Result<Vec<Option<Vec<u8>>>> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        Ok(self.effects.get_many(&*self.store, self.partition, &keys)?)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        self.effects.set(key, value)?;
        Ok(())
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.effects.delete(key)?;
        Ok(())
    }

    fn incr(&mut self, key: String, delta: i64) -> wasmtime::Result<Result<i64, String>> {
        // Validate against the current value first, so a non-integer is the plugin's error
        // to handle rather than a failed batch.
        let current = self
            .effects
            .get_many(&*self.store, self.partition, &[key.as_str()]);
        let base = match current {
            Ok(mut v) => match v.pop().flatten() {
                None => 0,
                Some(bytes) => match crate::store::parse_counter(&bytes) {
                    Some(n) => n,
                    None => {
                        return Ok(Err(format!(
                            "state key {key:?} holds {:?}, not a decimal integer",
                            String::from_utf8_lossy(&bytes)
                        )));
                    }
                },
            },
            Err(e) => return Err(e.into()),
        };
        let Some(new) = base.checked_add(delta) else {
            return Ok(Err(format!(
                "state key {key:?}: adding {delta} to {base} overflows"
            )));
        };
        self.effects.add(key, delta)?;
        Ok(Ok(new))
    }

    fn apply(&mut self, ops: Vec<StateOp>) -> wasmtime::Result<()> {
        self.effects.apply(ops)?;
        Ok(())
    }

    fn incr_packed(
        &mut self,
        keys: Vec<u8>,
        key_lens: Vec<u8>,
        deltas: Vec<u8>,
    ) -> wasmtime::Result<()> {
        self.effects.incr_packed(&keys, &key_lens, &deltas)?;
        Ok(())
    }
}

impl timers::Host for HostState {
    fn set(&mut self, timers: Vec<Timer>) -> wasmtime::Result<()> {
        if !self.timer_handler && !timers.is_empty() {
            return Err(EffectError::NoTimerHandler.into());
        }
        self.effects.set_timers(timers)?;
        Ok(())
    }

    fn cancel(&mut self, timers: Vec<TimerId>) -> wasmtime::Result<()> {
        self.effects.cancel_timers(timers)?;
        Ok(())
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let plugin = &*self.plugin;
        let partition = self.partition;
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, partition, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, partition, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, partition, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, partition, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, partition, "{message}"),
        }
        Ok(())
    }
}
