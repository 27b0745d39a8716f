//! Timestamps: every SDK's `captured_at` format in, RFC 3339 UTC out.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Formats Unix milliseconds as RFC 3339 UTC with millisecond precision (`…T…:….123Z`).
pub fn format_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => {
            let t = t.to_offset(UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            )
        }
        Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

/// Parses the timestamp forms the SDKs send (reference §5.2): RFC 3339 with `Z` or an
/// offset and 0–9 fractional digits, a naive ISO date-time (taken as UTC), or Unix
/// seconds/milliseconds as a number. Returns Unix milliseconds.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return to_ms(t);
    }
    // RFC 3339 requires a 'T'; some clients send a space, and some send no offset at all.
    let normalized = s.replacen(' ', "T", 1);
    if let Ok(t) = OffsetDateTime::parse(&normalized, &Rfc3339) {
        return to_ms(t);
    }
    let with_z = format!("{normalized}Z");
    if let Ok(t) = OffsetDateTime::parse(&with_z, &Rfc3339) {
        return to_ms(t);
    }
    if let Ok(t) = PrimitiveDateTime::parse(
        &normalized,
        &time::format_description::well_known::Iso8601::DEFAULT,
    ) {
        return to_ms(t.assume_utc());
    }
    s.parse::<f64>().ok().and_then(epoch_number_to_ms)
}

/// Unix seconds (< 10^11) or milliseconds as a JSON number.
pub fn epoch_number_to_ms(n: f64) -> Option<i64> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let ms = if n < 1e11 {
        n * 1000.0
    } else if n < 1e14 {
        n
    } else {
        n / 1e6
    };
    if ms > 4e15 {
        return None;
    }
    Some(ms as i64)
}

fn to_ms(t: OffsetDateTime) -> Option<i64> {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_sdk_format_to_the_same_instant() {
        let utc = 1_776_247_200_123; // 2026-04-15T10:00:00.123Z
        for s in [
            "2026-04-15T10:00:00.123Z",
            "2026-04-15T12:00:00.123456789+02:00",
            "2026-04-15T10:00:00.1230000Z",
            "2026-04-15T10:00:00.123000Z",
            "2026-04-15T10:00:00.123",
            "2026-04-15 10:00:00.123",
        ] {
            assert_eq!(parse_timestamp_ms(s), Some(utc), "{s}");
        }
        assert_eq!(
            parse_timestamp_ms("2026-04-15T12:00:00+02:00"),
            Some(utc - 123)
        );
        assert_eq!(parse_timestamp_ms("2026-04-15T10:00:00Z"), Some(utc - 123));
        assert_eq!(parse_timestamp_ms("1776247200"), Some(utc - 123));
        assert_eq!(parse_timestamp_ms("1776247200123"), Some(utc));
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "yesterday", "2026-13-45T99:00:00Z", "NaN", "-5"] {
            assert_eq!(parse_timestamp_ms(s), None, "{s}");
        }
    }

    #[test]
    fn formats_utc_millis() {
        assert_eq!(format_ms(1_776_247_200_123), "2026-04-15T10:00:00.123Z");
    }
}
