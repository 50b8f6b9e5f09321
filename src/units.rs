//! Reading the durations the command line takes (timeouts, waits, look-back windows), and
//! writing counts the way people read them.

use std::time::Duration;

/// `n` with its noun: "1 row", "5 rows"; `one` and `many` may carry a verb too ("1 row
/// breaks", "2 rows break").
pub fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// "1 row", "5 rows".
pub fn rows(n: u64) -> String {
    count(n, "row", "rows")
}

/// Parses `500ms`, `2s`, `1m`, `2h`, `1d`, or a bare number of seconds, for a timeout or wait.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    // PostgreSQL stores lock_timeout and statement_timeout as milliseconds in an int, so a
    // longer duration cannot be set; a bound also keeps `Duration::from_secs_f64` from panicking.
    parse_bounded(
        text,
        f64::from(MAX_DURATION_MS),
        "about 24 days, PostgreSQL's limit for a timeout",
    )
}

/// A look-back window (`--live-window`): not a timeout, so it may span years; bounded at a
/// century only so that nonsense is a usage error, not a panic.
pub fn parse_window(text: &str) -> Result<Duration, String> {
    parse_bounded(text, MAX_WINDOW_MS, "a century")
}

const MAX_WINDOW_MS: f64 = 100.0 * 366.0 * 86_400_000.0;

fn parse_bounded(text: &str, max_ms: f64, limit: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 500ms, 2s or 1m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}' (use ms, s, m, h or d)"
            ))
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("'{text}' is not a valid duration"));
    }
    if seconds * 1000.0 > max_ms {
        return Err(format!(
            "'{text}' is too long: at most {max_ms:.0}ms ({limit})"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A duration as a flag takes it (2s, 500ms): what [`parse_duration`] reads back.
pub fn as_flag(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The longest duration a flag takes: PostgreSQL's limit for a timeout setting (INT_MAX ms).
pub const MAX_DURATION_MS: i32 = i32::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_with_their_number() {
        assert_eq!(rows(1), "1 row");
        assert_eq!(rows(0), "0 rows");
        assert_eq!(count(1, "row breaks", "rows break"), "1 row breaks");
        assert_eq!(count(2, "row breaks", "rows break"), "2 rows break");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("2w").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn durations_beyond_postgres_limit_are_refused_not_panicking() {
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("2147484s").is_err());
        assert!(parse_duration("1e400ms").is_err());
        assert_eq!(
            parse_duration("2147483647ms").unwrap(),
            Duration::from_millis(2147483647)
        );
    }
}
