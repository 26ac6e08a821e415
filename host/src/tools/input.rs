//! Records read from a file, for `host test`: plain text (one record per line) or JSON
//! Lines (`{"key": .., "value": .., "headers": .., "timestamp": ..}` per line).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

/// One record of an input file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputRecord {
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<InputHeader>,
}

/// A header name and its value (`None` for a null value).
pub type InputHeader = (String, Option<Vec<u8>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// `.jsonl` / `.ndjson` files are JSON Lines, anything else is text.
    Auto,
    /// One record per line; the line (without its line break) is the value.
    Text,
    /// One JSON object per line with optional `key`, `value`, `headers`, `timestamp`.
    Jsonl,
    /// `KEY<TAB>VALUE` per line; a line without a tab is a value with no key.
    KeyValue,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read input file {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
}

/// Reads every record of `path`, in order.
pub fn read_records(path: &Path, format: InputFormat) -> Result<Vec<InputRecord>, InputError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|cause| InputError::Read {
        path: shown.clone(),
        cause,
    })?;
    let format = match format {
        InputFormat::Auto => match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson") => InputFormat::Jsonl,
            _ => InputFormat::Text,
        },
        other => other,
    };
    match format {
        InputFormat::Jsonl => parse_jsonl(&shown, &bytes),
        InputFormat::KeyValue => Ok(parse_key_value(&bytes)),
        _ => Ok(parse_text(&bytes)),
    }
}

fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = bytes.is_empty();
    body.split(|b| *b == b'\n')
        .filter(move |_| !empty)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

/// Text lines; bytes that are not UTF-8 are passed through untouched.
pub fn parse_text(bytes: &[u8]) -> Vec<InputRecord> {
    split_lines(bytes)
        .map(|line| InputRecord {
            value: Some(line.to_vec()),
            ..InputRecord::default()
        })
        .collect()
}

/// `KEY<TAB>VALUE` lines: the first tab splits; bytes pass through untouched.
pub fn parse_key_value(bytes: &[u8]) -> Vec<InputRecord> {
    split_lines(bytes)
        .map(|line| match line.iter().position(|b| *b == b'\t') {
            Some(tab) => InputRecord {
                key: Some(line[..tab].to_vec()),
                value: Some(line[tab + 1..].to_vec()),
                ..InputRecord::default()
            },
            None => InputRecord {
                value: Some(line.to_vec()),
                ..InputRecord::default()
            },
        })
        .collect()
}

fn parse_jsonl(path: &str, bytes: &[u8]) -> Result<Vec<InputRecord>, InputError> {
    let mut out = Vec::new();
    for (i, line) in split_lines(bytes).enumerate() {
        let fail = |message: String| InputError::Line {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let json: Value =
            serde_json::from_slice(line).map_err(|e| fail(format!("not JSON: {e}")))?;
        let Value::Object(fields) = json else {
            return Err(fail(
                "expected a JSON object like {\"key\": \"k\", \"value\": \"v\"}".into(),
            ));
        };
        let mut record = InputRecord::default();
        for (name, v) in fields {
            match name.as_str() {
                "key" => record.key = bytes_of(&v).map_err(|m| fail(format!("key: {m}")))?,
                "value" => record.value = bytes_of(&v).map_err(|m| fail(format!("value: {m}")))?,
                "headers" => {
                    record.headers = headers_of(&v).map_err(|m| fail(format!("headers: {m}")))?
                }
                "timestamp" => {
                    record.timestamp = match v {
                        Value::Null => None,
                        Value::Number(n) => Some(n.as_i64().ok_or_else(|| {
                            fail("timestamp: expected milliseconds as an integer".into())
                        })?),
                        _ => {
                            return Err(fail(
                                "timestamp: expected milliseconds as an integer".into(),
                            ));
                        }
                    }
                }
                other => {
                    return Err(fail(format!(
                        "unknown field {other:?}; known fields are key, value, headers, timestamp"
                    )));
                }
            }
        }
        out.push(record);
    }
    Ok(out)
}

/// A JSON string is its UTF-8 bytes, `null` is a null, `{"base64": ".."}` is raw bytes,
/// and any other JSON value is its compact serialization.
fn bytes_of(v: &Value) -> Result<Option<Vec<u8>>, String> {
    Ok(match v {
        Value::Null => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Object(o) if o.len() == 1 && o.contains_key("base64") => {
            let Some(Value::String(b64)) = o.get("base64") else {
                return Err("base64 must be a string".into());
            };
            Some(BASE64.decode(b64).map_err(|e| format!("bad base64: {e}"))?)
        }
        other => Some(other.to_string().into_bytes()),
    })
}

/// `{"name": value, ..}` or `[["name", value], ..]` (the list form allows repeated names).
fn headers_of(v: &Value) -> Result<Vec<InputHeader>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Object(o) => o
            .iter()
            .map(|(name, value)| Ok((name.clone(), bytes_of(value)?)))
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Array(pair) if pair.len() == 2 => {
                    let Value::String(name) = &pair[0] else {
                        return Err("header names must be strings".to_owned());
                    };
                    Ok((name.clone(), bytes_of(&pair[1])?))
                }
                _ => Err("expected [name, value] pairs".to_owned()),
            })
            .collect(),
        _ => Err("expected an object or a list of [name, value] pairs".into()),
    }
}

/// The JSON form of bytes used in `host test` output: a string when the bytes are UTF-8,
/// `{"base64": ..}` otherwise, `null` for none.
pub fn bytes_to_json(bytes: Option<&[u8]>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => serde_json::json!({ "base64": BASE64.encode(b) }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_keep_raw_bytes_and_empty_lines() {
        let records = parse_text(b"a b\r\n\n\xff\xfe x\nlast");
        let values: Vec<_> = records.iter().map(|r| r.value.clone().unwrap()).collect();
        assert_eq!(
            values,
            vec![
                b"a b".to_vec(),
                b"".to_vec(),
                b"\xff\xfe x".to_vec(),
                b"last".to_vec()
            ]
        );
        assert!(parse_text(b"").is_empty());
    }

    #[test]
    fn key_value_lines_split_at_the_first_tab() {
        let r = parse_key_value(b"k1\tv 1\nno key\nk2\ta\tb\n\tempty key");
        let pairs: Vec<_> = r.iter().map(|r| (r.key.clone(), r.value.clone())).collect();
        let b = |s: &str| Some(s.as_bytes().to_vec());
        assert_eq!(
            pairs,
            vec![
                (b("k1"), b("v 1")),
                (None, b("no key")),
                (b("k2"), b("a\tb")),
                (b(""), b("empty key")),
            ]
        );
    }

    #[test]
    fn jsonl_forms() {
        let input = br#"{"key": "k", "value": "v", "headers": {"h": "1"}}
{"value": null}
{"value": {"base64": "//4="}, "headers": [["a", null], ["a", "2"]], "timestamp": 5}
{"value": {"n": 1}}
"#;
        let r = parse_jsonl("f", input).unwrap();
        assert_eq!(r[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r[0].headers[0].0, "h");
        assert_eq!(r[1].value, None);
        assert_eq!(r[2].value.as_deref(), Some(&[0xff, 0xfe][..]));
        assert_eq!(r[2].headers.len(), 2);
        assert_eq!(r[2].timestamp, Some(5));
        assert_eq!(r[3].value.as_deref(), Some(&br#"{"n":1}"#[..]));
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let err = parse_jsonl("in.jsonl", b"{\"value\": \"ok\"}\n{\"valu\": 1}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "in.jsonl:2: unknown field \"valu\"; known fields are key, value, headers, timestamp"
        );
        let err = parse_jsonl("in.jsonl", b"not json\n").unwrap_err();
        assert!(err.to_string().starts_with("in.jsonl:1: not JSON"), "{err}");
    }
}
