//! A partition's time as the store keeps it: its clock (highest event time seen and
//! watermark) and its pending timers and expiries, committed with its offsets.
//!
//! Timers and expiries share one sorted set per partition and domain (scored by when
//! they are due), told apart by the first byte of the member: `t` + the plugin's timer
//! key, `x` + the state key that expires. So finding what is due costs one range read per
//! domain, whatever the number pending.

use std::collections::HashMap;

/// The clock a timer or an expiry follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeDomain {
    /// The partition's watermark.
    Event,
    /// The host's wall clock.
    Processing,
}

impl TimeDomain {
    pub const ALL: [TimeDomain; 2] = [TimeDomain::Event, TimeDomain::Processing];

    pub fn index(self) -> usize {
        match self {
            TimeDomain::Event => 0,
            TimeDomain::Processing => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TimeDomain::Event => "event",
            TimeDomain::Processing => "processing",
        }
    }
}

/// What is due: a plugin's timer, or a state key's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeKind {
    Timer,
    Expiry,
}

/// One pending timer or expiry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeKey {
    pub domain: TimeDomain,
    pub kind: TimeKind,
    /// The timer's key, or the state key that expires.
    pub key: String,
}

impl TimeKey {
    pub fn timer(domain: TimeDomain, key: impl Into<String>) -> Self {
        Self {
            domain,
            kind: TimeKind::Timer,
            key: key.into(),
        }
    }

    pub fn expiry(domain: TimeDomain, key: impl Into<String>) -> Self {
        Self {
            domain,
            kind: TimeKind::Expiry,
            key: key.into(),
        }
    }

    /// The member of the domain's sorted set.
    pub fn member(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(self.key.len() + 1);
        m.push(match self.kind {
            TimeKind::Timer => b't',
            TimeKind::Expiry => b'x',
        });
        m.extend_from_slice(self.key.as_bytes());
        m
    }

    /// Reads a member back; `None` for one this host did not write.
    pub fn from_member(domain: TimeDomain, member: &[u8]) -> Option<Self> {
        let (kind, key) = member.split_first()?;
        let kind = match kind {
            b't' => TimeKind::Timer,
            b'x' => TimeKind::Expiry,
            _ => return None,
        };
        Some(Self {
            domain,
            kind,
            key: String::from_utf8(key.to_vec()).ok()?,
        })
    }
}

/// A partition's event-time progress. The watermark never goes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clock {
    pub max_event_time: Option<i64>,
    pub watermark: Option<i64>,
}

impl Clock {
    /// How it is stored: `max,watermark`, an absent one empty.
    pub fn encode(&self) -> String {
        let f = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        format!("{},{}", f(self.max_event_time), f(self.watermark))
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (max, wm) = text.split_once(',')?;
        let f = |s: &str| -> Option<Option<i64>> {
            if s.is_empty() {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        Some(Self {
            max_event_time: f(max)?,
            watermark: f(wm)?,
        })
    }
}

/// A batch's changes to its partition's time, committed with its offsets.
#[derive(Debug, Default, Clone)]
pub struct TimeWrites {
    /// `Some(at)`: set (or moved) to fire at `at`; `None`: removed (cancelled or fired).
    pub entries: HashMap<TimeKey, Option<i64>>,
    /// The partition's clock after the batch; `None` leaves the stored one.
    pub clock: Option<Clock>,
}

impl TimeWrites {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.clock.is_none()
    }

    pub fn set(&mut self, key: TimeKey, at: i64) {
        self.entries.insert(key, Some(at));
    }

    pub fn remove(&mut self, key: TimeKey) {
        self.entries.insert(key, None);
    }
}

/// What a due read found: entries due by then (earliest first, at most the limit asked),
/// and per domain the earliest entry left after them (`None`: none left).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Due {
    pub entries: Vec<(TimeKey, i64)>,
    pub next: [Option<i64>; 2],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_clocks_round_trip() {
        let k = TimeKey::expiry(TimeDomain::Event, "w:1:a");
        assert_eq!(k.member(), b"xw:1:a");
        assert_eq!(
            TimeKey::from_member(TimeDomain::Event, &k.member()),
            Some(k)
        );
        assert_eq!(TimeKey::from_member(TimeDomain::Event, b"?x"), None);
        for c in [
            Clock::default(),
            Clock {
                max_event_time: Some(-5),
                watermark: Some(1_700_000_000_000),
            },
        ] {
            assert_eq!(Clock::decode(&c.encode()), Some(c));
        }
        assert_eq!(Clock::decode("x,1"), None);
    }
}
