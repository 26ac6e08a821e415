//! Which Kafka errors heal by waiting and which do not, and what to tell the user.
//!
//! librdkafka retries nearly everything on its own, forever. That is right for a broker
//! that restarts, and wrong for a wrong password, an untrusted certificate, a topic the
//! host may not read or records it cannot decode: those never heal, so the host stops
//! the job with a message that says what to fix, offsets where they were.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use crate::sync::Locked;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// A client-level error (librdkafka's error callback) that is configuration, not an
/// outage: the fix for the user, or `None` when waiting may help.
pub fn configuration_problem(code: RDKafkaErrorCode, text: &str) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    match code {
        RDKafkaErrorCode::Authentication => Some(
            "authentication failed: check sasl.mechanism (the broker's mechanism), \
             sasl.username and sasl.password (-X, --kafka-config), and that the user exists",
        ),
        RDKafkaErrorCode::SSL
            if t.contains("certificate verify failed") || t.contains("could not be verified") =>
        {
            Some(
                "the broker's TLS certificate is not trusted: set ssl.ca.location to the CA \
                 that signed it (or install ca-certificates for a public CA), and check the \
                 broker address matches the certificate",
            )
        }
        RDKafkaErrorCode::SSL if t.contains("alert") || t.contains("certificate required") => Some(
            "the broker refused the TLS handshake: if it asks for client certificates, \
                 set ssl.certificate.location and ssl.key.location (and ssl.key.password)",
        ),
        RDKafkaErrorCode::SSL if t.contains("ssl.") && t.contains("failed to") => {
            Some("the TLS settings cannot be used: check the ssl.* files and passwords")
        }
        RDKafkaErrorCode::InvalidArgument | RDKafkaErrorCode::UnsupportedFeature => {
            Some("check the -X / --kafka-config properties")
        }
        _ => None,
    }
}

/// A consumer error of one partition that no retry fixes: the fix for the user.
pub fn unhealable_consume_error(e: &KafkaError) -> Option<&'static str> {
    match e.rdkafka_error_code()? {
        RDKafkaErrorCode::NotImplemented | RDKafkaErrorCode::UnsupportedCompressionType => Some(
            "the records cannot be decoded: their producer used a compression codec or \
             record format this host was not built with (`host --version` lists the \
             codecs); nothing past the last committed offset was processed",
        ),
        RDKafkaErrorCode::TopicAuthorizationFailed => Some(
            "the host may not read this topic: grant its principal Read and Describe on the \
             topic (Kafka ACLs)",
        ),
        RDKafkaErrorCode::GroupAuthorizationFailed => Some(
            "the host may not use its consumer group: grant its principal Read on the group \
             (--group), or use static assignment (--partitions)",
        ),
        RDKafkaErrorCode::ClusterAuthorizationFailed => {
            Some("the host's principal is not authorized on this cluster (Kafka ACLs)")
        }
        RDKafkaErrorCode::Authentication => {
            Some("authentication failed: check sasl.mechanism, sasl.username and sasl.password")
        }
        _ => None,
    }
}

/// An error librdkafka repeats (a broker down: every reconnect) is logged once per this.
const LOG_REPEATS_EVERY: Duration = Duration::from_secs(10);

/// What a Kafka client's callbacks learned: the newest error, the first configuration
/// problem, and librdkafka's logs and errors written through a throttle.
pub struct Diagnostics {
    last_error: Mutex<Option<String>>,
    fatal: OnceLock<String>,
    throttle: Throttle,
}

impl Default for Diagnostics {
    fn default() -> Self {
        Self {
            last_error: Mutex::new(None),
            fatal: OnceLock::new(),
            throttle: Throttle::new(LOG_REPEATS_EVERY),
        }
    }
}

impl Diagnostics {
    /// The newest client-level error librdkafka reported.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.locked().clone()
    }

    /// Set once an error showed a configuration problem: what to tell the user.
    pub fn configuration_error(&self) -> Option<&str> {
        self.fatal.get().map(String::as_str)
    }

    pub fn error(&self, error: &KafkaError, reason: &str) {
        // The end of a partition is a signal a reader asked for (`enable.partition.eof`),
        // not a failure.
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
        {
            return;
        }
        let code = error.rdkafka_error_code();
        // "1/1 brokers are down" says less than the error before it (refused, TLS, ...).
        if code != Some(RDKafkaErrorCode::AllBrokersDown) {
            *self.last_error.locked() = Some(reason.to_owned());
        }
        if let Some(fix) = code.and_then(|c| configuration_problem(c, reason)) {
            let _ = self.fatal.set(format!("{reason}: {fix}"));
        }
        match self.throttle.admit(&format!("{code:?}")) {
            Some(0) => tracing::warn!(error = %error, "kafka: {reason}"),
            Some(repeats) => tracing::warn!(error = %error, repeats, "kafka: {reason}"),
            None => tracing::debug!(error = %error, "kafka: {reason}"),
        }
    }

    pub fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        use RDKafkaLogLevel::*;
        // The error callback says the same at warn; repeats go to debug.
        let key: String = fac.chars().chain(message.chars().take(48)).collect();
        match level {
            Emerg | Alert | Critical | Error | Warning => match self.throttle.admit(&key) {
                Some(0) => tracing::warn!(target: "librdkafka", "{fac}: {message}"),
                Some(repeats) => tracing::warn!(target: "librdkafka", repeats, "{fac}: {message}"),
                None => tracing::debug!(target: "librdkafka", "{fac}: {message}"),
            },
            Notice | Info => tracing::info!(target: "librdkafka", "{fac}: {message}"),
            Debug => tracing::debug!(target: "librdkafka", "{fac}: {message}"),
        }
    }
}

/// The context of the host's producers and look-up clients: librdkafka's errors and logs
/// through [`Diagnostics`], so an unreachable broker is a few lines, not dozens a second.
#[derive(Default)]
pub struct QuietContext(pub std::sync::Arc<Diagnostics>);

/// Also for the exactly-once relay's position reader, which never joins its group.
impl rdkafka::consumer::ConsumerContext for QuietContext {}

impl ClientContext for QuietContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.error(&error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.0.log(level, fac, message);
    }
}

/// Keeps librdkafka's repeats out of the log: the first occurrence of an error is logged,
/// repeats of it within `every` are counted and reported with the next one logged.
pub struct Throttle {
    every: Duration,
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(repeats since the last time)` when `key` should be logged now.
    pub fn admit(&self, key: &str) -> Option<u64> {
        let mut seen = self.seen.locked();
        let now = Instant::now();
        match seen.get_mut(key) {
            Some((last, repeats)) if now.duration_since(*last) < self.every => {
                *repeats += 1;
                None
            }
            Some((last, repeats)) => {
                let n = *repeats;
                *last = now;
                *repeats = 0;
                Some(n)
            }
            None => {
                seen.insert(key.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Throttle, configuration_problem};
    use rdkafka::types::RDKafkaErrorCode;
    use std::time::Duration;

    #[test]
    fn repeats_are_counted_not_logged() {
        let t = Throttle::new(Duration::from_secs(60));
        assert_eq!(t.admit("a"), Some(0));
        assert_eq!(t.admit("a"), None);
        assert_eq!(t.admit("a"), None);
        assert_eq!(t.admit("b"), Some(0));
        let quick = Throttle::new(Duration::ZERO);
        assert_eq!(quick.admit("a"), Some(0));
        assert_eq!(quick.admit("a"), Some(0));
    }

    #[test]
    fn credentials_and_certificates_are_configuration() {
        assert!(
            configuration_problem(RDKafkaErrorCode::Authentication, "SASL SCRAM failed").is_some()
        );
        let verify = "ssl://b:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed";
        assert!(configuration_problem(RDKafkaErrorCode::SSL, verify).is_some());
        assert!(
            configuration_problem(RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down")
                .is_none()
        );
        assert!(
            configuration_problem(
                RDKafkaErrorCode::BrokerTransportFailure,
                "Connection refused"
            )
            .is_none()
        );
    }
}
