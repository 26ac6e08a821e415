//! Kafka as managed clusters serve it, on loopback: TLS (and mutual TLS) terminated by
//! Debian's `socat` in front of tansu, which advertises the TLS port; SASL/SCRAM-SHA-512
//! by a tansu build with file-backed storage (scripts/install-tansu --sasl), whose users
//! survive the restart that turns authentication on. Every process is killed on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;

use crate::redis_topologies::Certs;
use crate::services::{Process, free_port, port_open, tansu_bin, wait_until};

/// The tansu with SQLite storage (users persist), built by `scripts/install-tansu --sasl`.
pub fn tansu_sasl_bin() -> PathBuf {
    let path = std::env::var_os("STREAMHOST_TANSU_SASL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/streamhost/tansu-sasl/bin/tansu")
        });
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-tansu --sasl (scripts/test does)",
        path.display()
    );
    path
}

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
}

pub struct SecureBroker {
    /// The port clients use (TLS when secured by TLS).
    pub port: u16,
    /// The port tansu itself listens on behind socat (plain, unauthenticated with TLS):
    /// for the tests' own raw readers.
    pub plain_port: u16,
    /// librdkafka properties a client needs.
    pub properties: Vec<(String, String)>,
    _tansu: Process,
    _socat: Option<Process>,
    _dir: tempfile::TempDir,
}

impl SecureBroker {
    pub fn start(security: Security<'_>) -> SecureBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        let (certs, mutual) = match &security {
            Security::Tls { certs, mutual } => (Some(*certs), *mutual),
            Security::Scram { tls, .. } => (*tls, false),
        };
        let inner = free_port();
        let port = if certs.is_some() { free_port() } else { inner };
        let tansu = match &security {
            Security::Tls { .. } => spawn_tansu(
                &tansu_bin(),
                dir.path(),
                inner,
                port,
                "memory://tansu/",
                false,
            ),
            Security::Scram { user, password, .. } => {
                // Users persist only with file-backed storage, and are created while
                // authentication is off; the restart turns it on.
                let bin = tansu_sasl_bin();
                let storage = "sqlite://tansu.db";
                let first = spawn_tansu(&bin, dir.path(), inner, inner, storage, false);
                let out = Command::new(&bin)
                    .args(["user", "create", user, password, "--broker"])
                    .arg(format!("tcp://127.0.0.1:{inner}"))
                    .current_dir(dir.path())
                    .stdin(Stdio::null())
                    .output()
                    .expect("tansu user create");
                assert!(
                    out.status.success(),
                    "tansu user create: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                drop(first);
                wait_until(Duration::from_secs(10), "the first tansu to exit", || {
                    !port_open(inner)
                });
                spawn_tansu(&bin, dir.path(), inner, port, storage, true)
            }
        };
        let socat = certs.map(|c| {
            let verify = if mutual { "1" } else { "0" };
            let listen = format!(
                "openssl-listen:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},cafile={},verify={verify}",
                c.server_cert().display(),
                c.server_key().display(),
                c.ca().display(),
            );
            let child = Command::new("socat")
                .arg(listen)
                .arg(format!("tcp:127.0.0.1:{inner}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(dir.path().join("socat.log")).expect("socat log"))
                .spawn()
                .expect("socat is installed (scripts/setup installs it)");
            let p = Process(child);
            wait_until(Duration::from_secs(10), "socat to listen", || port_open(port));
            p
        });
        let mut properties = Vec::new();
        let mut set = |k: &str, v: &str| properties.push((k.to_owned(), v.to_owned()));
        match &security {
            Security::Tls { certs, mutual } => {
                set("security.protocol", "SSL");
                set("ssl.ca.location", &certs.ca().display().to_string());
                if *mutual {
                    set(
                        "ssl.certificate.location",
                        &certs.client_cert().display().to_string(),
                    );
                    set(
                        "ssl.key.location",
                        &certs.client_key().display().to_string(),
                    );
                }
            }
            Security::Scram {
                user,
                password,
                tls,
            } => {
                match tls {
                    Some(c) => {
                        set("security.protocol", "SASL_SSL");
                        set("ssl.ca.location", &c.ca().display().to_string());
                    }
                    None => set("security.protocol", "SASL_PLAINTEXT"),
                }
                set("sasl.mechanism", "SCRAM-SHA-512");
                set("sasl.username", user);
                set("sasl.password", password);
            }
        }
        SecureBroker {
            port,
            plain_port: inner,
            properties,
            _tansu: tansu,
            _socat: socat,
            _dir: dir,
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

    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            self.config().create().expect("admin client");
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results =
            futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new()))
                .expect("create topic");
        for r in results {
            r.expect("topic created");
        }
    }

    pub fn producer(&self) -> FutureProducer {
        self.config()
            .set("enable.idempotence", "true")
            .set("linger.ms", "10")
            .create()
            .expect("producer")
    }
}

fn spawn_tansu(
    bin: &Path,
    dir: &Path,
    port: u16,
    advertised: u16,
    storage: &str,
    auth: bool,
) -> Process {
    let log = File::create(dir.join(format!("tansu-{port}-{auth}.log"))).expect("tansu log");
    let mut cmd = Command::new(bin);
    cmd.args(["broker", "--listener-url"])
        .arg(format!("tcp://127.0.0.1:{port}"))
        .arg("--advertised-listener-url")
        .arg(format!("tcp://127.0.0.1:{advertised}"))
        .args(["--storage-engine", storage]);
    if auth {
        cmd.arg("--authentication");
    }
    let child = cmd
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    let p = Process(child);
    wait_until(Duration::from_secs(20), "tansu to listen", || {
        port_open(port)
    });
    p
}
