//! Real Redis topologies for end-to-end tests, built from Debian's `redis-server` and
//! `redis-cli` on free loopback ports: a TLS server (optionally mutual TLS), a server with an
//! ACL user, a Redis Cluster that can migrate slots and fail over, and a Sentinel-managed
//! master/replica pair. Every process is killed on drop.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis::cluster::ClusterClient;
use redis::{ClientTlsConfig, Connection, FromRedisValue, RedisResult, TlsCertificates};

use crate::services::{Process, free_port, wait_until};

/// How long a server may take to start, or a cluster to settle.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a failover may take: failure detection, election and promotion.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// A CA, a server and a client certificate it signed, and an unrelated CA, made with the
/// `openssl` CLI. Keys are EC P-256 in PKCS#8 PEM.
pub struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    pub fn generate() -> Certs {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        openssl(d, &["ecparam", "-name", "prime256v1", "-out", "p256.pem"]);
        for name in ["ca", "wrong-ca", "server", "client"] {
            openssl(
                d,
                &[
                    "genpkey",
                    "-paramfile",
                    "p256.pem",
                    "-out",
                    &format!("{name}.key"),
                ],
            );
        }
        for (name, cn) in [("ca", "streamhost test CA"), ("wrong-ca", "unrelated CA")] {
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-new",
                    "-key",
                    &format!("{name}.key"),
                    "-subj",
                    &format!("/CN={cn}"),
                    "-days",
                    "2",
                    "-out",
                    &format!("{name}.crt"),
                ],
            );
        }
        // rustls matches the server's name against subjectAltName only, never the CN; the
        // extended key usages say which side of a connection each certificate may serve.
        let leaves = [
            (
                "server",
                "localhost",
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
            ),
            (
                "client",
                "streamhost-client",
                "extendedKeyUsage=clientAuth\n",
            ),
        ];
        for (name, cn, ext) in leaves {
            let ext_file = format!("{name}.ext");
            std::fs::write(
                d.join(&ext_file),
                format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n{ext}"),
            )
            .expect("write extensions file");
            openssl(
                d,
                &[
                    "req",
                    "-new",
                    "-key",
                    &format!("{name}.key"),
                    "-subj",
                    &format!("/CN={cn}"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            );
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &ext_file,
                    "-out",
                    &format!("{name}.crt"),
                ],
            );
        }
        Certs { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    pub fn client_cert(&self) -> PathBuf {
        self.dir.path().join("client.crt")
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }

    /// A CA that signed nothing here: a client trusting only it must refuse the server.
    pub fn wrong_ca(&self) -> PathBuf {
        self.dir.path().join("wrong-ca.crt")
    }

    /// What a redis client needs to trust `root` and, with `client_cert`, to present the
    /// client certificate.
    pub fn tls_certificates(&self, root: &Path, client_cert: bool) -> TlsCertificates {
        TlsCertificates {
            client_tls: client_cert.then(|| ClientTlsConfig {
                client_cert: read(&self.client_cert()),
                client_key: read(&self.client_key()),
            }),
            root_cert: Some(read(root)),
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("the openssl CLI is installed");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A `redis-server` speaking TLS only.
pub struct TlsRedis {
    pub port: u16,
    certificates: TlsCertificates,
    _process: Process,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    /// With `mutual`, the server refuses clients without a certificate signed by the CA.
    pub fn start(certs: &Certs, mutual: bool) -> TlsRedis {
        // The server reads the files once at start, so the harness keeps the client side in
        // memory and does not depend on `certs` outliving it.
        let certificates = certs.tls_certificates(&certs.ca(), true);
        let started = spawn_redis(
            "TLS redis-server",
            1,
            |ports, dir| {
                let mut args = strings(&[
                    "--port",
                    "0",
                    "--tls-port",
                    &ports[0].to_string(),
                    "--tls-auth-clients",
                    if mutual { "yes" } else { "no" },
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]);
                for (flag, path) in [
                    ("--tls-cert-file", certs.server_cert()),
                    ("--tls-key-file", certs.server_key()),
                    ("--tls-ca-cert-file", certs.ca()),
                    ("--dir", dir.to_path_buf()),
                ] {
                    args.extend([flag.to_string(), path_arg(&path)]);
                }
                args
            },
            // An open port proves nothing about the TLS set-up: only a PING through it does.
            |ports| {
                redis::Client::build_with_tls(tls_url(ports[0]), certificates.clone())
                    .ok()
                    .and_then(|c| connect(&c).ok())
                    .is_some_and(|mut c| ping(&mut c))
            },
        );
        TlsRedis {
            port: started.ports[0],
            certificates,
            _process: started.process,
            _dir: started.dir,
        }
    }

    pub fn url(&self) -> String {
        tls_url(self.port)
    }

    /// A connection trusting the test CA and presenting the client certificate.
    pub fn conn(&self) -> Connection {
        let client = redis::Client::build_with_tls(self.url(), self.certificates.clone())
            .expect("TLS client");
        connect(&client).expect("connect to the TLS redis-server")
    }

    pub fn hgetall(&self, key: &str) -> BTreeMap<String, String> {
        redis::cmd("HGETALL")
            .arg(key)
            .query(&mut self.conn())
            .expect("HGETALL")
    }
}

fn tls_url(port: u16) -> String {
    format!("rediss://127.0.0.1:{port}")
}

/// A plain `redis-server` whose only anonymous access is refused: one ACL user with the
/// caller's rules, and an all-powerful admin for the test to read back with.
pub struct AclRedis {
    pub port: u16,
    user: String,
    password: String,
    _process: Process,
    _dir: tempfile::TempDir,
}

const ACL_ADMIN: &str = "admin";
const ACL_ADMIN_PASSWORD: &str = "admin-secret";

impl AclRedis {
    /// `acl_rules` are ACL SETUSER rules separated by spaces, e.g.
    /// `~streamhost:* +@read +@write +@scripting +@connection -@dangerous`.
    pub fn start(user: &str, password: &str, acl_rules: &str) -> AclRedis {
        // Configured before the server listens, so there is no moment in which the default
        // user is open.
        let started = spawn_redis(
            "ACL redis-server",
            1,
            |ports, dir| {
                let mut args = strings(&[
                    "--port",
                    &ports[0].to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--user",
                    "default",
                    "off",
                    "--user",
                    ACL_ADMIN,
                    "on",
                    &format!(">{ACL_ADMIN_PASSWORD}"),
                    "~*",
                    "&*",
                    "+@all",
                ]);
                args.extend(["--dir".to_string(), path_arg(dir)]);
                args
            },
            |ports| open(&admin_url(ports[0])).is_ok_and(|mut c| ping(&mut c)),
        );
        let redis = AclRedis {
            port: started.ports[0],
            user: user.to_string(),
            password: password.to_string(),
            _process: started.process,
            _dir: started.dir,
        };
        let mut setuser = redis::cmd("ACL");
        setuser
            .arg("SETUSER")
            .arg(user)
            .arg("reset")
            .arg("on")
            .arg(format!(">{password}"));
        for rule in acl_rules.split_whitespace() {
            setuser.arg(rule);
        }
        let () = setuser
            .query(&mut redis.admin_conn())
            .unwrap_or_else(|e| panic!("ACL SETUSER {user} … {acl_rules}: {e}"));
        redis
    }

    /// The ACL user's URL (user and password percent-encoded).
    pub fn url(&self) -> String {
        format!(
            "redis://{}:{}@127.0.0.1:{}",
            percent_encode(&self.user),
            percent_encode(&self.password),
            self.port
        )
    }

    /// The URL of a client that does not authenticate.
    pub fn anonymous_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn admin_conn(&self) -> Connection {
        open(&admin_url(self.port)).expect("connect as the ACL admin")
    }

    pub fn hgetall(&self, key: &str) -> BTreeMap<String, String> {
        redis::cmd("HGETALL")
            .arg(key)
            .query(&mut self.admin_conn())
            .expect("HGETALL")
    }
}

fn admin_url(port: u16) -> String {
    format!("redis://{ACL_ADMIN}:{ACL_ADMIN_PASSWORD}@127.0.0.1:{port}")
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A node of a [`RedisCluster`] as the cluster names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClusterNode {
    pub port: u16,
    pub id: String,
}

/// A slot held in the MIGRATING (on `from`) / IMPORTING (on `to`) state, between
/// [`RedisCluster::begin_migration`] and [`RedisCluster::finish_migration`].
#[derive(Debug)]
pub struct Migration {
    pub slot: u16,
    pub from: ClusterNode,
    pub to: ClusterNode,
}

/// A Redis Cluster of durable nodes (append-only file, fsync always).
pub struct RedisCluster {
    nodes: Vec<Server>,
}

/// One `redis-server` of a topology; `process` is `None` once killed.
struct Server {
    port: u16,
    process: Option<Process>,
    _dir: tempfile::TempDir,
}

impl From<Started> for Server {
    fn from(started: Started) -> Server {
        Server {
            port: started.ports[0],
            process: Some(started.process),
            _dir: started.dir,
        }
    }
}

impl Server {
    fn alive(&self) -> bool {
        self.process.is_some()
    }

    fn pid(&self) -> i32 {
        let process = self.process.as_ref().expect("the server runs");
        i32::try_from(process.0.id()).expect("pid fits i32")
    }
}

impl RedisCluster {
    /// `masters` (at least 3, as `redis-cli --cluster create` demands) shards of one master
    /// and `replicas_per_master` replicas each; returns once every node reports
    /// `cluster_state:ok` and every replica's link to its master is up.
    pub fn start(masters: usize, replicas_per_master: usize) -> RedisCluster {
        assert!(masters >= 3, "redis-cli --cluster create needs 3 masters");
        let nodes: Vec<Server> = (0..masters * (1 + replicas_per_master))
            .map(|_| Self::spawn_node())
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create
            .args([
                "--cluster-replicas",
                &replicas_per_master.to_string(),
                "--cluster-yes",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is installed");
        assert!(
            out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("[ERR]"),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        // redis-cli returns before every replica has taken its role: until then a replica is
        // an empty master and the cluster is already `ok`.
        cluster.wait_settled("the cluster to form", |view| {
            view.iter().filter(|n| n.is_master()).count() == masters
                && view.iter().filter(|n| n.is_master()).all(|m| {
                    !m.slots.is_empty()
                        && view
                            .iter()
                            .filter(|n| n.master_id.as_deref() == Some(&m.id))
                            .count()
                            == replicas_per_master
                })
        });
        cluster
    }

    fn spawn_node() -> Server {
        // The bus defaults to port + 10000, which is out of range for most ephemeral ports
        // and not known to be free: pick it like the client port.
        let started = spawn_redis(
            "cluster redis-server",
            2,
            |ports, dir| {
                let mut args = strings(&[
                    "--port",
                    &ports[0].to_string(),
                    "--cluster-port",
                    &ports[1].to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                    // A replica's first sync would otherwise wait 5 s for others to join it.
                    "--repl-diskless-sync-delay",
                    "0",
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                ]);
                args.extend([
                    "--cluster-config-file".to_string(),
                    path_arg(&dir.join("nodes.conf")),
                    "--dir".to_string(),
                    path_arg(dir),
                ]);
                args
            },
            |ports| port_conn(ports[0]).is_ok_and(|mut c| ping(&mut c)),
        );
        Server::from(started)
    }

    /// Comma-separated URLs of the masters that run now.
    pub fn seed_urls(&self) -> String {
        self.masters()
            .iter()
            .map(|m| format!("redis://127.0.0.1:{}", m.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A cluster client seeded with every running node.
    pub fn client(&self) -> ClusterClient {
        let urls: Vec<String> = self
            .live_ports()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect();
        ClusterClient::builder(urls)
            .connection_timeout(Duration::from_secs(1))
            .build()
            .expect("cluster client")
    }

    pub fn hgetall(&self, key: &str) -> BTreeMap<String, String> {
        let mut conn = self.client().get_connection().expect("cluster connection");
        redis::cmd("HGETALL")
            .arg(key)
            .query(&mut conn)
            .expect("HGETALL")
    }

    /// The hash slot of `key` (CRC16 of its hash tag, as the cluster computes it).
    pub fn slot_of(key: impl AsRef<[u8]>) -> u16 {
        key_slot(key.as_ref())
    }

    /// The running masters, by port.
    pub fn masters(&self) -> Vec<ClusterNode> {
        let mut masters: Vec<ClusterNode> = self
            .nodes_view()
            .into_iter()
            .filter(|n| n.is_master() && !n.failed())
            .map(|n| n.node())
            .collect();
        masters.sort();
        masters
    }

    /// A running master other than `than` (where to move a slot to).
    pub fn other_master(&self, than: &ClusterNode) -> ClusterNode {
        self.masters()
            .into_iter()
            .find(|m| m != than)
            .expect("another master")
    }

    pub fn master_of_slot(&self, slot: u16) -> ClusterNode {
        self.nodes_view()
            .into_iter()
            .find(|n| n.is_master() && !n.failed() && n.serves(slot))
            .map(|n| n.node())
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    pub fn node_of_key(&self, key: impl AsRef<[u8]>) -> ClusterNode {
        self.master_of_slot(key_slot(key.as_ref()))
    }

    /// How many distinct masters hold `keys`.
    pub fn masters_holding<K: AsRef<[u8]>>(&self, keys: &[K]) -> usize {
        let view = self.nodes_view();
        keys.iter()
            .map(|k| {
                let slot = key_slot(k.as_ref());
                view.iter()
                    .find(|n| n.is_master() && !n.failed() && n.serves(slot))
                    .map(|n| n.id.clone())
                    .unwrap_or_else(|| panic!("no master serves slot {slot}"))
            })
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Waits until every running replica has acknowledged all its master's writes so far,
    /// so a failover cannot lose them.
    pub fn wait_replicated(&self) {
        let view = self.nodes_view();
        for master in view.iter().filter(|n| n.is_master() && !n.failed()) {
            let replicas = view
                .iter()
                .filter(|n| n.master_id.as_deref() == Some(&master.id) && !n.failed())
                .count();
            wait_caught_up(master.port, replicas);
        }
    }

    /// Moves `slot` and its keys to `to` while the cluster serves clients.
    pub fn migrate_slot(&self, slot: u16, to: &ClusterNode) {
        let migration = self.begin_migration(slot, to);
        self.finish_migration(migration);
    }

    /// Puts `slot` into the IMPORTING state on `to` and MIGRATING on its master, moving no key
    /// yet: clients now get ASK redirects for keys of the slot that are not on the source.
    pub fn begin_migration(&self, slot: u16, to: &ClusterNode) -> Migration {
        let from = self.master_of_slot(slot);
        assert_ne!(&from, to, "slot {slot} is already on {}", to.port);
        // Importing first: a client sent on by the source's ASK must find the target ready.
        let () = query(to.port, setslot(slot, "IMPORTING").arg(&from.id))
            .expect("CLUSTER SETSLOT IMPORTING");
        let () = query(from.port, setslot(slot, "MIGRATING").arg(&to.id))
            .expect("CLUSTER SETSLOT MIGRATING");
        Migration {
            slot,
            from,
            to: to.clone(),
        }
    }

    /// Moves up to `max` keys of a migrating slot; returns how many moved.
    pub fn move_keys(&self, migration: &Migration, max: usize) -> usize {
        let keys: Vec<Vec<u8>> = query(
            migration.from.port,
            redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(migration.slot)
                .arg(max),
        )
        .expect("CLUSTER GETKEYSINSLOT");
        if !keys.is_empty() {
            let _: String = query(
                migration.from.port,
                redis::cmd("MIGRATE")
                    .arg("127.0.0.1")
                    .arg(migration.to.port)
                    .arg("")
                    .arg(0)
                    .arg(5000)
                    .arg("KEYS")
                    .arg(&keys),
            )
            .expect("MIGRATE");
        }
        keys.len()
    }

    /// Moves the slot's remaining keys and gives the slot to the target everywhere; returns
    /// once every running node agrees.
    pub fn finish_migration(&self, migration: Migration) {
        while self.move_keys(&migration, 100) > 0 {}
        let Migration { slot, from, to } = migration;
        // Target first, then source, as the cluster tutorial orders it: the source then
        // redirects with MOVED to a node that already owns the slot.
        let () = query(to.port, setslot(slot, "NODE").arg(&to.id)).expect("SETSLOT NODE on target");
        let () =
            query(from.port, setslot(slot, "NODE").arg(&to.id)).expect("SETSLOT NODE on source");
        for master in self.masters() {
            if master != to && master != from {
                let () = query(master.port, setslot(slot, "NODE").arg(&to.id))
                    .expect("SETSLOT NODE on a master");
            }
        }
        self.wait_settled(&format!("slot {slot} to move to {}", to.port), |view| {
            view.iter()
                .find(|n| n.serves(slot))
                .is_some_and(|n| n.id == to.id)
        });
    }

    /// SIGKILLs the master of `slot` and returns it once one of its replicas serves the slot
    /// and every running node reports `cluster_state:ok` again.
    pub fn kill_master_of_slot(&mut self, slot: u16) -> ClusterNode {
        let victim = self.master_of_slot(slot);
        let server = self
            .nodes
            .iter_mut()
            .find(|s| s.port == victim.port)
            .expect("the master is one of ours");
        server.process = None;
        self.wait_settled_for(
            FAILOVER_TIMEOUT,
            &format!("a replica of {} to take slot {slot} over", victim.port),
            |view| {
                view.iter()
                    .find(|n| n.is_master() && !n.failed() && n.serves(slot))
                    .is_some_and(|n| n.id != victim.id && role(n.port).as_deref() == Some("master"))
            },
        );
        victim
    }

    fn live_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes.iter().filter(|s| s.alive()).map(|s| s.port)
    }

    /// The cluster as the first running node that answers sees it.
    fn nodes_view(&self) -> Vec<NodeLine> {
        self.live_ports()
            .find_map(|p| cluster_nodes(p).ok())
            .expect("a running cluster node answers CLUSTER NODES")
    }

    fn wait_settled(&self, what: &str, also: impl FnMut(&[NodeLine]) -> bool) {
        self.wait_settled_for(START_TIMEOUT, what, also);
    }

    /// Waits until every running node reports `cluster_state:ok`, sees every other running
    /// node connected and no running node failed, has its replication link up if it is a
    /// replica, and `also` holds for its view.
    fn wait_settled_for(
        &self,
        timeout: Duration,
        what: &str,
        mut also: impl FnMut(&[NodeLine]) -> bool,
    ) {
        let live: BTreeSet<u16> = self.live_ports().collect();
        let deadline = Instant::now() + timeout;
        loop {
            let settled = live.iter().all(|&port| {
                let Ok(view) = cluster_nodes(port) else {
                    return false;
                };
                let ok = cluster_state(port).as_deref() == Some("ok");
                let peers_up = view.iter().filter(|n| live.contains(&n.port)).count() == live.len()
                    && view
                        .iter()
                        .filter(|n| live.contains(&n.port))
                        .all(|n| !n.failed() && (n.myself || n.connected));
                let me = view.iter().find(|n| n.myself);
                let link_up = me.is_some_and(|m| {
                    m.is_master()
                        || info_field(port, "replication", "master_link_status").as_deref()
                            == Some("up")
                });
                ok && peers_up && link_up && also(&view)
            });
            if settled {
                return;
            }
            if Instant::now() >= deadline {
                let views: Vec<String> = live
                    .iter()
                    .map(|&port| {
                        let nodes: String = query(port, redis::cmd("CLUSTER").arg("NODES"))
                            .unwrap_or_else(|e| e.to_string());
                        let state = cluster_state(port);
                        let link = info_field(port, "replication", "master_link_status");
                        format!("node {port}: state {state:?}, link {link:?}\n{nodes}")
                    })
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}:\n{}",
                    views.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn setslot(slot: u16, state: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("SETSLOT").arg(slot).arg(state);
    cmd
}

/// One line of CLUSTER NODES.
#[derive(Debug)]
struct NodeLine {
    id: String,
    port: u16,
    flags: Vec<String>,
    myself: bool,
    master_id: Option<String>,
    connected: bool,
    slots: Vec<(u16, u16)>,
}

impl NodeLine {
    fn parse(line: &str) -> Option<NodeLine> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return None;
        }
        let addr = fields[1].split(['@', ',']).next()?;
        let port = addr.rsplit(':').next()?.parse().ok()?;
        let flags: Vec<String> = fields[2].split(',').map(str::to_string).collect();
        let slots = fields[8..]
            .iter()
            // `[slot->-id]` / `[slot-<-id]` mark a migration, not ownership.
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|n| (n, n)),
            })
            .collect();
        Some(NodeLine {
            id: fields[0].to_string(),
            port,
            myself: flags.iter().any(|f| f == "myself"),
            flags,
            master_id: (fields[3] != "-").then(|| fields[3].to_string()),
            connected: fields[7] == "connected",
            slots,
        })
    }

    fn is_master(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
    }

    fn failed(&self) -> bool {
        self.flags
            .iter()
            .any(|f| matches!(f.as_str(), "fail" | "fail?" | "handshake" | "noaddr"))
    }

    fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }

    fn node(&self) -> ClusterNode {
        ClusterNode {
            port: self.port,
            id: self.id.clone(),
        }
    }
}

fn cluster_nodes(port: u16) -> RedisResult<Vec<NodeLine>> {
    let text: String = query(port, redis::cmd("CLUSTER").arg("NODES"))?;
    Ok(text.lines().filter_map(NodeLine::parse).collect())
}

/// The cluster's key slot: CRC16 (XMODEM) of the hash tag — the part between the first `{`
/// and the next `}` when non-empty — or of the whole key, modulo 16384.
fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter()
            .position(|&b| b == b'}')
            .filter(|&close| close > 0)
            .map(|close| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % 16384
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// One durable master, one replica and three sentinels (quorum 2) watching them.
pub struct RedisSentinel {
    data: Vec<Server>,
    sentinels: Vec<Server>,
}

const MASTER_NAME: &str = "mymaster";

impl RedisSentinel {
    /// Returns once every sentinel knows the master, the replica and the other two
    /// sentinels, and the replica's link is up: a failover can then be voted at once.
    pub fn start() -> RedisSentinel {
        let master = Self::spawn_data(None);
        let replica = Self::spawn_data(Some(master.port));
        let sentinels: Vec<Server> = (0..3).map(|_| Self::spawn_sentinel(master.port)).collect();
        let cluster = RedisSentinel {
            data: vec![master, replica],
            sentinels,
        };
        let replica_port = cluster.data[1].port;
        wait_until(START_TIMEOUT, "the sentinels to know every node", || {
            info_field(replica_port, "replication", "master_link_status").as_deref() == Some("up")
                && cluster.sentinels.iter().all(|s| {
                    sentinel_sees_healthy(s.port, cluster.sentinels.len() - 1).unwrap_or(false)
                })
        });
        cluster
    }

    fn spawn_data(replica_of: Option<u16>) -> Server {
        let started = spawn_redis(
            "sentinel-managed redis-server",
            1,
            |ports, dir| {
                // A config file, even an empty one, lets the CONFIG REWRITE that sentinels
                // send with REPLICAOF succeed.
                let conf = dir.join("redis.conf");
                std::fs::write(&conf, "").expect("write redis.conf");
                let mut args = vec![path_arg(&conf)];
                args.extend(strings(&[
                    "--port",
                    &ports[0].to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    // The replica's first sync would otherwise wait 5 s for others to join it.
                    "--repl-diskless-sync-delay",
                    "0",
                ]));
                args.extend(["--dir".to_string(), path_arg(dir)]);
                if let Some(master) = replica_of {
                    args.extend(strings(&["--replicaof", "127.0.0.1", &master.to_string()]));
                }
                args
            },
            |ports| port_conn(ports[0]).is_ok_and(|mut c| ping(&mut c)),
        );
        Server::from(started)
    }

    fn spawn_sentinel(master_port: u16) -> Server {
        let started = spawn_redis(
            "redis sentinel",
            1,
            |ports, dir| {
                // Sentinels rewrite their config file, so each has its own.
                let conf = dir.join("sentinel.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\n\
                         bind 127.0.0.1\n\
                         dir {dir}\n\
                         sentinel resolve-hostnames no\n\
                         sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                         sentinel failover-timeout {MASTER_NAME} 5000\n",
                        port = ports[0],
                        dir = dir.display()
                    ),
                )
                .expect("write sentinel.conf");
                vec![path_arg(&conf), "--sentinel".to_string()]
            },
            |ports| port_conn(ports[0]).is_ok_and(|mut c| ping(&mut c)),
        );
        Server::from(started)
    }

    /// Comma-separated URLs of the running sentinels.
    pub fn sentinel_urls(&self) -> String {
        self.sentinels
            .iter()
            .filter(|s| s.alive())
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn master_name(&self) -> &'static str {
        MASTER_NAME
    }

    /// The master's port as the first answering sentinel names it.
    pub fn master_port(&self) -> u16 {
        self.sentinels
            .iter()
            .filter(|s| s.alive())
            .find_map(|s| sentinel_master_port(s.port).ok())
            .expect("a sentinel names the master")
    }

    pub fn conn_to_master(&self) -> Connection {
        port_conn(self.master_port()).expect("connect to the master")
    }

    /// Waits until the replica has acknowledged all the master's writes so far, so a failover
    /// cannot lose them.
    pub fn wait_replicated(&self) {
        wait_caught_up(self.master_port(), 1);
    }

    /// SIGKILLs the current master; returns its port.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        self.data_server(port).process = None;
        port
    }

    /// SIGSTOPs the replica: it keeps its connections but answers nothing, as a hung
    /// server does. Returns its port. Dropping the topology needs no `resume_replica`: the
    /// SIGKILL of the `Process` guard ends a stopped process too.
    pub fn pause_replica(&mut self) -> u16 {
        let port = self.replica_port();
        self.signal(port, libc::SIGSTOP);
        port
    }

    pub fn resume_replica(&mut self) -> u16 {
        let port = self.replica_port();
        self.signal(port, libc::SIGCONT);
        port
    }

    /// Waits until every running sentinel names a master other than `old_port` and that
    /// server answers ROLE as a master; returns its port.
    pub fn wait_for_failover(&self, old_port: u16) -> u16 {
        let mut new_port = 0;
        wait_until(FAILOVER_TIMEOUT, "the sentinels to fail over", || {
            let named: BTreeSet<Option<u16>> = self
                .sentinels
                .iter()
                .filter(|s| s.alive())
                .map(|s| sentinel_master_port(s.port).ok())
                .collect();
            match named.into_iter().collect::<Vec<_>>().as_slice() {
                [Some(port)] if *port != old_port && role(*port).as_deref() == Some("master") => {
                    new_port = *port;
                    true
                }
                _ => false,
            }
        });
        new_port
    }

    /// The running data node that is not the master.
    fn replica_port(&self) -> u16 {
        let master = self.master_port();
        self.data
            .iter()
            .find(|s| s.alive() && s.port != master)
            .map(|s| s.port)
            .expect("a running replica")
    }

    fn data_server(&mut self, port: u16) -> &mut Server {
        self.data
            .iter_mut()
            .find(|s| s.port == port && s.alive())
            .unwrap_or_else(|| panic!("no running data node on port {port}"))
    }

    fn signal(&mut self, port: u16, signal: i32) {
        let pid = self.data_server(port).pid();
        // SAFETY: kill(2) on a child process of ours that has not been reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }
}

/// Waits until `replicas` replicas of the master on `port` have acknowledged its whole
/// replication stream so far. Not `WAIT`: it counts only the calling connection's writes,
/// so on a new connection it returns at once. Nor the replica's link status: after a full
/// sync the master holds the stream back until the replica's first acknowledgement (up to
/// a second later), and a master killed in that window takes those writes with it.
fn wait_caught_up(port: u16, replicas: usize) {
    let target: u64 = info_field(port, "replication", "master_repl_offset")
        .and_then(|o| o.parse().ok())
        .expect("master_repl_offset");
    wait_until(
        START_TIMEOUT,
        &format!("{replicas} replicas of {port} to acknowledge offset {target}"),
        || {
            let Ok(info) = query::<String>(port, redis::cmd("INFO").arg("replication")) else {
                return false;
            };
            let caught_up = info
                .lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .filter_map(|l| {
                    l.split(',')
                        .find_map(|kv| kv.strip_prefix("offset="))
                        .and_then(|o| o.parse::<u64>().ok())
                })
                .filter(|&offset| offset >= target)
                .count();
            caught_up >= replicas
        },
    );
}

/// Does this sentinel see a healthy master with a healthy replica and `others` other
/// sentinels?
fn sentinel_sees_healthy(port: u16, others: usize) -> RedisResult<bool> {
    let master: BTreeMap<String, String> =
        query(port, redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME))?;
    let replicas: Vec<BTreeMap<String, String>> = query(
        port,
        redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER_NAME),
    )?;
    let field = |m: &BTreeMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_default();
    Ok(field(&master, "flags") == "master"
        && field(&master, "num-other-sentinels").parse() == Ok(others)
        && !replicas.is_empty()
        && replicas
            .iter()
            .all(|r| field(r, "flags") == "slave" && field(r, "master-link-status") == "ok"))
}

fn sentinel_master_port(port: u16) -> RedisResult<u16> {
    let (_host, master_port): (String, u16) = query(
        port,
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER_NAME),
    )?;
    Ok(master_port)
}

/// A `redis-server` that is ready: the ports it was started with, its process and its
/// directory (which holds its log, `redis.log`).
struct Started {
    ports: Vec<u16>,
    process: Process,
    dir: tempfile::TempDir,
}

/// Starts `redis-server` with the arguments `args(ports, dir)` makes for `port_count` free
/// ports and a new directory, and waits until `ready(ports)`. A free port can be taken
/// before the server binds it (by another test, or as the source port of a connection), so
/// a server that fails to bind is started again on other ports; any other early exit (e.g.
/// a refused flag) fails with its log.
fn spawn_redis(
    what: &str,
    port_count: usize,
    mut args: impl FnMut(&[u16], &Path) -> Vec<String>,
    mut ready: impl FnMut(&[u16]) -> bool,
) -> Started {
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let ports: Vec<u16> = (0..port_count).map(|_| free_port()).collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let args = args(&ports, dir.path());
        let log_path = dir.path().join("redis.log");
        let log = File::create(&log_path).expect("redis log");
        let child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("redis log"))
            .stderr(log)
            .spawn()
            .expect("redis-server is installed (scripts/setup installs it)");
        let mut process = Process(child);
        let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = process.0.try_wait() {
                let log = log_text();
                if log.contains("Address already in use") {
                    break;
                }
                panic!(
                    "{what} exited with {status}: redis-server {}\n{log}",
                    args.join(" ")
                );
            }
            if ready(&ports) {
                return Started {
                    ports,
                    process,
                    dir,
                };
            }
            assert!(
                Instant::now() < deadline,
                "{what} not ready after {START_TIMEOUT:?}:\n{}",
                log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("{what}: its ports were taken {ATTEMPTS} times in a row");
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn path_arg(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_string()
}

/// Connects with short timeouts: a stopped or half-dead server must fail a probe rather
/// than hang it.
fn connect(client: &redis::Client) -> RedisResult<Connection> {
    let conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(conn)
}

fn open(url: &str) -> RedisResult<Connection> {
    connect(&redis::Client::open(url)?)
}

fn port_conn(port: u16) -> RedisResult<Connection> {
    open(&format!("redis://127.0.0.1:{port}"))
}

fn query<T: FromRedisValue>(port: u16, cmd: &redis::Cmd) -> RedisResult<T> {
    cmd.query(&mut port_conn(port)?)
}

fn ping(conn: &mut Connection) -> bool {
    redis::cmd("PING")
        .query::<String>(conn)
        .is_ok_and(|r| r == "PONG")
}

/// `field` of INFO `section`, if the server answers.
fn info_field(port: u16, section: &str, field: &str) -> Option<String> {
    let info: String = query(port, redis::cmd("INFO").arg(section)).ok()?;
    field_of(&info, field)
}

/// `cluster_state` of CLUSTER INFO (plain INFO has no such field).
fn cluster_state(port: u16) -> Option<String> {
    let info: String = query(port, redis::cmd("CLUSTER").arg("INFO")).ok()?;
    field_of(&info, "cluster_state")
}

fn field_of(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// The first element of ROLE: `master`, `slave` or `sentinel`.
fn role(port: u16) -> Option<String> {
    let role: Vec<redis::Value> = query(port, &redis::cmd("ROLE")).ok()?;
    match role.first()? {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
