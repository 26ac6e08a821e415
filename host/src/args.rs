//! Parsers of command-line values that several commands and settings share.

/// Group and job names become parts of Redis keys: keep them to a safe set.
pub fn parse_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?}: use 1-200 characters of A-Z a-z 0-9 - _ ."))
    }
}

/// A point in time as unix ms: a number of ms, an RFC 3339 time, or an age before now.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let unix_ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .map_err(|e| e.to_string())
    };
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return unix_ms(t);
    }
    match humantime::parse_duration(s) {
        Ok(age) => unix_ms(std::time::SystemTime::now() - age),
        Err(_) => Err(format!(
            "{s:?} is not a time: use unix milliseconds, RFC 3339 (2026-12-01T10:00:00Z) or an age (90m, 2h)"
        )),
    }
}

pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}
