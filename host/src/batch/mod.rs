//! Batches as the plugin sees them: one partition's consecutive records, with all their
//! bytes packed into one buffer (see `batch` in wit/streamhost.wit for why), and in
//! `effects` what a batch produced (emits, state writes), buffered until it commits.

pub mod effects;

pub use crate::contract::streamhost::plugin::types::{Batch, KafkaRecord, RecordHeader, Span};

/// A batch's byte buffer is addressed with 32-bit spans.
#[derive(Debug, thiserror::Error)]
#[error("a batch cannot hold more than 4 GiB of keys, values and headers")]
pub struct BatchFull;

/// Builds a `Batch` record by record.
#[derive(Debug)]
pub struct BatchBuilder {
    topic: String,
    partition: i32,
    data: Vec<u8>,
    records: Vec<KafkaRecord>,
    headers: Vec<RecordHeader>,
}

impl BatchBuilder {
    pub fn new(topic: &str, partition: i32) -> Self {
        Self {
            topic: topic.to_owned(),
            partition,
            data: Vec::new(),
            records: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes of keys, values and headers so far.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    fn put(&mut self, bytes: &[u8]) -> Result<Span, BatchFull> {
        let start = u32::try_from(self.data.len()).map_err(|_| BatchFull)?;
        let len = u32::try_from(bytes.len()).map_err(|_| BatchFull)?;
        start.checked_add(len).ok_or(BatchFull)?;
        self.data.extend_from_slice(bytes);
        Ok(Span { start, len })
    }

    /// Appends a record. Header names are bytes because Kafka's are.
    pub fn push<'a>(
        &mut self,
        offset: i64,
        timestamp: Option<i64>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Result<(), BatchFull> {
        let key = key.map(|k| self.put(k)).transpose()?;
        let value = value.map(|v| self.put(v)).transpose()?;
        let first_header = u32::try_from(self.headers.len()).map_err(|_| BatchFull)?;
        for (name, value) in headers {
            let name = self.put(name)?;
            let value = value.map(|v| self.put(v)).transpose()?;
            self.headers.push(RecordHeader { name, value });
        }
        let header_count = self.headers.len() as u32 - first_header;
        self.records.push(KafkaRecord {
            offset,
            timestamp,
            key,
            value,
            first_header,
            header_count,
            event_time: timestamp,
        });
        Ok(())
    }

    /// The batch covering `[first record's offset, until_offset)`; `until_offset`
    /// defaults to one past the last record.
    pub fn finish(self, until_offset: Option<i64>) -> Batch {
        let from_offset = self.records.first().map_or(0, |r| r.offset);
        let until_offset = until_offset
            .or_else(|| self.records.last().map(|r| r.offset + 1))
            .unwrap_or(from_offset);
        Batch {
            topic: self.topic,
            partition: self.partition,
            from_offset,
            until_offset,
            data: self.data,
            records: self.records,
            headers: self.headers,
            watermark: None,
            processing_time: crate::clock::unix_ms(),
        }
    }
}

/// The bytes a span points at; empty if it is out of range.
pub fn slice(batch: &Batch, span: Span) -> &[u8] {
    let start = span.start as usize;
    batch
        .data
        .get(start..start + span.len as usize)
        .unwrap_or_default()
}

pub fn key<'a>(batch: &'a Batch, record: &KafkaRecord) -> Option<&'a [u8]> {
    record.key.map(|s| slice(batch, s))
}

pub fn value<'a>(batch: &'a Batch, record: &KafkaRecord) -> Option<&'a [u8]> {
    record.value.map(|s| slice(batch, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_reads_back() {
        let mut b = BatchBuilder::new("t", 2);
        b.push(10, None, Some(b"k"), Some(b"v1"), [(&b"h"[..], None)])
            .unwrap();
        b.push(12, Some(5), None, None, []).unwrap();
        b.push(
            13,
            None,
            None,
            Some(b""),
            [(&b"a"[..], Some(&b"x"[..])), (&b"a"[..], Some(&b"y"[..]))],
        )
        .unwrap();
        let batch = b.finish(None);
        assert_eq!((batch.from_offset, batch.until_offset), (10, 14));
        let r = &batch.records;
        assert_eq!(key(&batch, &r[0]), Some(&b"k"[..]));
        assert_eq!(value(&batch, &r[0]), Some(&b"v1"[..]));
        assert_eq!(value(&batch, &r[1]), None);
        assert_eq!(value(&batch, &r[2]), Some(&b""[..]));
        assert_eq!((r[2].first_header, r[2].header_count), (1, 2));
        assert_eq!(slice(&batch, batch.headers[2].value.unwrap()), b"y");
    }
}
