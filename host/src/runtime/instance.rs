//! One instance of a plugin: its own wasmtime Store, memory and limits, and the calls
//! into it (`process`, timers, event times), each under its deadline, with a trap turned
//! into an error that says which limit was hit and what to do.

use std::time::Duration;

use wasmtime::{Store, Trap};

use super::host_api::HostState;
use super::limits::Limits;
use super::stdio::LogStream;
use super::{
    EPOCH_TICK, Guests, HandlerGuest, LimitExceeded, Plugin, PluginError, ProcessError, Timer,
    TimerContext, columns, compat,
};
use crate::batch::Batch;
use crate::batch::effects::{EffectError, Effects};

pub(super) fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

/// One instance of a plugin, with its own Store, memory and limits.
pub struct PluginInstance {
    pub(super) plugin: Plugin,
    pub(super) store: Store<HostState>,
    pub(super) guests: Guests,
    pub(super) stderr: LogStream,
}

impl PluginInstance {
    /// Runs `process` over a batch and returns the batch's buffered effects.
    ///
    /// On `Err` the effects are dropped. If `instance_lost()` is true for the error the
    /// instance must not be used again.
    pub fn process(&mut self, batch: &mut Batch) -> Result<Effects, ProcessError> {
        let p = &*self.plugin.inner;
        let mut effects = Effects::new(p.limits.effects_bytes);
        effects.processing_time = batch.processing_time;
        effects.track_expiries = self.plugin.has_time();
        self.store.data_mut().effects = effects;
        self.start_call();
        let store = &mut self.store;
        let outcome = match &self.guests {
            Guests::V0_1 { handler } => compat::with_old_batch(batch, |b| {
                handler
                    .call_process(&mut *store, b)
                    .map(|r| r.map_err(compat::plugin_error))
            }),
            Guests::V0_2 {
                handler: HandlerGuest::Records(handler),
                ..
            } => handler.call_process(&mut *store, batch),
            Guests::V0_2 {
                handler: HandlerGuest::Columns(handler),
                ..
            } => columns::with_columns(batch, |c| handler.call_process_columns(&mut *store, c)),
        };
        self.finish_call(outcome)
    }

    /// Runs `on-timers` over timers that fired, adding to the batch's `effects`.
    pub fn on_timers(
        &mut self,
        context: &TimerContext,
        timers: &[Timer],
        effects: Effects,
    ) -> Result<Effects, ProcessError> {
        self.store.data_mut().effects = effects;
        self.start_call();
        let Guests::V0_2 {
            timer_handler: Some(timer_handler),
            ..
        } = &self.guests
        else {
            return Err(ProcessError::Trap {
                plugin: self.plugin.name().to_owned(),
                detail: EffectError::NoTimerHandler.to_string(),
            });
        };
        let outcome = timer_handler.call_on_timers(&mut self.store, context, timers);
        match self.finish_call(outcome) {
            // Poison names a record; timers have none to set aside.
            Err(ProcessError::Poison {
                plugin, message, ..
            }) => Err(ProcessError::Retryable {
                plugin,
                message: format!("on-timers returned poison ({message}); retried as retryable"),
            }),
            other => other,
        }
    }

    /// The plugin's event times of a batch's records (`event-time.extract`), if it
    /// exports that; `None` otherwise.
    pub fn event_times(&mut self, batch: &Batch) -> Result<Option<Vec<Option<i64>>>, ProcessError> {
        self.start_call();
        let Guests::V0_2 {
            event_time: Some(event_time),
            ..
        } = &self.guests
        else {
            return Ok(None);
        };
        let outcome = event_time.call_extract(&mut self.store, batch);
        let p = &*self.plugin.inner;
        match outcome {
            Ok(times) if times.len() == batch.records.len() => Ok(Some(times)),
            Ok(times) => Err(ProcessError::Fatal {
                plugin: p.name.to_string(),
                message: format!(
                    "event-time.extract returned {} times for a batch of {} records; it must \
                     return one per record",
                    times.len(),
                    batch.records.len()
                ),
            }),
            Err(e) => Err(describe_trap(&p.name, &p.limits, e, &self.stderr)),
        }
    }

    /// Before a call into the plugin: a fresh deadline, a fresh stderr tail.
    fn start_call(&mut self) {
        let p = &*self.plugin.inner;
        self.stderr.clear_tail();
        self.store
            .set_epoch_deadline(deadline_ticks(p.limits.call_timeout));
    }

    fn finish_call(
        &mut self,
        outcome: wasmtime::Result<Result<(), PluginError>>,
    ) -> Result<Effects, ProcessError> {
        let p = &*self.plugin.inner;
        let effects = std::mem::take(&mut self.store.data_mut().effects);
        let plugin = || p.name.to_string();
        match outcome {
            Ok(Ok(())) => Ok(effects),
            Ok(Err(PluginError::Retryable(message))) => Err(ProcessError::Retryable {
                plugin: plugin(),
                message,
            }),
            Ok(Err(PluginError::Fatal(message))) => Err(ProcessError::Fatal {
                plugin: plugin(),
                message,
            }),
            Ok(Err(PluginError::Poison(poison))) => Err(ProcessError::Poison {
                plugin: plugin(),
                index: poison.index,
                message: poison.message,
            }),
            Err(e) => Err(describe_trap(&p.name, &p.limits, e, &self.stderr)),
        }
    }

    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Bytes of linear memory the instance holds (its largest memory).
    pub fn linear_memory_bytes(&self) -> usize {
        self.store.data().limiter.current_bytes
    }
}

/// Classifies a trap: deadline, memory cap, effects cap, or a plain trap (with the last
/// lines the plugin wrote to stderr, which carry a panic's message).
pub(super) fn describe_trap(
    name: &str,
    limits: &Limits,
    e: wasmtime::Error,
    stderr: &LogStream,
) -> ProcessError {
    let plugin = name.to_owned();
    if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
        return ProcessError::Deadline {
            plugin,
            limit: limits.call_timeout,
        };
    }
    if let Some(LimitExceeded::Memory { limit, requested }) = e.downcast_ref::<LimitExceeded>() {
        return ProcessError::Memory {
            plugin,
            limit: *limit,
            requested: *requested,
        };
    }
    if e.downcast_ref::<EffectError>().is_some() {
        match e.downcast::<EffectError>() {
            Ok(cause) => return ProcessError::Effects { plugin, cause },
            Err(e) => {
                return ProcessError::Trap {
                    plugin,
                    detail: format!("{e:#}"),
                };
            }
        }
    }
    let mut detail = match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{e:#}"),
    };
    let tail = stderr.tail();
    if !tail.is_empty() {
        detail.push_str("; its stderr ended with: ");
        detail.push_str(&tail.join(" | "));
    }
    ProcessError::Trap { plugin, detail }
}
