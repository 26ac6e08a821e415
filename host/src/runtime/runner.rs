//! A partition's plugin instance, kept alive across batches and replaced by a fresh one
//! after a call that left it unusable (a trap, a deadline, the memory cap).

use super::{
    InstanceSettings, LoadError, Plugin, PluginInstance, ProcessError, Timer, TimerContext,
};
use crate::batch::Batch;
use crate::batch::effects::Effects;

/// Keeps one live instance of a plugin and replaces it after a trap.
pub struct Runner {
    plugin: Plugin,
    settings: InstanceSettings,
    instance: Option<PluginInstance>,
}

impl Runner {
    pub fn new(plugin: Plugin, settings: InstanceSettings) -> Self {
        Self {
            plugin,
            settings,
            instance: None,
        }
    }

    /// Instantiates now (rather than at the first batch), so that `init` errors surface
    /// before any data is read.
    pub fn warm_up(&mut self) -> Result<(), LoadError> {
        if self.instance.is_none() {
            self.instance = Some(self.plugin.instantiate(&self.settings)?);
        }
        Ok(())
    }

    pub fn process(&mut self, batch: &mut Batch) -> Result<Effects, ProcessError> {
        self.with_instance(|i| i.process(batch))
    }

    pub fn on_timers(
        &mut self,
        context: &TimerContext,
        timers: &[Timer],
        effects: Effects,
    ) -> Result<Effects, ProcessError> {
        self.with_instance(|i| i.on_timers(context, timers, effects))
    }

    /// The effects of a batch without records (one that only fires timers).
    pub fn empty_effects(&self, processing_time: i64) -> Effects {
        let mut effects = Effects::new(self.plugin.inner.limits.effects_bytes);
        effects.processing_time = processing_time;
        effects.track_expiries = self.plugin.has_time();
        effects
    }

    pub fn event_times(&mut self, batch: &Batch) -> Result<Option<Vec<Option<i64>>>, ProcessError> {
        if !self.plugin.has_event_time() {
            return Ok(None);
        }
        self.with_instance(|i| i.event_times(batch))
    }

    /// Runs `f` on the live instance (made first if needed) and drops the instance when
    /// the error says it is lost.
    fn with_instance<T>(
        &mut self,
        f: impl FnOnce(&mut PluginInstance) -> Result<T, ProcessError>,
    ) -> Result<T, ProcessError> {
        self.warm_up()?;
        let Some(instance) = self.instance.as_mut() else {
            unreachable!("warm_up leaves an instance");
        };
        let result = f(instance);
        if let Err(e) = &result
            && e.instance_lost()
        {
            tracing::debug!(plugin = self.plugin.name(), "dropping the failed instance");
            self.instance = None;
        }
        result
    }

    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// A runner of another plugin (a new version) with the same settings.
    pub fn with_plugin(&self, plugin: Plugin) -> Runner {
        Runner::new(plugin, self.settings.clone())
    }

    /// Linear memory of the live instance, if there is one.
    pub fn linear_memory_bytes(&self) -> Option<usize> {
        self.instance
            .as_ref()
            .map(PluginInstance::linear_memory_bytes)
    }
}
