//! Kafka as managed clusters serve it, on loopback: an Apache Kafka of the test's own with
//! a second listener secured by TLS (the client verifying the broker, or both verifying
//! each other) or by SASL/SCRAM-SHA-512 (over plaintext or TLS), SCRAM users created when
//! its storage is formatted. Its PLAINTEXT listener stays open for the tests' own readers.
//! The broker is killed on drop.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;

use crate::kafka::Kafka;
use crate::redis_topologies::Certs;
use crate::services::free_port;

/// How a broker is secured.
pub enum Security<'a> {
    /// TLS, the client verifying the broker; `mutual`: the broker verifies the client too.
    Tls { certs: &'a Certs, mutual: bool },
    /// SASL/SCRAM-SHA-512 with this user; `tls`: over TLS (SASL_SSL).
    Scram {
        user: &'a str,
        password: &'a str,
        tls: Option<&'a Certs>,
    },
    /// SASL/OAUTHBEARER with unsecured JWTs (Kafka's default validator; librdkafka makes
    /// the token for `principal`), over plaintext: the token flow, not its signature.
    OAuthBearer { principal: &'a str },
}

pub struct SecureBroker {
    /// The port of the secured listener, the one clients under test use.
    pub port: u16,
    /// The broker's PLAINTEXT listener (no authentication): for the tests' own readers.
    pub plain_port: u16,
    /// librdkafka properties a client of the secured listener needs.
    pub properties: Vec<(String, String)>,
    pub kafka: Kafka,
    _keys: tempfile::TempDir,
}

impl SecureBroker {
    pub fn start(security: Security<'_>) -> SecureBroker {
        Self::start_with(security, &[])
    }

    /// A secured broker with more `server.properties` lines (an authorizer, say).
    pub fn start_with(security: Security<'_>, settings: &[&str]) -> SecureBroker {
        let keys = tempfile::tempdir().expect("tempdir");
        let (certs, mutual) = match &security {
            Security::Tls { certs, mutual } => (Some(*certs), *mutual),
            Security::Scram { tls, .. } => (*tls, false),
            Security::OAuthBearer { .. } => (None, false),
        };
        let protocol = match &security {
            Security::Tls { .. } => "SSL",
            Security::Scram { tls: Some(_), .. } => "SASL_SSL",
            Security::Scram { tls: None, .. } | Security::OAuthBearer { .. } => "SASL_PLAINTEXT",
        };
        let secure = free_port();
        let mut lines: Vec<String> = vec![format!(
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SECURE:{protocol}"
        )];
        if let Some(c) = certs {
            // Kafka reads PEM key stores (KIP-651): the key (PKCS#8) and its certificate in
            // one file.
            let store = keys.path().join("server-keystore.pem");
            let pem = [c.server_key(), c.server_cert()]
                .iter()
                .map(|p| std::fs::read_to_string(p).expect("read a PEM file"))
                .collect::<String>();
            std::fs::write(&store, pem).expect("write the key store");
            lines.extend([
                "ssl.keystore.type=PEM".to_owned(),
                format!("ssl.keystore.location={}", store.display()),
                "ssl.truststore.type=PEM".to_owned(),
                format!("ssl.truststore.location={}", c.ca().display()),
                format!(
                    "ssl.client.auth={}",
                    if mutual { "required" } else { "none" }
                ),
            ]);
        }
        let mut format_args = Vec::new();
        if let Security::OAuthBearer { .. } = &security {
            lines.extend([
                "sasl.enabled.mechanisms=OAUTHBEARER".to_owned(),
                "listener.name.secure.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;".to_owned(),
            ]);
        }
        if let Security::Scram { user, password, .. } = &security {
            lines.extend([
                "sasl.enabled.mechanisms=SCRAM-SHA-512".to_owned(),
                "listener.name.secure.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;".to_owned(),
            ]);
            format_args = vec![
                "--add-scram".to_owned(),
                format!("SCRAM-SHA-512=[name={user},password={password}]"),
            ];
        }
        lines.extend(settings.iter().map(|s| s.to_string()));
        let kafka = Kafka::start_custom(
            |plain, controller| {
                let listeners = format!(
                    "PLAINTEXT://127.0.0.1:{plain},SECURE://127.0.0.1:{secure},CONTROLLER://127.0.0.1:{controller}"
                );
                let mut all = vec![
                    format!("listeners={listeners}"),
                    format!("advertised.listeners={listeners}"),
                ];
                all.append(&mut lines);
                all
            },
            &format_args,
        );
        let mut properties = Vec::new();
        let mut set = |k: &str, v: &str| properties.push((k.to_owned(), v.to_owned()));
        set("security.protocol", protocol);
        if let Some(c) = certs {
            set("ssl.ca.location", &c.ca().display().to_string());
            if mutual {
                set(
                    "ssl.certificate.location",
                    &c.client_cert().display().to_string(),
                );
                set("ssl.key.location", &c.client_key().display().to_string());
            }
        }
        if let Security::OAuthBearer { principal } = &security {
            set("sasl.mechanism", "OAUTHBEARER");
            set("enable.sasl.oauthbearer.unsecure.jwt", "true");
            set("sasl.oauthbearer.config", &format!("principal={principal}"));
        }
        if let Security::Scram { user, password, .. } = &security {
            set("sasl.mechanism", "SCRAM-SHA-512");
            set("sasl.username", user);
            set("sasl.password", password);
        }
        SecureBroker {
            port: secure,
            plain_port: kafka.port,
            properties,
            kafka,
            _keys: keys,
        }
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The client properties as `-X` arguments.
    pub fn x_args(&self) -> Vec<String> {
        self.properties
            .iter()
            .flat_map(|(k, v)| ["-X".to_owned(), format!("{k}={v}")])
            .collect()
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers());
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// Creates a topic through the PLAINTEXT listener (allowed everything).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.kafka.brokers())
            .create()
            .expect("admin client");
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results =
            futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new()))
                .expect("create topic");
        for r in results {
            r.expect("topic created");
        }
    }

    /// A producer of the secured listener.
    pub fn producer(&self) -> FutureProducer {
        self.config()
            .set("enable.idempotence", "true")
            .set("linger.ms", "10")
            .create()
            .expect("producer")
    }
}
