//! How every Kafka client of the host is configured, in one place: the bootstrap
//! servers, then the host's defaults for that client, then the user's `-X` properties,
//! which win. The consumer, the producers (emits, dead letters, `host produce`) and the
//! admin look-ups of `host offsets` are all made here, so a property such as
//! `security.protocol` reaches each of them.

use std::path::{Path, PathBuf};

use rdkafka::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the Kafka properties file {path} ({cause}); check --kafka-config")]
    Unreadable { path: String, cause: String },
    #[error(
        "{path}:{line}: expected key=value (a librdkafka property such as \
         security.protocol=SASL_SSL), got {text:?}"
    )]
    BadLine {
        path: String,
        line: usize,
        text: String,
    },
}

/// Reads a librdkafka properties file, the format kcat's `-F` and Java clients'
/// `client.properties` use: `key=value` (or `key: value`) per line, `#` and `!` start a
/// comment line, blank lines are skipped, whitespace around keys and values is trimmed.
pub fn read_properties(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
        path: shown.clone(),
        cause: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let split = line.find(['=', ':']);
        match split {
            Some(at) if at > 0 => {
                let (k, v) = (line[..at].trim(), line[at + 1..].trim());
                out.push((k.to_owned(), v.to_owned()));
            }
            _ => {
                // The line may hold a secret: show only its start.
                let text: String = line.chars().take(12).collect();
                return Err(ConfigError::BadLine {
                    path: shown,
                    line: i + 1,
                    text: format!("{text}…"),
                });
            }
        }
    }
    Ok(out)
}

/// Properties whose values are secrets: never logged, never shown by the admin API.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.contains("jaas")
        || k == "ssl.key.pem"
        || k == "ssl_key"
        || k == "sasl.oauthbearer.config"
        || k.ends_with(".token")
}

/// `properties` with secret values replaced by `***`.
pub fn redacted<'a>(
    properties: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Vec<(String, String)> {
    properties
        .into_iter()
        .map(|(k, v)| {
            let v = if is_secret(k) {
                "***".to_owned()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// What the linked librdkafka was built with (`builtin.features`), as it reports it.
pub fn builtin_features() -> Vec<String> {
    ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .map(|f| f.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default()
}

/// Which kind of client a configuration is for. `-X` goes to every client a command makes;
/// the properties librdkafka knows only for the other kind are left out, so a consumer
/// setting (`session.timeout.ms`) does not make every producer warn `CONFWARN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// Consumers, and the clients that only look up metadata or offsets.
    Consumer,
    Producer,
}

/// librdkafka's properties of consumers only (scope `C` in its CONFIGURATION.md).
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
    "group.protocol",
    "group.remote.assignor",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "allow.auto.create.topics",
    "auto.offset.reset",
    "consume.callback.max.messages",
];

/// ...and of producers only (scope `P`).
const PRODUCER_ONLY: &[&str] = &[
    "transactional.id",
    "transaction.timeout.ms",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.ms",
    "linger.ms",
    "message.send.max.retries",
    "retries",
    "queue.buffering.backpressure.threshold",
    "compression.codec",
    "compression.type",
    "compression.level",
    "batch.num.messages",
    "batch.size",
    "delivery.report.only.error",
    "sticky.partitioning.linger.ms",
    "request.required.acks",
    "acks",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "partitioner",
];

impl Client {
    /// Whether `key` is a property of this kind of client.
    pub fn takes(self, key: &str) -> bool {
        let other = match self {
            Client::Consumer => PRODUCER_ONLY,
            Client::Producer => CONSUMER_ONLY,
        };
        !other.contains(&key)
    }
}

/// A client configuration: `bootstrap.servers`, `defaults`, then the `overrides` of this
/// kind of client (later wins).
pub fn client_config(
    kind: Client,
    brokers: &str,
    defaults: &[(&str, &str)],
    overrides: &[(String, String)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in defaults {
        config.set(*k, *v);
    }
    for (k, v) in overrides.iter().filter(|(k, _)| kind.takes(k)) {
        config.set(k, v);
    }
    config
}

/// How to reach Kafka; every command that makes Kafka clients takes these, and every
/// client it makes (consumer, producers, the offset mirror, metadata look-ups) gets them.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(
        short = 'b',
        long,
        default_value = "localhost:9092",
        env = "STREAMHOST_BROKERS"
    )]
    pub brokers: String,

    /// A librdkafka properties file (key=value lines, `#` comments), as kcat -F or a Java
    /// client.properties take; -X wins over it. Keeps secrets out of argv.
    #[arg(long, value_name = "FILE", env = "STREAMHOST_KAFKA_CONFIG")]
    pub kafka_config: Option<PathBuf>,

    /// A librdkafka property, as key=value (repeatable): security.protocol, sasl.*, ssl.*,
    /// compression.type, ... (the environment variable takes several, separated by `;`).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = crate::args::parse_key_value, env = "STREAMHOST_KAFKA_PROPERTIES", hide_env_values = true, value_delimiter = ';')]
    pub kafka: Vec<(String, String)>,
}

impl KafkaArgs {
    /// The properties file's, then -X's (later wins).
    pub fn properties(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut all = match &self.kafka_config {
            Some(path) => read_properties(path)?,
            None => Vec::new(),
        };
        all.extend(self.kafka.iter().cloned());
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::Client;
    use super::{builtin_features, client_config, is_secret, read_properties};

    #[test]
    fn properties_files_read_as_kcat_and_java_clients_write_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.properties");
        std::fs::write(
            &path,
            "# managed cluster\n\nsecurity.protocol = SASL_SSL\nsasl.mechanism: SCRAM-SHA-512\n! old comment\nsasl.password=a=b:c\n",
        )
        .unwrap();
        let props = read_properties(&path).unwrap();
        let want = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.password", "a=b:c"),
        ];
        let got: Vec<(&str, &str)> = props
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, want);
        std::fs::write(&path, "security.protocol=SSL\nsasl.passwordhunter2\n").unwrap();
        let err = read_properties(&path).unwrap_err().to_string();
        assert!(err.contains("client.properties:2"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn secrets_are_recognised() {
        for k in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "sasl.jaas.config",
            "ssl.key.pem",
        ] {
            assert!(is_secret(k), "{k}");
        }
        for k in [
            "sasl.username",
            "security.protocol",
            "ssl.ca.location",
            "compression.type",
        ] {
            assert!(!is_secret(k), "{k}");
        }
    }

    #[test]
    fn librdkafka_is_built_with_tls_sasl_and_every_codec() {
        let f = builtin_features();
        for want in [
            "ssl",
            "sasl_plain",
            "sasl_scram",
            "sasl_oauthbearer",
            "gzip",
            "snappy",
            "lz4",
            "zstd",
        ] {
            assert!(f.iter().any(|x| x == want), "{want} missing from {f:?}");
        }
    }

    #[test]
    fn user_properties_win_over_the_hosts_defaults() {
        let overrides = [("linger.ms".to_owned(), "50".to_owned())];
        let c = client_config(
            Client::Producer,
            "b:9092",
            &[("linger.ms", "5"), ("acks", "all")],
            &overrides,
        );
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(c.get("linger.ms"), Some("50"));
        assert_eq!(c.get("acks"), Some("all"));
    }

    #[test]
    fn properties_reach_only_the_clients_they_belong_to() {
        let x = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let overrides = x(&[
            ("session.timeout.ms", "6000"),
            ("compression.type", "zstd"),
            ("security.protocol", "sasl_ssl"),
        ]);
        let producer = client_config(Client::Producer, "b:9092", &[], &overrides);
        assert_eq!(producer.get("session.timeout.ms"), None);
        assert_eq!(producer.get("compression.type"), Some("zstd"));
        assert_eq!(producer.get("security.protocol"), Some("sasl_ssl"));
        let consumer = client_config(Client::Consumer, "b:9092", &[], &overrides);
        assert_eq!(consumer.get("session.timeout.ms"), Some("6000"));
        assert_eq!(consumer.get("compression.type"), None);
        assert_eq!(consumer.get("security.protocol"), Some("sasl_ssl"));
    }
}
