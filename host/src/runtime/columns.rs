//! The batch in columns, for plugins that export `columns-handler` (see `batch-columns`
//! in wit/streamhost.wit): the per-record fields packed little-endian into two byte lists,
//! which interpreted guests receive in one copy each.

use crate::batch::{Batch, Span};
use crate::contract::streamhost::plugin::types::BatchColumns;

/// The length of a null key or value in `batch-columns.spans`.
pub const NO_BYTES: u32 = u32::MAX;
/// The timestamp or event time of a record that has none, in `batch-columns.times`.
pub const NO_TIME: i64 = i64::MIN;
/// u32 fields per record in `spans`, s64 fields per record in `times`.
const SPAN_FIELDS: usize = 6;
const TIME_FIELDS: usize = 3;

/// Lends a batch in columns: its topic, byte buffer and headers move into the columns
/// and back, so only the per-record fields are copied.
pub(crate) fn with_columns<T>(batch: &mut Batch, f: impl FnOnce(&BatchColumns) -> T) -> T {
    let n = batch.records.len();
    let mut spans = Vec::with_capacity(n * SPAN_FIELDS * 4);
    let mut times = Vec::with_capacity(n * TIME_FIELDS * 8);
    let span = |s: Option<Span>| s.map_or((0, NO_BYTES), |s| (s.start, s.len));
    for r in &batch.records {
        let (key_start, key_len) = span(r.key);
        let (value_start, value_len) = span(r.value);
        for v in [
            key_start,
            key_len,
            value_start,
            value_len,
            r.first_header,
            r.header_count,
        ] {
            spans.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            r.offset,
            r.timestamp.unwrap_or(NO_TIME),
            r.event_time.unwrap_or(NO_TIME),
        ] {
            times.extend_from_slice(&v.to_le_bytes());
        }
    }
    let c = BatchColumns {
        topic: std::mem::take(&mut batch.topic),
        partition: batch.partition,
        from_offset: batch.from_offset,
        until_offset: batch.until_offset,
        data: std::mem::take(&mut batch.data),
        // A batch's records are addressed by u32 spans, so their count fits too.
        count: n as u32,
        spans,
        times,
        headers: std::mem::take(&mut batch.headers),
        watermark: batch.watermark,
        processing_time: batch.processing_time,
    };
    let out = f(&c);
    batch.topic = c.topic;
    batch.data = c.data;
    batch.headers = c.headers;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;

    fn u32s(bytes: &[u8]) -> Vec<u32> {
        bytes
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn i64s(bytes: &[u8]) -> Vec<i64> {
        bytes
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn columns_carry_every_field_and_the_batch_comes_back_whole() {
        let mut b = BatchBuilder::new("t", 3);
        b.push(
            7,
            Some(1000),
            Some(b"k"),
            Some(b"value"),
            [(&b"h"[..], Some(&b"v"[..]))],
        )
        .unwrap();
        b.push(9, None, None, None, []).unwrap();
        let mut batch = b.finish(None);
        batch.watermark = Some(500);
        let before = format!("{batch:?}");
        let seen = with_columns(&mut batch, |c| {
            assert_eq!(c.count, 2);
            let spans = u32s(&c.spans);
            assert_eq!(spans.len(), 12);
            let (k, v) = (spans[0] as usize, spans[2] as usize);
            assert_eq!(&c.data[k..k + spans[1] as usize], b"k");
            assert_eq!(&c.data[v..v + spans[3] as usize], b"value");
            assert_eq!(&spans[4..6], [0, 1], "first header, header count");
            assert_eq!(&spans[6..], [0, NO_BYTES, 0, NO_BYTES, 1, 0]);
            assert_eq!(
                i64s(&c.times),
                [7, 1000, 1000, 9, NO_TIME, NO_TIME],
                "offset, timestamp, event time (the Kafka timestamp until extract)"
            );
            assert_eq!(c.headers.len(), 1);
            (c.topic.clone(), c.partition, c.watermark)
        });
        assert_eq!(seen, ("t".to_owned(), 3, Some(500)));
        assert_eq!(format!("{batch:?}"), before);
    }
}
