//! How every Kafka client of the host is configured, in one place: the bootstrap
//! servers, then the host's defaults for that client, then the user's `-X` properties,
//! which win. The consumer, the producers (emits, dead letters, `host produce`) and the
//! admin look-ups of `host offsets` are all made here, so a property such as
//! `security.protocol` reaches each of them.

use rdkafka::ClientConfig;

/// A client configuration: `bootstrap.servers`, `defaults`, then `overrides` (later wins).
pub fn client_config(
    brokers: &str,
    defaults: &[(&str, &str)],
    overrides: &[(String, String)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in defaults {
        config.set(*k, *v);
    }
    for (k, v) in overrides {
        config.set(k, v);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::client_config;

    #[test]
    fn user_properties_win_over_the_hosts_defaults() {
        let overrides = [("linger.ms".to_owned(), "50".to_owned())];
        let c = client_config("b:9092", &[("linger.ms", "5"), ("acks", "all")], &overrides);
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(c.get("linger.ms"), Some("50"));
        assert_eq!(c.get("acks"), Some("all"));
    }
}
