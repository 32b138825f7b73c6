//! Who and when for every record: the host's identity and the conversion
//! from kernel `CLOCK_BOOTTIME` timestamps to wall-clock time.

use std::{fs, io};

use serde::Serialize;

/// Host identity carried by every record.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Host {
    /// `/proc/sys/kernel/random/boot_id`: changes at every boot.
    pub boot_id: String,
    /// `/etc/machine-id`; empty when the host has none.
    pub id: String,
    pub name: String,
}

fn read_trimmed(path: &str) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_owned())
}

impl Host {
    pub fn detect() -> Self {
        let name = read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the host name");
            String::new()
        });
        let id = read_trimmed("/etc/machine-id").unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no /etc/machine-id: records carry an empty host.id");
            String::new()
        });
        let boot_id = read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read boot_id");
            String::new()
        });
        Self { name, id, boot_id }
    }
}

/// Kernel release (`uname -r`), for the start record and logs.
pub fn kernel_release() -> String {
    read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default()
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and a pointer to a local.
    let rc = unsafe { libc::clock_gettime(clock, &raw mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// `CLOCK_BOOTTIME` now, the clock the programs stamp events with.
pub fn boottime_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// Nanoseconds per clock tick (`USER_HZ`): `/proc/<pid>/stat` gives start
/// `kernel.core_pattern`: where the kernel writes cores (a file name, or
/// `|program` for a helper such as systemd-coredump). `None` when
/// unreadable.
pub fn core_pattern() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/core_pattern")
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// times in ticks, and the kernel's protection maps keep them so.
pub fn tick_ns() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
    1_000_000_000 / hz
}

/// Maps boot-time stamps to wall-clock time. Re-sampled periodically so a
/// stepped wall clock (NTP) is followed.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// realtime - boottime, in ns.
    offset_ns: i128,
}

impl Clock {
    pub fn sample() -> Self {
        let boot = boottime_ns();
        let real = clock_ns(libc::CLOCK_REALTIME);
        Self {
            offset_ns: i128::from(real) - i128::from(boot),
        }
    }

    #[cfg(test)]
    pub fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// RFC 3339 UTC time with nanoseconds for a boot-time stamp.
    pub fn rfc3339(&self, boot_ns: u64) -> String {
        let wall = i128::from(boot_ns) + self.offset_ns;
        let secs = i64::try_from(wall.div_euclid(1_000_000_000)).unwrap_or(0);
        let nanos = u32::try_from(wall.rem_euclid(1_000_000_000)).unwrap_or(0);
        chrono::DateTime::from_timestamp(secs, nanos)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_has_nanoseconds_and_utc() {
        let c = Clock::with_offset(1_700_000_000_000_000_000);
        assert_eq!(c.rfc3339(123), "2023-11-14T22:13:20.000000123Z");
    }

    #[test]
    fn sampled_clock_maps_now_to_about_now() {
        let c = Clock::sample();
        let t = c.rfc3339(boottime_ns());
        let parsed = chrono::DateTime::parse_from_rfc3339(&t).unwrap();
        let delta = (chrono::Utc::now() - parsed.with_timezone(&chrono::Utc))
            .num_seconds()
            .abs();
        assert!(delta < 60, "{t} is {delta}s from now");
    }

    #[test]
    fn host_detect_reads_boot_id() {
        let h = Host::detect();
        assert_eq!(h.boot_id.len(), 36, "boot_id is a UUID: {h:?}");
    }
}
