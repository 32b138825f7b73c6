//! The one duration grammar of debugmon: the config file (`"30m"`), the
//! CLI (`grant --for 1h30m`, `tail --since 2h`) and grants all read
//! durations here, so a spelling accepted in one place is accepted in all
//! and none of them can overflow or panic on a huge value.
//!
//! Grammar: one or more `<digits><unit>` terms, units `s`, `m`, `h`, `d`
//! (`90s`, `30m`, `2h`, `1h30m`, `1d`); a lone `0` is zero. Surrounding
//! whitespace is ignored; anything else is an error.
//!
//! A point in time on the command line (`tail --since`, `review --since`
//! and `--until`) is an RFC 3339 time or such a duration back from now
//! ([`parse_instant`]), so both commands read the same spellings.

use std::{fmt, time::Duration};

/// Why a duration was refused; the message names the input and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration; write e.g. 90s, 30m, 2h, 1h30m or 1d")]
    Empty,
    #[error("invalid duration {input:?}: unknown unit {unit:?} (use s, m, h or d)")]
    Unit { input: String, unit: char },
    #[error("invalid duration {input:?}: a number must precede {unit:?}")]
    MissingNumber { input: String, unit: char },
    #[error("invalid duration {input:?}: {digits} has no unit (use s, m, h or d)")]
    MissingUnit { input: String, digits: String },
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses `90s`, `30m`, `2h`, `1h30m`, `1d` or `0` (see the module doc).
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let input = s.trim();
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total: u64 = 0;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        if c.is_ascii_digit() {
            continue;
        }
        let digits = &input[start..i];
        start = i + c.len_utf8();
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(DurationError::Unit {
                    input: input.to_owned(),
                    unit: c,
                });
            }
        };
        if digits.is_empty() {
            return Err(DurationError::MissingNumber {
                input: input.to_owned(),
                unit: c,
            });
        }
        // Only ASCII digits remain, so a parse failure is an overflow.
        total = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| DurationError::Overflow(input.to_owned()))?;
    }
    if start < input.len() {
        return Err(DurationError::MissingUnit {
            input: input.to_owned(),
            digits: input[start..].to_owned(),
        });
    }
    // Later consumers add durations to clocks (chrono, time, Instant);
    // keeping them within i64 seconds means that is the only overflow
    // they have to check, not a second one here.
    if i64::try_from(total).is_err() {
        return Err(DurationError::Overflow(input.to_owned()));
    }
    Ok(Duration::from_secs(total))
}

/// Why a point in time was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstantError {
    /// Neither RFC 3339 nor a duration; the duration parser's reason.
    #[error("expected an RFC 3339 time or a duration like 30s, 10m, 1h30m, 1d ({0})")]
    Neither(DurationError),
    #[error("out of range")]
    OutOfRange,
}

/// An RFC 3339 time, or a duration in the grammar of [`parse`] back from
/// `now`. A duration reaching before the clock's range is an error, not a
/// wrap or a panic.
pub fn parse_instant(
    s: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, InstantError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let ago = parse(s).map_err(InstantError::Neither)?;
    chrono::Duration::from_std(ago)
        .ok()
        .and_then(|ago| now.checked_sub_signed(ago))
        .ok_or(InstantError::OutOfRange)
}

/// The shortest spelling [`parse`] reads back to the same whole seconds:
/// `1d2h`, `1h30m`, `90s` is printed `1m30s`; zero is `0`.
pub fn format(d: Duration) -> String {
    Display(d).to_string()
}

/// [`format`] as a `Display` value, for messages.
pub struct Display(pub Duration);

impl fmt::Display for Display {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        if secs == 0 {
            return f.write_str("0");
        }
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_spellings() {
        let table: &[(&str, u64)] = &[
            ("0", 0),
            ("90s", 90),
            ("30m", 1800),
            ("2h", 7200),
            ("1h30m", 5400),
            ("1d", 86_400),
            ("1d2h3m4s", 93_784),
            (" 10m ", 600),
            ("0s", 0),
            ("2h2h", 14_400),
            ("9223372036854775807s", 9_223_372_036_854_775_807),
        ];
        for (s, secs) in table {
            assert_eq!(parse(s), Ok(Duration::from_secs(*secs)), "{s:?}");
        }
    }

    #[test]
    fn refused_spellings_say_why() {
        let table: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "empty"),
            ("30", "has no unit"),
            ("1h30", "has no unit"),
            ("m", "a number must precede"),
            ("h1", "a number must precede"),
            ("3x", "unknown unit 'x'"),
            ("-1h", "unknown unit '-'"),
            ("1.5h", "unknown unit '.'"),
            ("1 h", "unknown unit ' '"),
            ("１h", "unknown unit '１'"),
            ("yesterday", "unknown unit 'y'"),
            ("99999999999999999999h", "too large"),
            ("18446744073709551615s", "too large"),
            ("9223372036854775808s", "too large"),
            ("213503982334601d", "too large"),
            ("9223372036854775807s1s", "too large"),
        ];
        for (s, why) in table {
            let e = parse(s).expect_err(s).to_string();
            assert!(e.contains(why), "{s:?}: {e}");
        }
    }

    #[test]
    fn instants_are_times_or_durations_ago() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .to_utc();
        let at = |s| parse_instant(s, now).map(|t| t.timestamp());
        assert_eq!(at("10m"), Ok(now.timestamp() - 600));
        assert_eq!(at("2026-01-01T00:00:00Z"), Ok(1_767_225_600));
        assert_eq!(at("2026-01-01T01:00:00+01:00"), Ok(1_767_225_600));
        assert!(matches!(at("yesterday"), Err(InstantError::Neither(_))));
        assert_eq!(at("9223372036854775807s"), Err(InstantError::OutOfRange));
    }

    #[test]
    fn printed_durations_parse_back() {
        for secs in [0, 1, 59, 60, 90, 3600, 5400, 86_399, 86_400, 93_784] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse(&format(d)), Ok(d), "{secs}");
        }
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
    }
}
