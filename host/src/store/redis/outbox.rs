//! The outbox of `--delivery exactly-once`: a batch's emits, kept in Redis by the same
//! fenced commit as its state and offsets, until the relay (`pipeline::relay`) has
//! published them in a Kafka transaction.
//!
//! Per source partition, beside its offsets (same hash tag, so the commit stays in one
//! slot): a STREAM whose entry `SEQ-0` holds one committed batch's emits, and a counter
//! hash that hands out `SEQ` (the stream's own last id would be lost when the relay trims
//! the stream empty). Only batches that emitted something get an entry, so every
//! transaction the relay opens carries at least one record.

use redis::Value;

use super::{RedisStore, StoreError};
use crate::contract::streamhost::plugin::types::{Header, OutputRecord};

/// The entry format's version, its first byte: a host that finds another refuses it
/// instead of publishing garbage.
const FORMAT: u8 = 1;

/// One committed batch's emits, as the relay reads them back.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub bytes: usize,
    /// The batch's source offsets `[from, until)`: the relay adds the source headers
    /// from them (they are not stored once per record).
    pub from: i64,
    pub until: i64,
    pub records: Vec<OutputRecord>,
}

/// The bytes of an outbox entry: the batch's offset range, then the records in order,
/// each field length-prefixed.
pub fn encode(records: &[OutputRecord], from: i64, until: i64) -> Vec<u8> {
    let size: usize = records.iter().map(record_size).sum();
    let mut out = Vec::with_capacity(21 + size);
    out.push(FORMAT);
    out.extend_from_slice(&from.to_be_bytes());
    out.extend_from_slice(&until.to_be_bytes());
    put_len(&mut out, records.len());
    for r in records {
        put_opt(&mut out, r.topic.as_deref().map(str::as_bytes));
        put_opt(&mut out, r.key.as_deref());
        put_opt(&mut out, r.value.as_deref());
        put_len(&mut out, r.headers.len());
        for h in &r.headers {
            put_bytes(&mut out, h.name.as_bytes());
            put_opt(&mut out, h.value.as_deref());
        }
    }
    out
}

fn record_size(r: &OutputRecord) -> usize {
    let opt = |b: Option<usize>| b.map_or(1, |n| 5 + n);
    opt(r.topic.as_ref().map(String::len))
        + opt(r.key.as_ref().map(Vec::len))
        + opt(r.value.as_ref().map(Vec::len))
        + 4
        + r.headers
            .iter()
            .map(|h| 4 + h.name.len() + opt(h.value.as_ref().map(Vec::len)))
            .sum::<usize>()
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

/// Why an entry could not be read back.
#[derive(Debug, thiserror::Error)]
#[error(
    "outbox entry {seq} in {key} is not an outbox entry of this release ({why}); \
         a host of another release wrote it, or the key was changed by hand: publish it \
         with that release, or delete the entry (its records are then never published)"
)]
pub struct DecodeError {
    pub key: String,
    pub seq: u64,
    pub why: &'static str,
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.rest.len() < n {
            return Err("truncated");
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn len(&mut self) -> Result<usize, &'static str> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, &'static str> {
        let n = self.len()?;
        Ok(self.take(n)?.to_vec())
    }

    fn opt(&mut self) -> Result<Option<Vec<u8>>, &'static str> {
        match self.take(1)?[0] {
            0 => Ok(None),
            1 => self.bytes().map(Some),
            _ => Err("bad presence flag"),
        }
    }
}

/// An entry's offset range and records.
pub fn decode(bytes: &[u8]) -> Result<(i64, i64, Vec<OutputRecord>), &'static str> {
    let mut r = Reader { rest: bytes };
    if r.take(1)?[0] != FORMAT {
        return Err("unknown format version");
    }
    let mut range = [0i64; 2];
    for v in &mut range {
        let b = r.take(8)?;
        *v = i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    }
    let count = r.len()?;
    let mut records = Vec::with_capacity(count.min(bytes.len()));
    for _ in 0..count {
        let topic = r
            .opt()?
            .map(|t| String::from_utf8(t).map_err(|_| "topic is not UTF-8"))
            .transpose()?;
        let key = r.opt()?;
        let value = r.opt()?;
        let n = r.len()?;
        let mut headers = Vec::with_capacity(n.min(bytes.len()));
        for _ in 0..n {
            let name = String::from_utf8(r.bytes()?).map_err(|_| "header name is not UTF-8")?;
            headers.push(Header {
                name,
                value: r.opt()?,
            });
        }
        records.push(OutputRecord {
            topic,
            key,
            value,
            headers,
        });
    }
    if !r.rest.is_empty() {
        return Err("trailing bytes");
    }
    Ok((range[0], range[1], records))
}

/// The sequence number of a stream id `SEQ-0`.
fn seq_of(id: &[u8]) -> Option<u64> {
    let id = std::str::from_utf8(id).ok()?;
    id.split('-').next()?.parse().ok()
}

impl RedisStore {
    /// Up to `count` entries of `partition`'s outbox from `from` on (oldest first).
    pub fn outbox_read(
        &self,
        topic: &str,
        partition: i32,
        from: u64,
        count: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let key = self.keys.outbox(topic, partition);
        let raw: Value = self.with_conn(&key, |c| {
            redis::cmd("XRANGE")
                .arg(&key)
                .arg(format!("{from}-0"))
                .arg("+")
                .arg("COUNT")
                .arg(count.max(1))
                .query(c)
        })?;
        let bad = |why: &'static str, seq: u64| StoreError::Command {
            key: key.clone(),
            detail: DecodeError {
                key: key.clone(),
                seq,
                why,
            }
            .to_string(),
        };
        let mut entries = Vec::new();
        let Value::Array(items) = raw else {
            return Ok(entries);
        };
        for item in items {
            let Value::Array(pair) = item else {
                return Err(bad("not an id and fields", 0));
            };
            let (Some(Value::BulkString(id)), Some(Value::Array(fields))) =
                (pair.first(), pair.get(1))
            else {
                return Err(bad("not an id and fields", 0));
            };
            let seq = seq_of(id).ok_or_else(|| bad("id is not SEQ-0", 0))?;
            let blob = match fields.get(1) {
                Some(Value::BulkString(b)) => b,
                _ => return Err(bad("no records field", seq)),
            };
            let (from, until, records) = decode(blob).map_err(|why| bad(why, seq))?;
            entries.push(Entry {
                seq,
                bytes: blob.len(),
                from,
                until,
                records,
            });
        }
        Ok(entries)
    }

    /// The oldest entry's sequence number, if the outbox holds any.
    pub fn outbox_first(&self, topic: &str, partition: i32) -> Result<Option<u64>, StoreError> {
        let key = self.keys.outbox(topic, partition);
        let raw: Value = self.with_conn(&key, |c| {
            redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query(c)
        })?;
        Ok(match raw {
            Value::Array(items) => items.first().and_then(|item| match item {
                Value::Array(pair) => match pair.first() {
                    Some(Value::BulkString(id)) => seq_of(id),
                    _ => None,
                },
                _ => None,
            }),
            _ => None,
        })
    }

    /// Drops the entries below `below`: the relay published them in a committed
    /// transaction.
    pub fn outbox_trim(&self, topic: &str, partition: i32, below: u64) -> Result<(), StoreError> {
        let key = self.keys.outbox(topic, partition);
        self.with_conn(&key, |c| {
            redis::cmd("XTRIM")
                .arg(&key)
                .arg("MINID")
                .arg(format!("{below}-0"))
                .query::<i64>(c)
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_as_written() {
        let records = vec![
            OutputRecord {
                topic: None,
                key: Some(b"k".to_vec()),
                value: Some(vec![0, 255, 1]),
                headers: vec![
                    Header {
                        name: "a".into(),
                        value: None,
                    },
                    Header {
                        name: "b".into(),
                        value: Some(Vec::new()),
                    },
                ],
            },
            OutputRecord {
                topic: Some("named".into()),
                key: None,
                value: None,
                headers: Vec::new(),
            },
        ];
        let bytes = encode(&records, 7, -1);
        assert_eq!(
            bytes.len(),
            1 + 16 + 4 + records.iter().map(record_size).sum::<usize>()
        );
        let (from, until, back) = decode(&bytes).unwrap();
        assert_eq!((from, until), (7, -1));
        assert_eq!(back.len(), 2);
        assert_eq!(encode(&back, 7, -1), bytes);
        assert_eq!(back[0].value.as_deref(), Some(&[0u8, 255, 1][..]));
        assert_eq!(back[0].headers[0].value, None);
        assert_eq!(back[0].headers[1].value.as_deref(), Some(&[][..]));
        assert_eq!(back[1].topic.as_deref(), Some("named"));
        assert!(decode(&encode(&[], 0, 0)).unwrap().2.is_empty());
    }

    #[test]
    fn damaged_entries_are_refused() {
        let bytes = encode(
            &[OutputRecord {
                topic: Some("t".into()),
                key: None,
                value: Some(b"v".to_vec()),
                headers: Vec::new(),
            }],
            0,
            1,
        );
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut other = bytes.clone();
        other[0] = 9;
        assert_eq!(decode(&other).err(), Some("unknown format version"));
        let mut longer = bytes;
        longer.push(0);
        assert_eq!(decode(&longer).err(), Some("trailing bytes"));
    }
}
