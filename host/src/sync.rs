//! Locks that outlive a panicked holder.
//!
//! A panic in one partition's worker or one job must not take the host's shared state
//! with it: every value the host guards with a mutex (maps of jobs and workers, counters,
//! queues of commits, log throttles) stays valid between any two of its updates, so the
//! next holder takes it as the panicking one left it instead of poisoning every later
//! caller.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub trait Locked<T> {
    /// The guard, whether or not an earlier holder panicked.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
