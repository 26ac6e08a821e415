//! The Redis topology helpers work: each starts, serves and (where it can) fails over as the
//! end-to-end tests expect. No host binary needed.

use std::collections::BTreeMap;
use std::time::Instant;

use redis::{Commands, Connection, RedisResult};
use streamhost_tests::redis_topologies::{AclRedis, Certs, RedisCluster, RedisSentinel, TlsRedis};

fn connect_tls(url: &str, certs: redis::TlsCertificates) -> RedisResult<Connection> {
    let mut conn = redis::Client::build_with_tls(url, certs)?.get_connection()?;
    // With TLS 1.3 the server's verdict on a client certificate arrives after the handshake:
    // only a round trip proves the connection was accepted.
    redis::cmd("PING").query::<String>(&mut conn)?;
    Ok(conn)
}

#[test]
fn tls_server_with_and_without_client_certificates() {
    let started = Instant::now();
    let certs = Certs::generate();
    let plain = TlsRedis::start(&certs, false);
    let mut conn = connect_tls(&plain.url(), certs.tls_certificates(&certs.ca(), false))
        .expect("a client trusting the CA connects without a certificate");
    let () = conn.hset("streamhost:t", "a", "1").expect("HSET");
    assert_eq!(plain.hgetall("streamhost:t")["a"], "1");

    let err = connect_tls(
        &plain.url(),
        certs.tls_certificates(&certs.wrong_ca(), false),
    )
    .err()
    .expect("a client trusting another CA refuses the server");
    assert!(
        err.to_string().contains("certificate"),
        "unexpected error: {err}"
    );

    let mutual = TlsRedis::start(&certs, true);
    connect_tls(&mutual.url(), certs.tls_certificates(&certs.ca(), false))
        .err()
        .expect("mutual TLS refuses a client without a certificate");
    let mut conn = connect_tls(&mutual.url(), certs.tls_certificates(&certs.ca(), true))
        .expect("mutual TLS accepts the client certificate");
    let () = conn.set("streamhost:m", "1").expect("SET");
    let got: String = mutual.conn().get("streamhost:m").expect("GET");
    assert_eq!(got, "1");
    eprintln!("tls: {:?}", started.elapsed());
}

#[test]
fn acl_user_is_confined_to_its_keys() {
    let redis = AclRedis::start(
        "app",
        "s3cret/with:odd@chars",
        "~streamhost:* +@read +@write +@scripting +@connection -@dangerous",
    );
    let mut conn = redis::Client::open(redis.url())
        .and_then(|c| c.get_connection())
        .expect("the ACL user authenticates");
    let () = conn.hset("streamhost:x", "f", "v").expect("own keys");
    let err = conn
        .set::<_, _, ()>("other:x", "v")
        .expect_err("keys outside the pattern");
    assert!(err.to_string().to_lowercase().contains("noperm"), "{err}");
    let err = redis::cmd("FLUSHALL")
        .query::<()>(&mut conn)
        .expect_err("dangerous commands");
    assert!(err.to_string().to_lowercase().contains("noperm"), "{err}");

    let anonymous = redis::Client::open(redis.anonymous_url())
        .and_then(|c| c.get_connection())
        .and_then(|mut c| c.set::<_, _, ()>("streamhost:y", "v"));
    assert!(anonymous.is_err(), "an anonymous client is refused");

    assert_eq!(
        redis.hgetall("streamhost:x"),
        BTreeMap::from([("f".to_string(), "v".to_string())])
    );
    let other: Option<String> = redis.admin_conn().get("other:x").expect("GET");
    assert_eq!(other, None);
}

/// Field `n` of a hash read through a fresh cluster client; a missing key fails with where
/// each master says it is.
fn field_n(cluster: &RedisCluster, key: &str) -> String {
    let hash = cluster.hgetall(key);
    hash.get("n").cloned().unwrap_or_else(|| {
        let holders: Vec<(u16, bool)> = cluster
            .masters()
            .iter()
            .map(|m| {
                let exists: bool = redis::Client::open(format!("redis://127.0.0.1:{}", m.port))
                    .and_then(|c| c.get_connection())
                    .and_then(|mut c| c.exists(key))
                    .unwrap_or(false);
                (m.port, exists)
            })
            .collect();
        panic!(
            "{key} (slot {}) read as {hash:?} from a cluster client; master of its slot {:?}; \
             (master port, holds it): {holders:?}",
            RedisCluster::slot_of(key),
            cluster.node_of_key(key),
        )
    })
}

#[test]
fn cluster_migrates_a_slot_and_fails_over() {
    let started = Instant::now();
    let mut cluster = RedisCluster::start(3, 1);
    eprintln!("cluster up: {:?}", started.elapsed());
    assert_eq!(cluster.masters().len(), 3);
    assert_eq!(cluster.seed_urls().split(',').count(), 3);

    let keys: Vec<String> = (0..60).map(|i| format!("streamhost:k{i}")).collect();
    let mut conn = cluster
        .client()
        .get_connection()
        .expect("cluster connection");
    for (i, key) in keys.iter().enumerate() {
        let () = conn.hset(key, "n", i).expect("HSET");
    }
    assert_eq!(cluster.masters_holding(&keys), 3);

    // The slot computed locally is the one the cluster uses.
    let slot = RedisCluster::slot_of(&keys[0]);
    let served: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(&keys[0])
        .query(&mut conn)
        .expect("CLUSTER KEYSLOT");
    assert_eq!(slot, served);
    assert_eq!(
        RedisCluster::slot_of(b"a{streamhost:job}b"),
        RedisCluster::slot_of(b"streamhost:job")
    );

    let from = cluster.master_of_slot(slot);
    let to = cluster.other_master(&from);
    cluster.migrate_slot(slot, &to);
    assert_eq!(cluster.master_of_slot(slot), to);
    assert_eq!(cluster.node_of_key(&keys[0]), to);
    // The connection made before the move follows the MOVED redirect.
    let n: String = conn.hget(&keys[0], "n").expect("HGET after the move");
    assert_eq!(n, "0");

    // Mid-migration, a key not yet moved is on the source and a new one goes to the target
    // by ASK.
    let back = cluster.begin_migration(slot, &from);
    let new_key = format!("{{{}}}:new", keys[0]);
    assert_eq!(RedisCluster::slot_of(&new_key), slot);
    let () = conn
        .hset(&new_key, "n", "new")
        .expect("HSET during the migration");
    let n: String = conn.hget(&keys[0], "n").expect("HGET during the migration");
    assert_eq!(n, "0");
    cluster.finish_migration(back);
    assert_eq!(cluster.master_of_slot(slot), from);
    assert_eq!(field_n(&cluster, &new_key), "new");

    cluster.wait_replicated();
    let failover = Instant::now();
    let killed = cluster.kill_master_of_slot(slot);
    eprintln!("failover: {:?}", failover.elapsed());
    assert_eq!(killed, from);
    assert_ne!(cluster.master_of_slot(slot), killed);
    assert_eq!(cluster.masters().len(), 3);
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(field_n(&cluster, key), i.to_string(), "{key}");
    }
    // A fresh connection: one opened before the failover was seen to stay stuck on the dead
    // master (redis 1.8.1's sync cluster connection: "unexpected end of file", then "Broken
    // pipe" on every retry), which is the client's business, not the topology's.
    let mut conn = cluster
        .client()
        .get_connection()
        .expect("cluster connection");
    let n: String = conn.hget(&new_key, "n").expect("HGET after the failover");
    assert_eq!(n, "new");
    eprintln!("cluster: {:?}", started.elapsed());
}

#[test]
fn sentinel_fails_over_a_killed_master() {
    let started = Instant::now();
    let mut sentinel = RedisSentinel::start();
    eprintln!("sentinel up: {:?}", started.elapsed());
    assert_eq!(sentinel.sentinel_urls().split(',').count(), 3);
    let old = sentinel.master_port();
    let mut master = sentinel.conn_to_master();
    let () = master.set("streamhost:s", "1").expect("SET");
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query(&mut master)
        .expect("WAIT");
    assert_eq!(acked, 1);

    // A paused replica stops acknowledging; resumed, it catches up.
    sentinel.pause_replica();
    let () = master.set("streamhost:p", "1").expect("SET");
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(300)
        .query(&mut master)
        .expect("WAIT");
    assert_eq!(acked, 0);
    sentinel.resume_replica();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query(&mut master)
        .expect("WAIT");
    assert_eq!(acked, 1);

    let () = master.set("streamhost:q", "1").expect("SET");
    sentinel.wait_replicated();
    let failover = Instant::now();
    assert_eq!(sentinel.kill_master(), old);
    let new = sentinel.wait_for_failover(old);
    eprintln!("failover: {:?}", failover.elapsed());
    assert_ne!(new, old);
    assert_eq!(sentinel.master_port(), new);
    for key in ["streamhost:p", "streamhost:q"] {
        let got: String = sentinel.conn_to_master().get(key).expect("GET");
        assert_eq!(got, "1", "{key}");
    }

    // The URLs are what a sentinel-aware client needs.
    let urls: Vec<String> = sentinel
        .sentinel_urls()
        .split(',')
        .map(str::to_string)
        .collect();
    let mut client = redis::sentinel::SentinelClient::build(
        urls,
        sentinel.master_name(),
        None,
        redis::sentinel::SentinelServerType::Master,
    )
    .expect("sentinel client");
    let got: String = client
        .get_connection()
        .expect("connection through the sentinels")
        .get("streamhost:s")
        .expect("GET");
    assert_eq!(got, "1");
    eprintln!("sentinel: {:?}", started.elapsed());
}
