//! `context:` time windows: hours of the day, days of the week, a timezone.
//! IANA zone names would need the tz database in the binary; a fixed offset
//! or the host's `local` zone covers what hosts are configured with.

use chrono::{DateTime, Datelike, FixedOffset, Local, Timelike, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zone {
    Fixed(FixedOffset),
    Local,
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

/// `UTC`, `local`, or `+HH:MM` / `-HH:MM`.
pub(crate) fn parse_zone(s: &str) -> Result<Zone, String> {
    match s {
        "UTC" | "utc" | "Z" => {
            return Ok(Zone::Fixed(FixedOffset::east_opt(0).expect("0 is valid")));
        }
        "local" => return Ok(Zone::Local),
        _ => {}
    }
    let bad = || format!("bad timezone `{s}`: expected UTC, local or an offset such as +02:00");
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let mins = i32::from(hhmm(rest).ok_or_else(bad)?);
    FixedOffset::east_opt(sign * mins * 60)
        .map(Zone::Fixed)
        .ok_or_else(bad)
}

impl TimeWindow {
    pub(crate) fn contains(&self, now: DateTime<Utc>) -> bool {
        let (minute, weekday) = match self.zone {
            Zone::Fixed(off) => {
                let t = now.with_timezone(&off);
                (t.hour() * 60 + t.minute(), t.weekday())
            }
            Zone::Local => {
                let t = now.with_timezone(&Local);
                (t.hour() * 60 + t.minute(), t.weekday())
            }
        };
        let minute = u16::try_from(minute).expect("invariant: minutes of a day fit u16");
        let weekday = weekday.num_days_from_monday();
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
        match self.zone {
            Zone::Local => s.push_str(" local"),
            Zone::Fixed(off) => s.push_str(&format!(" {off}")),
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
        assert!(parse_zone("Europe/Paris").is_err());
    }
}
