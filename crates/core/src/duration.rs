use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {problem}; write it like 90s, 15m, 24h, 7d, 1y or 1h30m")]
pub struct DurationError {
    pub input: String,
    pub problem: &'static str,
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;
/// A year is 365 days: certificate lifetimes are counted in whole days, and
/// calendar years would make "1y" mean different lengths on different dates.
const YEAR: u64 = 365 * DAY;

/// Parses `90s`, `15m`, `24h`, `7d`, `2w`, `1y` and sums such as `1h30m`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |problem| DurationError {
        input: input.to_string(),
        problem,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if digits.is_empty() {
            return Err(err("a unit must follow a number"));
        }
        let unit = match c {
            's' => 1,
            'm' => MINUTE,
            'h' => HOUR,
            'd' => DAY,
            'w' => WEEK,
            'y' => YEAR,
            _ => return Err(err("unknown unit (use s, m, h, d, w or y)")),
        };
        let n: u64 = digits.parse().map_err(|_| err("number too large"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err("number too large"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(err("the last number has no unit"));
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration with its two most significant units: `23h 4m`, `3d 2h`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let parts = [
        (secs / YEAR, "y"),
        (secs % YEAR / DAY, "d"),
        (secs % DAY / HOUR, "h"),
        (secs % HOUR / MINUTE, "m"),
        (secs % MINUTE, "s"),
    ];
    let out: Vec<String> = parts
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if out.is_empty() {
        "0s".to_string()
    } else {
        out.join(" ")
    }
}

/// Describes `at` relative to `now` for a deadline: "in 23h 4m" or "3h 12m ago".
pub fn format_delta(now: time::OffsetDateTime, at: time::OffsetDateTime) -> String {
    let delta = at - now;
    let abs = Duration::from_secs(delta.whole_seconds().unsigned_abs());
    if delta.is_negative() {
        format!("{} ago", format_duration(abs))
    } else {
        format!("in {}", format_duration(abs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("24h").unwrap().as_secs(), 86_400);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5_400);
        assert_eq!(parse_duration("10y").unwrap().as_secs(), 3_650 * 86_400);
        assert_eq!(parse_duration(" 2w ").unwrap().as_secs(), 14 * 86_400);
    }

    #[test]
    fn rejects_bad_input_with_the_input_named() {
        for bad in ["", "h", "10", "5x", "1h30", "99999999999999999999y"] {
            let e = parse_duration(bad).unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().contains("24h"), "{e}");
        }
    }

    #[test]
    fn formats_two_units() {
        assert_eq!(
            format_duration(Duration::from_secs(23 * 3600 + 4 * 60 + 5)),
            "23h 4m"
        );
        assert_eq!(
            format_duration(Duration::from_secs(3 * 86_400 + 7200)),
            "3d 2h"
        );
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::from_secs(0)), "0s");
        let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(100);
        assert_eq!(
            format_delta(now, now - time::Duration::minutes(192)),
            "3h 12m ago"
        );
        assert_eq!(
            format_delta(now, now + time::Duration::minutes(61)),
            "in 1h 1m"
        );
    }
}
