//! `host state get|scan`: a job's state read from Redis without a service of one's own,
//! through the same bounded reads as the console (`store::redis::query`).

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;

use crate::store::redis::query::{MAX_LIMIT, StateEntry};
use crate::store::redis::{Redis, RedisStore};

/// The store of `target`'s job: a `host serve` job by its id (its namespace is its group
/// when it has one), otherwise a `host run` job by its name.
pub fn open(target: &JobTarget) -> anyhow::Result<(Arc<Redis>, RedisStore)> {
    let redis = Arc::new(Redis::new(&target.redis.config())?);
    let namespace = crate::admin::stored_job(&redis, &target.job)?
        .map_or_else(|| target.job.clone(), |spec| spec.namespace().to_owned());
    let store = RedisStore::open(redis.clone(), &namespace, &namespace, None)
        .with_context(|| format!("opening the state of job {namespace}"))?;
    // A job leaves its topics in Redis when it first runs: none means a wrong name (or
    // Redis), not a job without state.
    if store.topics()?.is_empty() {
        anyhow::bail!(
            "job {} has never run against this Redis (its topic set {} is empty); check \
             --job (`host run`'s --job, default its group, or a `host serve` job id) and \
             --redis",
            target.job,
            store.keys().topics()
        );
    }
    Ok((redis, store))
}

fn shown(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(s) => s.to_owned(),
        Err(_) => format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(value)
        ),
    }
}

fn json_line(e: &StateEntry) -> String {
    let (value, encoding) = match std::str::from_utf8(&e.value) {
        Ok(s) => (s.to_owned(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&e.value),
            "base64",
        ),
    };
    serde_json::json!({"key": e.key, "value": value, "encoding": encoding, "partition": e.partition})
        .to_string()
}

pub fn run(cmd: StateCommand) -> anyhow::Result<()> {
    match cmd {
        StateCommand::Get {
            target,
            key,
            partition,
        } => {
            let (_, store) = open(&target)?;
            match store.state_get(&key, partition)? {
                Some(e) => println!("{}", shown(&e.value)),
                None => anyhow::bail!(
                    "job {} has no state key {key:?}; `host state scan --job {} --prefix …` lists keys",
                    target.job,
                    target.job
                ),
            }
        }
        StateCommand::Scan {
            target,
            prefix,
            limit,
            json,
        } => {
            let (_, store) = open(&target)?;
            let mut out = std::io::stdout().lock();
            let mut cursor: Option<String> = None;
            let mut left = limit.unwrap_or(u64::MAX);
            while left > 0 {
                let page = store
                    .state_scan(&prefix, cursor.as_deref(), MAX_LIMIT.min(left as usize))?
                    .map_err(anyhow::Error::from)?;
                for e in &page.entries {
                    if left == 0 {
                        break;
                    }
                    left -= 1;
                    let line = if json {
                        json_line(e)
                    } else {
                        format!("{}\t{}", e.key, shown(&e.value))
                    };
                    // A closed pipe (`| head`) ends the scan quietly.
                    if writeln!(out, "{line}").is_err() {
                        return Ok(());
                    }
                }
                match page.cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
        }
    }
    Ok(())
}

/// Which job: its name in Redis (`host run --job`, or a `host serve` job's id).
#[derive(Debug, clap::Args)]
pub struct JobTarget {
    /// The job: `host run`'s --job (default there: the group), or a `host serve` job id.
    #[arg(long, env = "STREAMHOST_JOB", value_parser = crate::args::parse_name)]
    pub job: String,
    #[command(flatten)]
    pub redis: crate::store::redis::RedisArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Print one key's value (text, or base64:… when it is not UTF-8).
    Get {
        #[command(flatten)]
        target: JobTarget,
        key: String,
        /// Only this partition's state (--state-scope partition) [default: every partition's].
        #[arg(long)]
        partition: Option<i32>,
    },
    /// Print the keys starting with a prefix, a `KEY<TAB>VALUE` line each (or JSON Lines).
    Scan {
        #[command(flatten)]
        target: JobTarget,
        #[arg(long, default_value = "")]
        prefix: String,
        /// Stop after this many keys [default: all].
        #[arg(long)]
        limit: Option<u64>,
        /// JSON Lines: {"key", "value", "encoding", "partition"}.
        #[arg(long)]
        json: bool,
    },
}
