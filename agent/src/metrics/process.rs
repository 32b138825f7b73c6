//! The standard `process_*` metrics every Prometheus client exposes for
//! its own process (CPU time, memory, file descriptors, start time), read
//! from `/proc/self` at scrape time. The parsers take the files' text, so
//! they are tested without depending on this process's numbers.

use std::{fs, io};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProcSelfError {
    #[error("reading {path}")]
    Read {
        path: &'static str,
        #[source]
        io_error: io::Error,
    },
    #[error("{path} has no usable {field}")]
    Parse {
        path: &'static str,
        field: &'static str,
    },
}

/// One scrape's numbers for this process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    /// The soft `RLIMIT_NOFILE`; `None` when unlimited.
    pub max_fds: Option<u64>,
    /// Since the Unix epoch.
    pub start_time_seconds: f64,
}

/// The fields of `/proc/PID/stat` the metrics use, in clock ticks and pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFields {
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    /// Since boot.
    pub start_ticks: u64,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses, so fields are counted from
/// the last `)`.
pub fn parse_stat(text: &str) -> Option<StatFields> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest[0] is field 3 (state); field n is rest[n - 3].
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(StatFields {
        utime_ticks: num(14)?,
        stime_ticks: num(15)?,
        start_ticks: num(22)?,
        vsize_bytes: num(23)?,
        rss_pages: num(24)?,
    })
}

/// The `btime` line of `/proc/stat`: boot time since the Unix epoch.
pub fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn read(path: &'static str) -> Result<String, ProcSelfError> {
    fs::read_to_string(path).map_err(|io_error| ProcSelfError::Read { path, io_error })
}

/// `sysconf(name)`, or `fallback` when the system does not say.
fn sysconf(name: libc::c_int, fallback: u64) -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0).unwrap_or(fallback)
}

/// Combines the parsed files into the metrics' units.
#[expect(clippy::cast_precision_loss, reason = "tick counts to seconds")]
pub fn combine(
    stat: StatFields,
    btime: u64,
    ticks_per_s: u64,
    page_bytes: u64,
    open_fds: u64,
    max_fds: Option<u64>,
) -> ProcessStats {
    let hz = ticks_per_s.max(1) as f64;
    ProcessStats {
        cpu_seconds: (stat.utime_ticks + stat.stime_ticks) as f64 / hz,
        resident_bytes: stat.rss_pages.saturating_mul(page_bytes),
        virtual_bytes: stat.vsize_bytes,
        open_fds,
        max_fds,
        start_time_seconds: btime as f64 + stat.start_ticks as f64 / hz,
    }
}

/// Open descriptors: the entries of `/proc/self/fd`, less the one the
/// listing itself holds open while it runs.
fn open_fds() -> Result<u64, ProcSelfError> {
    let path = "/proc/self/fd";
    let dir = fs::read_dir(path).map_err(|io_error| ProcSelfError::Read { path, io_error })?;
    Ok((dir.count() as u64).saturating_sub(1))
}

fn max_fds() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// This process's numbers now.
pub fn read_self() -> Result<ProcessStats, ProcSelfError> {
    let stat = parse_stat(&read("/proc/self/stat")?).ok_or(ProcSelfError::Parse {
        path: "/proc/self/stat",
        field: "utime/stime/starttime/vsize/rss",
    })?;
    let btime = parse_btime(&read("/proc/stat")?).ok_or(ProcSelfError::Parse {
        path: "/proc/stat",
        field: "btime",
    })?;
    Ok(combine(
        stat,
        btime,
        sysconf(libc::_SC_CLK_TCK, 100),
        sysconf(libc::_SC_PAGESIZE, 4096),
        open_fds()?,
        max_fds(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line, with a command name holding ") (" to show fields are
    // counted from the last parenthesis.
    const STAT: &str = "4242 (deb) (ugmon) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                        250 130 0 0 20 0 5 0 987654 123456789 3000 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 17664 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(
            s,
            StatFields {
                utime_ticks: 250,
                stime_ticks: 130,
                start_ticks: 987_654,
                vsize_bytes: 123_456_789,
                rss_pages: 3000,
            }
        );
    }

    #[test]
    fn truncated_stat_is_refused() {
        assert_eq!(parse_stat("1 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn btime_is_found() {
        let t = "cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n";
        assert_eq!(parse_btime(t), Some(1_700_000_000));
        assert_eq!(parse_btime("cpu 1\n"), None);
    }

    #[test]
    fn units_are_seconds_and_bytes() {
        let s = combine(
            parse_stat(STAT).unwrap(),
            1_700_000_000,
            100,
            4096,
            7,
            Some(1024),
        );
        assert!((s.cpu_seconds - 3.8).abs() < 1e-9, "{s:?}");
        assert_eq!(s.resident_bytes, 3000 * 4096);
        assert_eq!(s.virtual_bytes, 123_456_789);
        assert!(
            (s.start_time_seconds - 1_700_009_876.54).abs() < 1e-3,
            "{s:?}"
        );
        assert_eq!((s.open_fds, s.max_fds), (7, Some(1024)));
    }

    #[test]
    fn this_process_reads() {
        let s = read_self().unwrap();
        assert!(
            s.resident_bytes > 0 && s.virtual_bytes >= s.resident_bytes,
            "{s:?}"
        );
        // stdin, stdout and stderr at least.
        assert!(s.open_fds >= 3, "{s:?}");
        assert!(s.start_time_seconds > 1_600_000_000.0, "{s:?}");
    }
}
