//! The batch in columns, for plugins that export `columns-handler` (see `batch-columns`
//! in wit/streamhost.wit): the same records, one list per field.

use crate::batch::{Batch, Span};
use crate::contract::streamhost::plugin::types::BatchColumns;

/// The length of a null key or value in `batch-columns`.
pub const NO_BYTES: u32 = u32::MAX;
/// The timestamp or event time of a record that has none, in `batch-columns`.
pub const NO_TIME: i64 = i64::MIN;

/// Lends a batch in columns: its topic, byte buffer and headers move into the columns
/// and back, so only the per-record fields are copied.
pub(crate) fn with_columns<T>(batch: &mut Batch, f: impl FnOnce(&BatchColumns) -> T) -> T {
    let n = batch.records.len();
    let mut c = BatchColumns {
        topic: std::mem::take(&mut batch.topic),
        partition: batch.partition,
        from_offset: batch.from_offset,
        until_offset: batch.until_offset,
        data: std::mem::take(&mut batch.data),
        offsets: Vec::with_capacity(n),
        timestamps: Vec::with_capacity(n),
        key_starts: Vec::with_capacity(n),
        key_lens: Vec::with_capacity(n),
        value_starts: Vec::with_capacity(n),
        value_lens: Vec::with_capacity(n),
        header_starts: Vec::with_capacity(n),
        header_counts: Vec::with_capacity(n),
        headers: std::mem::take(&mut batch.headers),
        event_times: Vec::with_capacity(n),
        watermark: batch.watermark,
        processing_time: batch.processing_time,
    };
    let span = |s: Option<Span>| s.map_or((0, NO_BYTES), |s| (s.start, s.len));
    for r in &batch.records {
        c.offsets.push(r.offset);
        c.timestamps.push(r.timestamp.unwrap_or(NO_TIME));
        let (start, len) = span(r.key);
        c.key_starts.push(start);
        c.key_lens.push(len);
        let (start, len) = span(r.value);
        c.value_starts.push(start);
        c.value_lens.push(len);
        c.header_starts.push(r.first_header);
        c.header_counts.push(r.header_count);
        c.event_times.push(r.event_time.unwrap_or(NO_TIME));
    }
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
            assert_eq!(c.offsets, [7, 9]);
            assert_eq!(c.timestamps, [1000, NO_TIME]);
            assert_eq!(c.key_lens, [1, NO_BYTES]);
            assert_eq!(c.value_lens, [5, NO_BYTES]);
            let v = c.value_starts[0] as usize;
            assert_eq!(&c.data[v..v + 5], b"value");
            assert_eq!(
                (c.header_starts[0], c.header_counts.clone()),
                (0, vec![1, 0])
            );
            assert_eq!(c.headers.len(), 1);
            assert_eq!(
                c.event_times,
                [1000, NO_TIME],
                "the Kafka timestamp until extract"
            );
            (c.topic.clone(), c.partition, c.watermark)
        });
        assert_eq!(seen, ("t".to_owned(), 3, Some(500)));
        assert_eq!(format!("{batch:?}"), before);
    }
}
