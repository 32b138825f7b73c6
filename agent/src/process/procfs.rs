//! Seeds the process table from /proc, so processes that started before the
//! agent (the login shell, the service manager) appear in ancestries. Every
//! read tolerates the process vanishing meanwhile.

use std::{fs, os::unix::ffi::OsStrExt as _, path::Path};

use super::table::ProcessEntry;

/// Nanoseconds per clock tick (`/proc/<pid>/stat` start times are in ticks).
pub fn tick_ns() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
    1_000_000_000 / hz
}

/// Parsed fields of `/proc/<pid>/stat`.
#[derive(Debug, PartialEq, Eq)]
pub struct Stat {
    pub comm: Vec<u8>,
    pub ppid: u32,
    pub start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The comm is in parentheses and may itself
/// contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(bytes: &[u8]) -> Option<Stat> {
    let open = bytes.iter().position(|&b| b == b'(')?;
    let close = bytes.iter().rposition(|&b| b == b')')?;
    let comm = bytes.get(open + 1..close)?.to_vec();
    let rest = std::str::from_utf8(bytes.get(close + 1..)?).ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the comm: state(3) ppid(4) ... starttime(22); index = field - 3.
    let ppid = fields.get(1)?.parse().ok()?;
    let start_ticks = fields.get(19)?.parse().ok()?;
    Some(Stat {
        comm,
        ppid,
        start_ticks,
    })
}

fn read_uid(dir: &Path) -> u32 {
    fs::read_to_string(dir.join("status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_ascii_whitespace().next()?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

/// One entry per process currently in `proc_root`.
pub fn snapshot(proc_root: &Path) -> Vec<ProcessEntry> {
    let tick = tick_ns();
    let Ok(dir) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ent in dir.flatten() {
        let Some(pid) = std::str::from_utf8(ent.file_name().as_bytes())
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let path = ent.path();
        let Some(stat) = fs::read(path.join("stat"))
            .ok()
            .and_then(|b| parse_stat(&b))
        else {
            continue; // vanished, or not a process directory
        };
        let exe = fs::read_link(path.join("exe"))
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .unwrap_or_default();
        out.push(ProcessEntry {
            pid,
            start_ns: stat.start_ticks.saturating_mul(tick),
            ppid: stat.ppid,
            comm: stat.comm,
            exe,
            uid: read_uid(&path),
            exited_ns: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_tricky_comm() {
        let line = b"4242 (a) b (c)) S 77 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.comm, b"a) b (c)");
        assert_eq!(s.ppid, 77);
        assert_eq!(s.start_ticks, 123_456);
    }

    #[test]
    fn malformed_stat_is_none() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"1 (x) S"), None);
        assert_eq!(parse_stat(b"1 (x) S notanumber"), None);
    }

    #[test]
    fn snapshot_of_this_machine_contains_ourselves_and_our_parent() {
        let me = std::process::id();
        let snap = snapshot(Path::new("/proc"));
        let mine = snap
            .iter()
            .find(|e| e.pid == me)
            .expect("own process present");
        // SAFETY: getppid has no preconditions.
        let ppid = u32::try_from(unsafe { libc::getppid() }).unwrap();
        assert_eq!(mine.ppid, ppid);
        assert!(!mine.exe.is_empty());
    }

    #[test]
    fn snapshot_of_a_missing_root_is_empty() {
        assert!(snapshot(Path::new("/nonexistent-debugmon-proc")).is_empty());
    }
}
