//! Times are stored as microseconds since the Unix epoch on both databases.

use chrono::{DateTime, Utc};

/// `at` as stored.
pub fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A stored time back as a `DateTime`.
pub fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_microsecond_precision() {
        let at = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        assert_eq!(from_micros(to_micros(at)), at);
    }
}
