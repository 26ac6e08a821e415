//! The plugin registry in Redis: components stored by content (sha256), names with
//! versions pointing at them, so every host of a fleet loads the same bytes.
//!
//! Keys:
//! - `streamhost:registry:blob:sha256:<hex>` — STRING, the component's bytes;
//! - `streamhost:registry:versions:<name>` — HASH, version → JSON `{digest, size, pushed_at_ms}`;
//! - `streamhost:registry:names` — SET of names.
//!
//! A name@version is immutable: pushing other bytes under it is refused. Pushing the same
//! bytes again is a no-op. A blob is deleted with the last version that points at it.

use std::path::Path;

use redis::Commands;

use crate::store::redis::{Conn, Redis, RedisConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::runtime::{LoadError, Plugin, Runtime};

const NAMES: &str = "streamhost:registry:names";

fn versions_key(name: &str) -> String {
    format!("streamhost:registry:versions:{name}")
}

/// The versions of `name` that were removed, each with the digest it had: a removed
/// version's name stays bound to its bytes, so it can never come back as other bytes.
fn removed_key(name: &str) -> String {
    format!("streamhost:registry:removed:{name}")
}

fn blob_key(digest: &str) -> String {
    format!("streamhost:registry:blob:{digest}")
}

/// One version of a plugin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub version: String,
    /// `sha256:<hex>` of the component's bytes.
    pub digest: String,
    pub size: u64,
    pub pushed_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    digest: String,
    size: u64,
    pushed_at_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "bad plugin name {0:?}: use 1-64 characters a-z, 0-9, '.', '_' and '-', starting with \
         a letter or digit"
    )]
    BadName(String),
    #[error(
        "bad plugin version {0:?}: use 1-64 characters A-Z, a-z, 0-9, '.', '_', '+' and '-', \
         starting with a letter or digit"
    )]
    BadVersion(String),
    #[error("bad plugin reference {0:?}: use NAME, NAME@VERSION or NAME@sha256:<64 hex digits>")]
    BadReference(String),
    #[error("the component is {size} bytes, over the upload limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error(transparent)]
    Invalid(#[from] LoadError),
    #[error(
        "{name}@{version} already exists with digest {existing}; versions are immutable: \
         push these bytes under a new version"
    )]
    Conflict {
        name: String,
        version: String,
        existing: String,
    },
    #[error("plugin {0} is not in the registry; `host plugin list` shows what is")]
    NotFound(String),
    #[error(
        "{name}@{version} was removed, and a version's name stays bound to its bytes (digest \
         {digest}) for good: push these bytes under a new version"
    )]
    Retired {
        name: String,
        version: String,
        digest: String,
    },
    #[error(
        "{plugin} is used by job(s) {}; swap them to another version (PATCH /v1/jobs/ID) or \
         delete them first",
        jobs.join(", ")
    )]
    InUse { plugin: String, jobs: Vec<String> },
    #[error(
        "registry blob {key} does not match its digest (it has sha256:{actual}); push the \
         plugin again"
    )]
    Corrupt { key: String, actual: String },
    #[error("Redis (plugin registry): {0}")]
    Redis(redis::RedisError),
    #[error("plugin registry: {0}")]
    Store(crate::store::StoreError),
}

// By hand rather than `#[from]`, which would also make the Redis error this one's
// `source()`: its text is already in the message, and printing the chain would repeat it.
impl From<redis::RedisError> for RegistryError {
    fn from(e: redis::RedisError) -> Self {
        RegistryError::Redis(e)
    }
}

impl RegistryError {
    /// A short machine-readable reason, for API clients.
    pub fn reason(&self) -> &'static str {
        match self {
            RegistryError::BadName(_) => "bad_name",
            RegistryError::BadVersion(_) => "bad_version",
            RegistryError::BadReference(_) => "bad_reference",
            RegistryError::TooLarge { .. } => "too_large",
            RegistryError::Invalid(e) => match e {
                LoadError::NotWasm { .. } => "not_wasm",
                LoadError::CoreModule { .. } => "not_a_component",
                LoadError::WrongWorld { .. } => "wrong_world",
                LoadError::IncompatibleVersion { .. } => "wrong_contract_version",
                LoadError::UnsupportedImports { .. } => "unsupported_imports",
                _ => "invalid_component",
            },
            RegistryError::Conflict { .. } => "version_exists",
            RegistryError::NotFound(_) => "not_found",
            RegistryError::Retired { .. } => "version_removed",
            RegistryError::InUse { .. } => "in_use",
            RegistryError::Corrupt { .. } => "corrupt",
            RegistryError::Redis(_) | RegistryError::Store(_) => "redis_unavailable",
        }
    }
}

pub fn valid_name(name: &str) -> bool {
    valid(name, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
    })
}

pub fn valid_version(version: &str) -> bool {
    valid(version, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')
    })
}

fn valid(s: &str, allowed: impl Fn(char) -> bool) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().all(allowed)
}

/// What `--plugin` names when it is not a file: `name`, `name@version`, `name@sha256:…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Latest(String),
    Version(String, String),
    Digest(String, String),
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, RegistryError> {
        let bad = || RegistryError::BadReference(s.to_owned());
        let (name, rest) = match s.split_once('@') {
            Some((n, r)) => (n, Some(r)),
            None => (s, None),
        };
        if !valid_name(name) {
            return Err(bad());
        }
        Ok(match rest {
            None => Reference::Latest(name.to_owned()),
            Some(r) => match r.strip_prefix("sha256:") {
                Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    Reference::Digest(name.to_owned(), format!("sha256:{}", hex.to_lowercase()))
                }
                Some(_) => return Err(bad()),
                None if valid_version(r) => Reference::Version(name.to_owned(), r.to_owned()),
                None => return Err(bad()),
            },
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Reference::Latest(n) | Reference::Version(n, _) | Reference::Digest(n, _) => n,
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Latest(n) => write!(f, "{n}"),
            Reference::Version(n, v) => write!(f, "{n}@{v}"),
            Reference::Digest(n, d) => write!(f, "{n}@{d}"),
        }
    }
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn now_ms() -> u64 {
    crate::clock::unix_ms() as u64
}

pub struct Registry {
    redis: std::sync::Arc<Redis>,
}

impl Registry {
    /// The Redis holding the registry (and `host serve`'s job definitions).
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    pub fn new(redis: std::sync::Arc<Redis>) -> Registry {
        Registry { redis }
    }

    pub fn connect(config: &RedisConfig) -> Result<Registry, RegistryError> {
        let redis = Redis::new(config).map_err(RegistryError::Store)?;
        Ok(Registry::new(std::sync::Arc::new(redis)))
    }

    fn conn(&self) -> Result<Conn, RegistryError> {
        self.redis
            .connect()
            .map_err(|e| RegistryError::Store(self.redis.error("(connect)", e)))
    }

    /// Validates `bytes` as a plugin of this host's contract, then stores it as
    /// `name@version` (the next integer version when `None`). Nothing is stored when
    /// validation fails.
    pub fn push(
        &self,
        runtime: &Runtime,
        name: &str,
        version: Option<&str>,
        bytes: &[u8],
        limit: u64,
    ) -> Result<Entry, RegistryError> {
        if !valid_name(name) {
            return Err(RegistryError::BadName(name.to_owned()));
        }
        if let Some(v) = version
            && !valid_version(v)
        {
            return Err(RegistryError::BadVersion(v.to_owned()));
        }
        if bytes.len() as u64 > limit {
            return Err(RegistryError::TooLarge {
                size: bytes.len() as u64,
                limit,
            });
        }
        let origin = format!("{name}@{}", version.unwrap_or("(new)"));
        runtime.load_bytes(name, Path::new(&origin), bytes)?;
        let digest = digest_of(bytes);
        let mut conn = self.conn()?;
        let existing = self.versions(&mut conn, name)?;
        let removed: Vec<(String, String)> = conn.hgetall(removed_key(name))?;
        let version = match version {
            Some(v) => v.to_owned(),
            None => {
                // Same bytes as the newest version: nothing new to push.
                if let Some(latest) = existing.iter().max_by_key(|e| e.pushed_at_ms)
                    && latest.digest == digest
                {
                    return Ok(latest.clone());
                }
                let next = existing
                    .iter()
                    .map(|e| &e.version)
                    .chain(removed.iter().map(|(v, _)| v))
                    .filter_map(|v| v.parse::<u64>().ok())
                    .max()
                    .unwrap_or(0)
                    + 1;
                next.to_string()
            }
        };
        if let Some((_, was)) = removed.iter().find(|(v, _)| *v == version)
            && *was != digest
        {
            return Err(RegistryError::Retired {
                name: name.to_owned(),
                version,
                digest: was.clone(),
            });
        }
        let stored = Stored {
            digest: digest.clone(),
            size: bytes.len() as u64,
            pushed_at_ms: now_ms(),
        };
        let json = serde_json::to_string(&stored).unwrap_or_default();
        // The blob first: a version never points at missing bytes.
        let _: () = conn.set(blob_key(&digest), bytes)?;
        let created: bool = conn.hset_nx(versions_key(name), &version, &json)?;
        let _: () = conn.sadd(NAMES, name)?;
        if !created {
            let entry = self.entry(&mut conn, name, &version)?;
            if entry.digest != digest {
                return Err(RegistryError::Conflict {
                    name: name.to_owned(),
                    version,
                    existing: entry.digest,
                });
            }
            return Ok(entry);
        }
        Ok(Entry {
            name: name.to_owned(),
            version,
            digest,
            size: stored.size,
            pushed_at_ms: stored.pushed_at_ms,
        })
    }

    fn versions(&self, conn: &mut Conn, name: &str) -> Result<Vec<Entry>, RegistryError> {
        let all: Vec<(String, String)> = conn.hgetall(versions_key(name))?;
        let mut out: Vec<Entry> = all
            .into_iter()
            .filter_map(|(version, json)| {
                let s: Stored = serde_json::from_str(&json).ok()?;
                Some(Entry {
                    name: name.to_owned(),
                    version,
                    digest: s.digest,
                    size: s.size,
                    pushed_at_ms: s.pushed_at_ms,
                })
            })
            .collect();
        out.sort_by(|a, b| (a.pushed_at_ms, &a.version).cmp(&(b.pushed_at_ms, &b.version)));
        Ok(out)
    }

    fn entry(&self, conn: &mut Conn, name: &str, version: &str) -> Result<Entry, RegistryError> {
        self.versions(conn, name)?
            .into_iter()
            .find(|e| e.version == version)
            .ok_or_else(|| RegistryError::NotFound(format!("{name}@{version}")))
    }

    /// Every version of every plugin, by name, oldest version first.
    pub fn list(&self) -> Result<Vec<Entry>, RegistryError> {
        let mut conn = self.conn()?;
        let mut names: Vec<String> = conn.smembers(NAMES)?;
        names.sort();
        let mut out = Vec::new();
        for name in names {
            out.extend(self.versions(&mut conn, &name)?);
        }
        Ok(out)
    }

    /// The versions of one name (oldest first); `NotFound` if it has none.
    pub fn show(&self, name: &str) -> Result<Vec<Entry>, RegistryError> {
        let versions = self.versions(&mut self.conn()?, name)?;
        if versions.is_empty() {
            return Err(RegistryError::NotFound(name.to_owned()));
        }
        Ok(versions)
    }

    /// The entry a reference names (`name` alone: the most recently pushed version).
    pub fn resolve(&self, reference: &Reference) -> Result<Entry, RegistryError> {
        let versions = self.versions(&mut self.conn()?, reference.name())?;
        let found = match reference {
            Reference::Latest(_) => versions.into_iter().last(),
            Reference::Version(_, v) => versions.into_iter().find(|e| &e.version == v),
            Reference::Digest(_, d) => versions.into_iter().rev().find(|e| &e.digest == d),
        };
        found.ok_or_else(|| RegistryError::NotFound(reference.to_string()))
    }

    /// The bytes of an entry, checked against its digest.
    pub fn fetch(&self, entry: &Entry) -> Result<Vec<u8>, RegistryError> {
        let key = blob_key(&entry.digest);
        let bytes: Option<Vec<u8>> = self.conn()?.get(&key)?;
        let bytes = bytes.ok_or_else(|| {
            RegistryError::NotFound(format!("{}@{} (blob {key})", entry.name, entry.version))
        })?;
        let actual = digest_of(&bytes);
        if actual != entry.digest {
            return Err(RegistryError::Corrupt {
                key,
                actual: actual.trim_start_matches("sha256:").to_owned(),
            });
        }
        Ok(bytes)
    }

    /// Loads the plugin a reference names, verifying its digest.
    pub fn load(
        &self,
        runtime: &Runtime,
        reference: &Reference,
    ) -> Result<(Entry, Plugin), RegistryError> {
        let entry = self.resolve(reference)?;
        self.load_entry(runtime, entry)
    }

    /// Loads an entry's plugin, verifying its digest.
    pub fn load_entry(
        &self,
        runtime: &Runtime,
        entry: Entry,
    ) -> Result<(Entry, Plugin), RegistryError> {
        let bytes = self.fetch(&entry)?;
        let origin = format!("{}@{}", entry.name, entry.version);
        let plugin = runtime.load_bytes(&entry.name, Path::new(&origin), &bytes)?;
        Ok((entry, plugin))
    }

    /// Removes `name@version` (its name stays bound to its digest); the blob goes too when
    /// no other version points at it. `users` names the jobs that still use the entry:
    /// any refuses the removal.
    pub fn remove(
        &self,
        name: &str,
        version: &str,
        users: impl FnOnce(&Entry) -> Result<Vec<String>, RegistryError>,
    ) -> Result<Entry, RegistryError> {
        let mut conn = self.conn()?;
        let entry = self.entry(&mut conn, name, version)?;
        let jobs = users(&entry)?;
        if !jobs.is_empty() {
            return Err(RegistryError::InUse {
                plugin: format!("{name}@{version}"),
                jobs,
            });
        }
        let _: () = conn.hset(removed_key(name), version, &entry.digest)?;
        let _: () = conn.hdel(versions_key(name), version)?;
        let left: usize = conn.hlen(versions_key(name))?;
        if left == 0 {
            let _: () = conn.srem(NAMES, name)?;
        }
        let names: Vec<String> = conn.smembers(NAMES)?;
        let mut still_used = false;
        for n in names {
            if self
                .versions(&mut conn, &n)?
                .iter()
                .any(|e| e.digest == entry.digest)
            {
                still_used = true;
                break;
            }
        }
        if !still_used {
            let _: () = conn.del(blob_key(&entry.digest))?;
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_or_say_why_not() {
        assert_eq!(
            Reference::parse("wc").unwrap(),
            Reference::Latest("wc".into())
        );
        assert_eq!(
            Reference::parse("wc@1.2.0").unwrap(),
            Reference::Version("wc".into(), "1.2.0".into())
        );
        let hex = "AB".repeat(32);
        assert_eq!(
            Reference::parse(&format!("wc@sha256:{hex}")).unwrap(),
            Reference::Digest("wc".into(), format!("sha256:{}", hex.to_lowercase()))
        );
        for bad in ["", "Wc", "wc@", "wc@sha256:12", "../x", "wc@a/b", "a b"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
    }
}
