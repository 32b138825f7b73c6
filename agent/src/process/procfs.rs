//! Seeds the process table from /proc, so processes that started before the
//! agent (the login shell, the service manager) appear in ancestries. Every
//! read tolerates the process vanishing meanwhile.

use std::{
    fs,
    os::unix::{ffi::OsStrExt as _, fs::MetadataExt as _},
    path::Path,
};

use agent_common::{Creds, NsIds};

use super::table::ProcessEntry;
use crate::event::ExeFile;
pub use crate::sys::host::tick_ns;

/// Parsed fields of `/proc/<pid>/stat`.
#[derive(Debug, PartialEq, Eq)]
pub struct Stat {
    pub comm: Vec<u8>,
    pub ppid: u32,
    pub tty_nr: u32,
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
    let tty_nr = fields.get(4)?.parse::<i64>().ok()?;
    let start_ticks = fields.get(19)?.parse().ok()?;
    Some(Stat {
        comm,
        ppid,
        tty_nr: u32::try_from(tty_nr).unwrap_or(0),
        start_ticks,
    })
}

/// Terminal name for a `tty_nr` device number (as the kernel names them).
pub fn tty_name(tty_nr: u32) -> Vec<u8> {
    // Linux's old dev_t encoding, as /proc/<pid>/stat prints it.
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => Vec::new(),
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor).into_bytes(),
        4 if minor < 64 => format!("tty{minor}").into_bytes(),
        4 => format!("ttyS{}", minor - 64).into_bytes(),
        5 if minor == 0 => b"tty".to_vec(),
        5 if minor == 1 => b"console".to_vec(),
        _ => Vec::new(),
    }
}

/// Fields of `/proc/<pid>/status` the table keeps.
fn parse_status(text: &str) -> (Creds, u32) {
    let mut c = Creds {
        uid: u32::MAX,
        gid: u32::MAX,
        euid: u32::MAX,
        egid: u32::MAX,
        auid: u32::MAX,
        sessionid: u32::MAX,
    };
    let mut ns_pid = 0;
    let two = |v: &str| -> (u32, u32) {
        let mut it = v
            .split_ascii_whitespace()
            .map(|x| x.parse().unwrap_or(u32::MAX));
        (it.next().unwrap_or(u32::MAX), it.next().unwrap_or(u32::MAX))
    };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Uid:") {
            (c.uid, c.euid) = two(v);
        } else if let Some(v) = line.strip_prefix("Gid:") {
            (c.gid, c.egid) = two(v);
        } else if let Some(v) = line.strip_prefix("NSpid:") {
            // The last number is the pid inside the innermost namespace.
            ns_pid = v
                .split_ascii_whitespace()
                .last()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
        }
    }
    (c, ns_pid)
}

fn read_u32(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Inode of a namespace link such as `pid:[4026531836]`.
fn ns_inode(dir: &Path, ns: &str) -> u32 {
    fs::metadata(dir.join("ns").join(ns))
        .map(|m| u32::try_from(m.ino()).unwrap_or(0))
        .unwrap_or(0)
}

/// cgroup v2 id (directory inode) of the process.
fn cgroup_id(dir: &Path) -> u64 {
    let Ok(text) = fs::read_to_string(dir.join("cgroup")) else {
        return 0;
    };
    let Some(rel) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
        return 0;
    };
    fs::metadata(Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/')))
        .map(|m| m.ino())
        .unwrap_or(0)
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
        let (mut creds, ns_pid) = fs::read_to_string(path.join("status"))
            .map(|t| parse_status(&t))
            .unwrap_or_default();
        creds.auid = read_u32(&path.join("loginuid")).unwrap_or(u32::MAX);
        creds.sessionid = read_u32(&path.join("sessionid")).unwrap_or(u32::MAX);
        let argv = fs::read(path.join("cmdline"))
            .map(|b| {
                b.strip_suffix(&[0])
                    .unwrap_or(&b)
                    .split(|&c| c == 0)
                    .map(<[u8]>::to_vec)
                    .collect()
            })
            .unwrap_or_default();
        let mut e = ProcessEntry::new(pid, stat.start_ticks.saturating_mul(tick), stat.ppid);
        e.notable = true;
        e.comm = stat.comm.into();
        e.exe = exe.into();
        e.exe_file = fs::metadata(path.join("exe"))
            .map(|m| ExeFile::of(&m))
            .unwrap_or_default();
        e.argv = argv;
        e.creds = creds;
        e.cgroup_id = cgroup_id(&path);
        e.ns = NsIds {
            pid_ns: ns_inode(&path, "pid"),
            user_ns: ns_inode(&path, "user"),
            mnt_ns: ns_inode(&path, "mnt"),
            ns_pid,
        };
        e.tty = tty_name(stat.tty_nr).into();
        out.push(e);
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
    fn tty_numbers_to_names() {
        assert_eq!(tty_name(0), b"");
        assert_eq!(tty_name(136 << 8 | 3), b"pts/3");
        assert_eq!(tty_name(4 << 8 | 1), b"tty1");
        assert_eq!(tty_name(4 << 8 | 64), b"ttyS0");
    }

    #[test]
    fn status_gives_real_and_effective_ids_and_the_inner_pid() {
        let (c, ns_pid) = parse_status(
            "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t100\t101\t101\t101\nNSpid:\t4242\t7\n",
        );
        assert_eq!((c.uid, c.euid, c.gid, c.egid), (1000, 0, 100, 101));
        assert_eq!(ns_pid, 7);
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
        // SAFETY: getuid has no preconditions.
        assert_eq!(mine.creds.uid, unsafe { libc::getuid() });
        assert_ne!(mine.ns.pid_ns, 0);
        assert!(!mine.argv.is_empty());
    }

    #[test]
    fn snapshot_of_a_missing_root_is_empty() {
        assert!(snapshot(Path::new("/nonexistent-debugmon-proc")).is_empty());
    }
}
