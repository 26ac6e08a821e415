//! Wall-clock time since the Unix epoch. A clock set before 1970 reads as the epoch:
//! what uses it (timestamps, ids, jitter) is then wrong but harmless, never a panic.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, the unit of Kafka timestamps.
pub fn unix_ms() -> i64 {
    (unix_nanos() / 1_000_000) as i64
}

/// Nanoseconds since the Unix epoch.
pub fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
