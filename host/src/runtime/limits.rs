//! Sandbox limits of one plugin instance.

use std::time::Duration;

use wasmtime::ResourceLimiter;

use super::error::LimitExceeded;

/// Limits per plugin instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Cap on the linear memory of each instance.
    pub memory_bytes: usize,
    /// Wall-clock deadline of one `process` (or `init`) call.
    pub call_timeout: Duration,
    /// Cap on the emits and state writes one batch may buffer.
    pub effects_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(10),
            effects_bytes: 64 << 20,
        }
    }
}

/// Refuses memory growth past the cap with a typed error (which traps the call) rather
/// than a silent `-1`, so the host can report "memory limit" instead of a generic trap.
pub(crate) struct Limiter {
    pub memory_bytes: usize,
    /// The instance's linear memories, all together (they only grow): for metrics and the
    /// cost table.
    pub current_bytes: usize,
}

/// Tables hold function references; a million is far past any real plugin.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(LimitExceeded::Memory {
                limit: self.memory_bytes,
                requested: desired,
            }
            .into());
        }
        self.current_bytes += desired.saturating_sub(current);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
