//! Timestamps in the form the original system used (JavaScript's `toISOString`).

use time::OffsetDateTime;
use time::format_description::well_known::Iso8601;
use time::macros::format_description;

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// `2024-01-02T03:04:05.678Z` for the given epoch milliseconds.
pub fn iso_millis(millis: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    at.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}

/// The current time as an ISO-8601 UTC string with milliseconds.
pub fn now_iso() -> String {
    iso_millis(now_millis())
}

/// Parses any ISO-8601 timestamp into epoch milliseconds.
pub fn parse_iso_millis(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Iso8601::DEFAULT)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_javascript() {
        assert_eq!(iso_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_millis(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            parse_iso_millis("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
    }
}
