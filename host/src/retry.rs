//! The host's one retry rule: exponential backoff, capped, with full jitter, and a wait
//! that ends early when the caller is stopping. Every loop that waits for Redis, a broker
//! or a plugin to recover goes through [`Retry`] (or, where attempts are counted by a
//! policy of their own, [`Backoff`] and [`sleep_unless`]).

use std::time::{Duration, Instant};

/// How long a waiting loop sleeps before it looks at its stop flag again.
const STOP_SLICE: Duration = Duration::from_millis(50);

/// The pause before each new attempt: `initial`, doubling per failure up to `max`, each
/// drawn from the upper half so that many workers failing together do not retry in
/// lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The pause after failure number `failures` (counting from 1).
    pub fn pause(&self, failures: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        let cap = exp.min(self.max);
        cap.mul_f64(0.5 + 0.5 * jitter_fraction())
    }
}

/// When a [`Retry`] gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// After this long since the first attempt.
    For(Duration),
    /// After this many retries (attempts after the first).
    Retries(u32),
    /// Never; only the stop flag ends it.
    Never,
}

/// Why a [`Retry`] ended without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// The caller is stopping (a signal, a revoked partition): not a failure.
    Stopped,
    /// The limit was reached after `failures` failed attempts over `waited`.
    GaveUp { failures: u32, waited: Duration },
}

impl std::fmt::Display for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Halt::Stopped => f.write_str("stopped while waiting to retry"),
            Halt::GaveUp { failures, waited } => write!(
                f,
                "gave up after {failures} attempts in {:.1} s",
                waited.as_secs_f64()
            ),
        }
    }
}

/// One retrying loop's bookkeeping. Call [`Retry::again`] after each failed attempt.
pub struct Retry<'a> {
    backoff: Backoff,
    limit: Limit,
    stop: &'a dyn Fn() -> bool,
    started: Instant,
    failures: u32,
}

impl<'a> Retry<'a> {
    pub fn new(backoff: Backoff, limit: Limit, stop: &'a dyn Fn() -> bool) -> Self {
        Self {
            backoff,
            limit,
            stop,
            started: Instant::now(),
            failures: 0,
        }
    }

    /// Failed attempts so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a failed attempt: `Err` when the limit is reached or the caller is stopping;
    /// otherwise hands the pause to `announce` (to log it) and sleeps it, waking early if
    /// the caller stops.
    pub fn again(&mut self, announce: impl FnOnce(Duration)) -> Result<(), Halt> {
        self.failures = self.failures.saturating_add(1);
        let waited = self.started.elapsed();
        let over = match self.limit {
            Limit::For(give_up) => waited >= give_up,
            Limit::Retries(n) => self.failures > n,
            Limit::Never => false,
        };
        if over {
            return Err(Halt::GaveUp {
                failures: self.failures,
                waited,
            });
        }
        if (self.stop)() {
            return Err(Halt::Stopped);
        }
        let pause = self.backoff.pause(self.failures);
        announce(pause);
        if sleep_unless(self.stop, pause) {
            Ok(())
        } else {
            Err(Halt::Stopped)
        }
    }
}

/// Sleeps `pause`, looking at `stop` every few milliseconds; `false` when it was raised.
pub fn sleep_unless(stop: &dyn Fn() -> bool, pause: Duration) -> bool {
    let until = Instant::now() + pause;
    loop {
        if stop() {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(STOP_SLICE));
    }
}

/// A number in [0, 1) that differs between calls and processes; no cryptographic needs.
fn jitter_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(crate::clock::unix_nanos());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let b = Backoff::new(100 * MS, 1000 * MS);
        for failures in 1..40 {
            let d = b.pause(failures);
            let full = (100 * MS * (1u32 << (failures - 1).min(20))).min(1000 * MS);
            assert!(
                d >= full / 2 && d <= full,
                "failure {failures}: {d:?} outside [{:?}, {full:?}]",
                full / 2
            );
        }
    }

    #[test]
    fn gives_up_after_the_retries() {
        let never = || false;
        let mut r = Retry::new(Backoff::new(MS, MS), Limit::Retries(2), &never);
        assert_eq!(r.again(|_| {}), Ok(()));
        assert_eq!(r.again(|_| {}), Ok(()));
        assert!(matches!(
            r.again(|_| {}),
            Err(Halt::GaveUp { failures: 3, .. })
        ));
    }

    #[test]
    fn gives_up_after_the_time() {
        let never = || false;
        let mut r = Retry::new(
            Backoff::new(5 * MS, 5 * MS),
            Limit::For(Duration::ZERO),
            &never,
        );
        assert!(matches!(
            r.again(|_| {}),
            Err(Halt::GaveUp { failures: 1, .. })
        ));
    }

    #[test]
    fn a_stop_ends_the_pause_and_is_not_a_failure() {
        let calls = Cell::new(0);
        // Raised on the second look, i.e. during the pause.
        let stop = || {
            calls.set(calls.get() + 1);
            calls.get() > 1
        };
        let mut r = Retry::new(
            Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600)),
            Limit::Never,
            &stop,
        );
        let started = Instant::now();
        assert_eq!(r.again(|_| {}), Err(Halt::Stopped));
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn the_pause_is_announced_before_it_is_slept() {
        let never = || false;
        let mut r = Retry::new(Backoff::new(2 * MS, 2 * MS), Limit::Never, &never);
        let announced = Cell::new(None);
        assert_eq!(r.again(|p| announced.set(Some(p))), Ok(()));
        let p = announced.get().expect("announced");
        assert!(p >= MS && p <= 2 * MS, "{p:?}");
        assert_eq!(r.failures(), 1);
    }
}
