//! The job's plugin, swappable while the job runs.

use std::sync::{Arc, Mutex};

use crate::runtime::Plugin;
use crate::sync::Locked;

/// The job's current plugin and its generation. `host serve` replaces it to hot-swap a
/// running job's plugin; each worker picks the new one up between two batches.
#[derive(Clone)]
pub struct PluginSlot(Arc<Mutex<(u64, Plugin)>>);

impl PluginSlot {
    pub fn new(plugin: Plugin) -> Self {
        Self(Arc::new(Mutex::new((0, plugin))))
    }

    pub fn current(&self) -> (u64, Plugin) {
        let slot = self.0.locked();
        (slot.0, slot.1.clone())
    }

    /// Installs `plugin`; returns its generation.
    pub fn swap(&self, plugin: Plugin) -> u64 {
        let mut slot = self.0.locked();
        slot.0 += 1;
        slot.1 = plugin;
        slot.0
    }

    pub fn generation(&self) -> u64 {
        self.0.locked().0
    }
}
