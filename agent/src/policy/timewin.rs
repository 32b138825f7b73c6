//! `context:` time windows: hours of the day, days of the week, a timezone.
//! A zone is UTC, a fixed offset, the host's `local` zone, or an IANA name
//! (`Europe/Berlin`) read through `jiff` from the system tz database
//! (/usr/share/zoneinfo, Debian's `tzdata`), so a window follows the
//! zone's daylight saving changes rather than a fixed offset.

use chrono::{DateTime, Datelike, FixedOffset, Local, Timelike, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Zone {
    Fixed(FixedOffset),
    Local,
    /// An IANA zone, loaded once when the policy is compiled.
    Named(jiff::tz::TimeZone),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimeWindow {
    /// Minutes since midnight, start inclusive and end exclusive; the window
    /// wraps midnight when start > end.
    pub(crate) minutes: Option<(u16, u16)>,
    /// Bit 0 is Monday. All set when no days are given.
    pub(crate) days: u8,
    pub(crate) zone: Zone,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    // 24:00 is allowed as an end of day.
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

/// `"09:00-18:00"`.
pub(crate) fn parse_hours(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("bad time window `{s}`: expected HH:MM-HH:MM, e.g. 09:00-18:00");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b) = (hhmm(a).ok_or_else(bad)?, hhmm(b).ok_or_else(bad)?);
    if a == b {
        return Err(format!("bad time window `{s}`: start equals end"));
    }
    Ok((a, b))
}

fn day(s: &str) -> Option<u8> {
    let s = s.trim().to_ascii_lowercase();
    DAYS.iter()
        .position(|d| s == *d)
        .map(|i| u8::try_from(i).expect("invariant: seven days"))
}

/// `mon` or `mon-fri` (wrapping: `fri-mon`) as a day mask.
pub(crate) fn parse_days(s: &str) -> Result<u8, String> {
    let bad = || format!("bad day `{s}`: expected mon..sun or a range such as mon-fri");
    match s.split_once('-') {
        None => Ok(1 << day(s).ok_or_else(bad)?),
        Some((a, b)) => {
            let (a, b) = (day(a).ok_or_else(bad)?, day(b).ok_or_else(bad)?);
            let mut mask = 0u8;
            let mut d = a;
            loop {
                mask |= 1 << d;
                if d == b {
                    break;
                }
                d = (d + 1) % 7;
            }
            Ok(mask)
        }
    }
}

/// `UTC`, `local`, `+HH:MM` / `-HH:MM`, or an IANA zone name such as
/// `Europe/Berlin` that the host's tz database knows.
pub(crate) fn parse_zone(s: &str) -> Result<Zone, String> {
    match s {
        "UTC" | "utc" | "Z" => {
            return Ok(Zone::Fixed(FixedOffset::east_opt(0).expect("0 is valid")));
        }
        "local" => return Ok(Zone::Local),
        _ => {}
    }
    let bad = || {
        format!(
            "bad timezone `{s}`: expected UTC, local, an offset such as +02:00 or an IANA name \
             such as Europe/Berlin"
        )
    };
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return named_zone(s),
    };
    let mins = i32::from(hhmm(rest).ok_or_else(bad)?);
    FixedOffset::east_opt(sign * mins * 60)
        .map(Zone::Fixed)
        .ok_or_else(bad)
}

/// An IANA name looked up in the system tz database.
fn named_zone(s: &str) -> Result<Zone, String> {
    // jiff also accepts POSIX TZ strings and paths in some lookups; a
    // policy names a zone, so only names shaped like `Area/City` (or a
    // bare database name such as `UTC`) get that far.
    let name_like = !s.is_empty()
        && !s.starts_with('/')
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'));
    if !name_like {
        return Err(format!(
            "bad timezone `{s}`: expected UTC, local, an offset such as +02:00 or an IANA name \
             such as Europe/Berlin"
        ));
    }
    jiff::tz::TimeZone::get(s).map(Zone::Named).map_err(|e| {
        format!(
            "unknown timezone `{s}`: not in the system tz database (/usr/share/zoneinfo, package \
             tzdata) ({e}); use an IANA name such as Europe/Berlin, UTC, local or an offset such \
             as +02:00"
        )
    })
}

/// Minute of the day and weekday (0 = Monday) of `now` in an IANA zone.
fn in_named(tz: &jiff::tz::TimeZone, now: DateTime<Utc>) -> (u32, u32) {
    // Any DateTime<Utc> chrono can hold is within jiff's range except at
    // the far ends; there the window is judged in UTC rather than failing.
    let ts = jiff::Timestamp::new(now.timestamp(), 0).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let t = tz.to_datetime(ts);
    let weekday = u32::from(t.weekday().to_monday_zero_offset().unsigned_abs());
    (
        u32::from(t.hour().unsigned_abs()) * 60 + u32::from(t.minute().unsigned_abs()),
        weekday,
    )
}

impl TimeWindow {
    pub(crate) fn contains(&self, now: DateTime<Utc>) -> bool {
        let (minute, weekday) = match &self.zone {
            Zone::Fixed(off) => {
                let t = now.with_timezone(off);
                (
                    t.hour() * 60 + t.minute(),
                    t.weekday().num_days_from_monday(),
                )
            }
            Zone::Local => {
                let t = now.with_timezone(&Local);
                (
                    t.hour() * 60 + t.minute(),
                    t.weekday().num_days_from_monday(),
                )
            }
            Zone::Named(tz) => in_named(tz, now),
        };
        self.holds(minute, weekday)
    }

    /// Whether a local minute of the day on a weekday (0 = Monday) is in.
    fn holds(&self, minute: u32, weekday: u32) -> bool {
        let minute = u16::try_from(minute).expect("invariant: minutes of a day fit u16");
        let in_hours = match self.minutes {
            None => true,
            Some((a, b)) if a < b => (a..b).contains(&minute),
            Some((a, b)) => minute >= a || minute < b,
        };
        // Past midnight in a wrapping window, the day is the one the window
        // started on: Friday 22:00-06:00 covers Saturday 03:00.
        let day = match self.minutes {
            Some((a, b)) if a > b && minute < b => (weekday + 6) % 7,
            _ => weekday,
        };
        in_hours && self.days & (1 << day) != 0
    }

    pub(crate) fn describe(&self) -> String {
        let mut s = String::new();
        if let Some((a, b)) = self.minutes {
            s.push_str(&format!(
                "{:02}:{:02}-{:02}:{:02}",
                a / 60,
                a % 60,
                b / 60,
                b % 60
            ));
        }
        if self.days != 0x7f {
            let days: Vec<&str> = (0..7)
                .filter(|d| self.days & (1 << d) != 0)
                .map(|d| DAYS[d])
                .collect();
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&days.join(","));
        }
        match &self.zone {
            Zone::Local => s.push_str(" local"),
            Zone::Fixed(off) => s.push_str(&format!(" {off}")),
            Zone::Named(tz) => {
                s.push(' ');
                s.push_str(tz.iana_name().unwrap_or("?"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn office_hours_on_weekdays() {
        let w = TimeWindow {
            minutes: Some(parse_hours("09:00-18:00").unwrap()),
            days: parse_days("mon-fri").unwrap(),
            zone: parse_zone("UTC").unwrap(),
        };
        // 2024-01-01 was a Monday.
        assert!(w.contains(at(2024, 1, 1, 9, 0)));
        assert!(!w.contains(at(2024, 1, 1, 18, 0)), "end is exclusive");
        assert!(!w.contains(at(2024, 1, 1, 8, 59)));
        assert!(!w.contains(at(2024, 1, 6, 10, 0)), "saturday");
    }

    #[test]
    fn offsets_and_wrapping_windows() {
        let w = TimeWindow {
            minutes: Some(parse_hours("22:00-06:00").unwrap()),
            days: parse_days("fri").unwrap(),
            zone: parse_zone("+02:00").unwrap(),
        };
        // Friday 2024-01-05 21:00 UTC is 23:00 at +02:00.
        assert!(w.contains(at(2024, 1, 5, 21, 0)));
        // Saturday 01:00 UTC is 03:00 local, still Friday night's window.
        assert!(w.contains(at(2024, 1, 6, 1, 0)));
        assert!(!w.contains(at(2024, 1, 6, 21, 0)), "saturday night");
        assert!(w.describe().contains("22:00-06:00 fri"));
    }

    #[test]
    fn bad_windows_are_rejected() {
        assert!(parse_hours("9-18").is_err());
        assert!(parse_hours("09:00-25:00").is_err());
        assert!(parse_hours("10:00-10:00").is_err());
        assert!(parse_days("funday").is_err());
        assert_eq!(parse_days("sat-mon").unwrap(), 0b110_0001);
        assert!(parse_zone("Mars/Olympus_Mons").is_err());
    }

    fn berlin_office() -> TimeWindow {
        TimeWindow {
            minutes: Some(parse_hours("09:00-18:00").unwrap()),
            days: 0x7f,
            zone: parse_zone("Europe/Berlin").unwrap(),
        }
    }

    #[test]
    fn iana_zone_follows_spring_forward() {
        let w = berlin_office();
        // 2026-03-29 is the last Sunday of March: at 01:00 UTC Berlin goes
        // from +01:00 to +02:00. The day before, 09:00 is 08:00 UTC.
        assert!(!w.contains(at(2026, 3, 28, 7, 59)));
        assert!(w.contains(at(2026, 3, 28, 8, 0)));
        assert!(w.contains(at(2026, 3, 28, 16, 59)));
        assert!(!w.contains(at(2026, 3, 28, 17, 0)));
        // On the day, 09:00 is 07:00 UTC and 18:00 is 16:00 UTC.
        assert!(!w.contains(at(2026, 3, 29, 6, 59)));
        assert!(w.contains(at(2026, 3, 29, 7, 0)));
        assert!(w.contains(at(2026, 3, 29, 15, 59)));
        assert!(!w.contains(at(2026, 3, 29, 16, 0)));
        // A fixed +01:00 would have been an hour late on the day.
        let fixed = TimeWindow {
            zone: parse_zone("+01:00").unwrap(),
            ..berlin_office()
        };
        assert!(!fixed.contains(at(2026, 3, 29, 7, 0)));
        assert!(w.describe().ends_with("Europe/Berlin"), "{}", w.describe());
    }

    #[test]
    fn iana_zone_follows_fall_back() {
        let w = berlin_office();
        // 2026-10-25 is the last Sunday of October: at 01:00 UTC Berlin
        // goes back from +02:00 to +01:00.
        assert!(w.contains(at(2026, 10, 24, 7, 0)), "09:00 CEST");
        assert!(!w.contains(at(2026, 10, 25, 7, 0)), "08:00 CET");
        assert!(w.contains(at(2026, 10, 25, 8, 0)), "09:00 CET");
        assert!(w.contains(at(2026, 10, 25, 16, 59)));
        assert!(!w.contains(at(2026, 10, 25, 17, 0)), "18:00 CET");
        // Days are the zone's days too: Sunday 23:30 UTC is Monday in
        // Berlin (+01:00 in winter).
        let monday = TimeWindow {
            minutes: None,
            days: parse_days("mon").unwrap(),
            zone: parse_zone("Europe/Berlin").unwrap(),
        };
        assert!(monday.contains(at(2026, 10, 25, 23, 30)));
        assert!(!monday.contains(at(2026, 10, 25, 22, 30)));
    }

    #[test]
    fn unknown_zones_get_a_clear_error() {
        let e = parse_zone("Europe/Atlantis").unwrap_err();
        assert!(e.contains("unknown timezone `Europe/Atlantis`"), "{e}");
        assert!(e.contains("Europe/Berlin"), "{e}");
        for bad in [
            "/etc/passwd",
            "../../etc/passwd",
            "CET-1CEST,M3.5.0,M10.5.0/3",
            "",
        ] {
            assert!(parse_zone(bad).is_err(), "{bad}");
        }
    }
}
