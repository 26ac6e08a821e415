//! How the host reaches Redis: one server, a Redis Cluster (seed nodes), or the master
//! that Sentinels name; plaintext or TLS (`rediss://`, a private CA, client certificates);
//! an ACL user and password from the URL or a file.
//!
//! Everything that talks to Redis (the commit path, the registry, the admin API's job
//! definitions, `host offsets`) opens its connections here, so every topology and every
//! credential works the same everywhere.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    Client, ClientTlsConfig, Cmd, Connection, ConnectionAddr, ConnectionInfo, ConnectionLike,
    IntoConnectionInfo, RedisResult, TlsCertificates, TlsMode, Value,
};

use crate::store::StoreError;
use crate::sync::Locked;

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The topology `--redis` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (or a managed endpoint that hides its failover behind one address).
    Single,
    /// `--redis-cluster`: the URLs are seed nodes of a Redis Cluster.
    Cluster,
    /// `--redis-sentinel NAME`: the URLs are Sentinels; the master is the one they name.
    Sentinel { master: String },
}

/// What the command line says about Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// One or more URLs, comma-separated (several only with a cluster or Sentinels).
    pub urls: String,
    pub topology: Topology,
    /// PEM CA certificate(s) to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that ask for one (mutual TLS).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// A file holding the password (its first line), so it need not be in argv.
    pub password_file: Option<PathBuf>,
    /// After each commit, wait until this many replicas have it (Redis `WAIT`).
    pub wait_replicas: u32,
    pub wait_timeout: Duration,
}

impl RedisConfig {
    /// A single, plaintext server at `url` (tests and tools).
    pub fn single(url: &str) -> RedisConfig {
        RedisConfig {
            urls: url.to_owned(),
            topology: Topology::Single,
            ca_file: None,
            cert_file: None,
            key_file: None,
            password_file: None,
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
        }
    }

    /// The URLs as they may be shown: passwords replaced by `***`.
    pub fn shown(&self) -> String {
        let urls = self
            .urls
            .split(',')
            .map(|u| shown_url(u.trim()))
            .collect::<Vec<_>>()
            .join(",");
        match &self.topology {
            Topology::Single => urls,
            Topology::Cluster => format!("cluster {urls}"),
            Topology::Sentinel { master } => format!("master {master} of sentinels {urls}"),
        }
    }
}

/// `url` as it may be shown: the password, if any, replaced by `***`.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

enum Kind {
    Single(Client),
    Cluster(ClusterClient),
    // The client caches its connections to the Sentinels; asking them is serialized.
    Sentinel(Mutex<SentinelClient>),
}

/// A Redis deployment the host can open connections to.
pub struct Redis {
    shown: String,
    kind: Kind,
    pub wait_replicas: u32,
    pub wait_timeout: Duration,
}

/// One connection: to a server, or to a whole cluster (which routes each command to the
/// node that owns its keys and follows MOVED/ASK redirects).
pub enum Conn {
    Single(Connection),
    Cluster(Box<ClusterConnection>),
}

impl ConnectionLike for Conn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Conn::Single(c) => c.req_command(cmd),
            Conn::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }

    fn supports_pipelining(&self) -> bool {
        match self {
            Conn::Single(c) => c.supports_pipelining(),
            Conn::Cluster(c) => c.supports_pipelining(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Conn::Single(c) => c.check_connection(),
            Conn::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Conn::Single(c) => c.is_open(),
            Conn::Cluster(c) => c.is_open(),
        }
    }
}

impl Conn {
    /// Redis `WAIT`: blocks until `replicas` replicas acknowledged the writes made so far
    /// on the node that holds `key` (or `timeout` passed); returns how many did.
    pub fn wait_replicas(
        &mut self,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<u32> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas).arg(timeout.as_millis() as u64);
        match self {
            Conn::Single(c) => cmd.query(c),
            Conn::Cluster(c) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let route = Route::new(super::keys::slot_of(key), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let value = c.route_command(&cmd, routing)?;
                Ok(redis::from_redis_value(value)?)
            }
        }
    }
}

impl Redis {
    /// Checks the configuration (URLs parse, files can be read) without connecting.
    pub fn new(config: &RedisConfig) -> Result<Redis, StoreError> {
        let shown = config.shown();
        let urls: Vec<&str> = config
            .urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let bad_url = |url: &str, detail: String| StoreError::BadUrl {
            url: shown_url(url),
            detail,
        };
        let Some(first) = urls.first() else {
            return Err(bad_url(&config.urls, "no URL given".into()));
        };
        let mut infos = Vec::new();
        for url in &urls {
            let info = url
                .into_connection_info()
                .map_err(|e| bad_url(url, e.to_string()))?;
            infos.push(info);
        }
        let password = read_password(config)?;
        let certs = read_certs(config)?;
        let tls = infos
            .iter()
            .any(|i| matches!(i.addr(), ConnectionAddr::TcpTls { .. }));
        if certs.is_some() && !tls {
            return Err(StoreError::Config {
                what: "--redis-ca-file/--redis-cert-file".into(),
                detail: format!(
                    "TLS files were given but {} is not a TLS URL; use rediss://",
                    shown_url(first)
                ),
            });
        }
        let with_password = |info: ConnectionInfo| match &password {
            Some(p) => {
                let settings = info.redis_settings().clone().set_password(p);
                info.set_redis_settings(settings)
            }
            None => info,
        };
        let kind = match &config.topology {
            Topology::Single => {
                if infos.len() > 1 {
                    return Err(bad_url(
                        &config.urls,
                        "several URLs name a cluster (--redis-cluster) or Sentinels \
                         (--redis-sentinel NAME); a single server takes one"
                            .into(),
                    ));
                }
                let info = with_password(infos.remove(0));
                let client = match certs {
                    Some(certs) => Client::build_with_tls(info, certs),
                    None => Client::open(info),
                };
                Kind::Single(client.map_err(|e| bad_url(first, e.to_string()))?)
            }
            Topology::Cluster => {
                let infos: Vec<ConnectionInfo> = infos.into_iter().map(with_password).collect();
                let mut builder = ClusterClientBuilder::new(infos)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(IO_TIMEOUT)
                    // Redirects and TRYAGAIN during a slot migration, a failover's
                    // CLUSTERDOWN: retried here briefly, then by the commit loop.
                    .retries(8)
                    .max_retry_wait(500);
                if let Some(p) = &password {
                    builder = builder.password(p.clone());
                }
                if tls {
                    builder = builder.tls(TlsMode::Secure);
                }
                if let Some(certs) = certs {
                    builder = builder.certs(certs);
                }
                Kind::Cluster(builder.build().map_err(|e| bad_url(first, e.to_string()))?)
            }
            Topology::Sentinel { master } => {
                let addrs: Vec<ConnectionAddr> = infos.iter().map(|i| i.addr().clone()).collect();
                let settings = infos[0].redis_settings();
                let mut builder =
                    SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)
                        .map_err(|e| bad_url(first, e.to_string()))?;
                if let Some(user) = settings.username() {
                    builder = builder.set_client_to_redis_username(user);
                }
                if let Some(p) = password.as_deref().or(settings.password()) {
                    builder = builder.set_client_to_redis_password(p);
                }
                if tls {
                    builder = builder
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure);
                }
                if let Some(certs) = certs {
                    builder = builder
                        .set_client_to_redis_certificates(certs.clone())
                        .set_client_to_sentinel_certificates(certs);
                }
                let client = builder.build().map_err(|e| bad_url(first, e.to_string()))?;
                Kind::Sentinel(Mutex::new(client))
            }
        };
        Ok(Redis {
            shown,
            kind,
            wait_replicas: config.wait_replicas,
            wait_timeout: config.wait_timeout,
        })
    }

    /// The deployment as it may be shown in messages (no passwords).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.kind, Kind::Cluster(_))
    }

    /// A new connection with the host's timeouts (for a Sentinel deployment: to the
    /// master the Sentinels name now, so a reconnect after a failover finds the new one).
    pub fn connect(&self) -> RedisResult<Conn> {
        match &self.kind {
            Kind::Single(client) => single(client),
            Kind::Cluster(client) => {
                let conn = client.get_connection()?;
                conn.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok(Conn::Cluster(Box::new(conn)))
            }
            Kind::Sentinel(sentinel) => {
                let client = sentinel.locked().get_client()?;
                single(&client)
            }
        }
    }

    /// Turns a failed connection or command into the store's error: an outage (worth
    /// waiting out), a refusal (credentials, ACL), a TLS failure, or a failed command.
    pub fn error(&self, key: &str, e: redis::RedisError) -> StoreError {
        classify(&self.shown, key, e)
    }
}

fn single(client: &Client) -> RedisResult<Conn> {
    let conn = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(Conn::Single(conn))
}

pub(crate) fn classify(url: &str, key: &str, e: redis::RedisError) -> StoreError {
    let detail = e.to_string();
    if is_tls_error(&detail) {
        StoreError::Tls {
            url: url.to_owned(),
            detail,
        }
    } else if is_refusal(&e) {
        StoreError::Refused {
            url: url.to_owned(),
            detail,
        }
    } else if is_connection_error(&e) {
        StoreError::Unavailable {
            url: url.to_owned(),
            detail,
        }
    } else {
        StoreError::Command {
            key: key.to_owned(),
            detail,
        }
    }
}

/// Errors that go away by waiting: the connection is gone, or the server is not ready
/// (LOADING after a restart, TRYAGAIN, MASTERDOWN, READONLY during a failover, a cluster
/// redirect or CLUSTERDOWN the client gave up following).
pub(crate) fn is_connection_error(e: &redis::RedisError) -> bool {
    use redis::RetryMethod;
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_cluster_error()
        || !matches!(e.retry_method(), RetryMethod::NoRetry)
}

/// Wrong user or password, or an ACL that forbids what the host does: no retry helps.
fn is_refusal(e: &redis::RedisError) -> bool {
    let code = e.code().unwrap_or_default();
    matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM")
        || matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
}

/// A certificate the client does not trust, or a server that wants one the client did
/// not give: configuration, not an outage.
fn is_tls_error(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    [
        "certificate",
        "unknownissuer",
        "handshake",
        "tls alert",
        "close_notify",
    ]
    .iter()
    .any(|s| d.contains(s))
}

fn read_password(config: &RedisConfig) -> Result<Option<String>, StoreError> {
    let Some(path) = &config.password_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| StoreError::Config {
        what: "--redis-password-file".into(),
        detail: format!("cannot read {}: {e}", path.display()),
    })?;
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        return Err(StoreError::Config {
            what: "--redis-password-file".into(),
            detail: format!(
                "{} is empty; its first line is the password",
                path.display()
            ),
        });
    }
    Ok(Some(password))
}

fn read_certs(config: &RedisConfig) -> Result<Option<TlsCertificates>, StoreError> {
    let read = |flag: &str, path: &PathBuf| {
        std::fs::read(path).map_err(|e| StoreError::Config {
            what: flag.to_owned(),
            detail: format!("cannot read {}: {e}", path.display()),
        })
    };
    let root_cert = match &config.ca_file {
        Some(p) => Some(read("--redis-ca-file", p)?),
        None => None,
    };
    let client_tls = match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read("--redis-cert-file", cert)?,
            client_key: read("--redis-key-file", key)?,
        }),
        (None, None) => None,
        _ => {
            return Err(StoreError::Config {
                what: "--redis-cert-file/--redis-key-file".into(),
                detail: "mutual TLS needs both the client certificate and its key".into(),
            });
        }
    };
    if root_cert.is_none() && client_tls.is_none() {
        return Ok(None);
    }
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// How to reach Redis; every command that uses Redis takes these.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// Redis URL, redis://[USER:PASSWORD@]HOST:PORT[/DB] (rediss:// for TLS); several,
    /// comma-separated, with --redis-cluster (seed nodes) or --redis-sentinel (Sentinels).
    #[arg(
        long = "redis",
        default_value = "redis://127.0.0.1:6379",
        env = "STREAMHOST_REDIS",
        hide_env_values = true
    )]
    pub url: String,

    /// --redis names seed nodes of a Redis Cluster.
    #[arg(
        long,
        env = "STREAMHOST_REDIS_CLUSTER",
        conflicts_with = "redis_sentinel"
    )]
    pub redis_cluster: bool,

    /// --redis names Sentinels; use the master they know as MASTER_NAME.
    #[arg(long, value_name = "MASTER_NAME", env = "STREAMHOST_REDIS_SENTINEL")]
    pub redis_sentinel: Option<String>,

    /// PEM file of the CA that signed the Redis server's certificate [default: the
    /// system's roots].
    #[arg(long, value_name = "FILE", env = "STREAMHOST_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// PEM client certificate, for a Redis that asks for one (mutual TLS).
    #[arg(
        long,
        value_name = "FILE",
        env = "STREAMHOST_REDIS_CERT_FILE",
        requires = "redis_key_file"
    )]
    pub redis_cert_file: Option<PathBuf>,

    /// PEM private key of --redis-cert-file.
    #[arg(
        long,
        value_name = "FILE",
        env = "STREAMHOST_REDIS_KEY_FILE",
        requires = "redis_cert_file"
    )]
    pub redis_key_file: Option<PathBuf>,

    /// File whose first line is the Redis password (instead of one in the URL, which
    /// `ps` would show); the user, if any, stays in the URL.
    #[arg(long, value_name = "FILE", env = "STREAMHOST_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
}

impl RedisArgs {
    pub fn config(&self) -> RedisConfig {
        RedisConfig {
            urls: self.url.clone(),
            topology: match (&self.redis_sentinel, self.redis_cluster) {
                (Some(master), _) => Topology::Sentinel {
                    master: master.clone(),
                },
                (None, true) => Topology::Cluster,
                (None, false) => Topology::Single,
            },
            ca_file: self.redis_ca_file.clone(),
            cert_file: self.redis_cert_file.clone(),
            key_file: self.redis_key_file.clone(),
            password_file: self.redis_password_file.clone(),
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{RedisConfig, Topology, shown_url};

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            shown_url("redis://app:s3cret@redis.example:6379/2"),
            "redis://app:***@redis.example:6379/2"
        );
        assert_eq!(shown_url("rediss://:s3cret@h:6380"), "rediss://:***@h:6380");
        assert_eq!(
            shown_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(shown_url("localhost:6379"), "localhost:6379");
        let mut c = RedisConfig::single("redis://u:p1@a:1, redis://u:p2@b:2");
        c.topology = Topology::Cluster;
        assert_eq!(c.shown(), "cluster redis://u:***@a:1,redis://u:***@b:2");
    }
}
