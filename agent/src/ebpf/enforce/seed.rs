//! What the kernel would have recorded for processes that were running
//! before the agent (or before a policy load): read from /proc, once per
//! load, in the shape of the kernel's protection entries. Every read
//! tolerates the process vanishing meanwhile: it is then simply not seeded
//! (and, being gone, needs no protection).

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use agent_common::{PidKey, unit_hash};

use crate::event::model::kernel_dev;

/// A comm as the kernel stores it: NUL-padded, cut at 15 bytes.
pub fn comm_key(comm: &[u8]) -> [u8; 16] {
    let mut k = [0u8; 16];
    let n = comm.len().min(15);
    k[..n].copy_from_slice(&comm[..n]);
    k
}

/// Cgroup levels the kernel walks up from a task's cgroup to find its unit.
const UNIT_DEPTH: usize = 4;

/// One running process, as the protection maps need it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProcFacts {
    pub tgid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_tick: u64,
    /// Real uid.
    pub uid: u32,
    pub comm: [u8; 16],
    /// The executable's inode and kernel device.
    pub exe: Option<(u64, u32)>,
    /// [`unit_hash`] of its systemd unit.
    pub unit: Option<u64>,
    /// Every thread, at the host's pid namespace and, for a process in
    /// another one, at its own.
    pub keys: Vec<PidKey>,
}

/// The unit a cgroup path belongs to, as the kernel finds it: the innermost
/// `.service` or `.scope` among the last [`UNIT_DEPTH`] components.
pub fn unit_of_path(path: &str) -> Option<&str> {
    path.rsplit('/')
        .take(UNIT_DEPTH)
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
}

fn ns_inode(dir: &Path) -> Option<u32> {
    let m = fs::metadata(dir.join("ns/pid")).ok()?;
    u32::try_from(m.ino()).ok()
}

/// The innermost pid of a task (last number of `NSpid:`).
fn inner_pid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_ascii_whitespace()
        .last()?
        .parse()
        .ok()
}

fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The facts of process `tgid` under `proc_root`; `host_ns` is the host's
/// pid namespace inode. `None` when it vanished or is a kernel thread.
pub fn facts(proc_root: &Path, tgid: u32, host_ns: u32) -> Option<ProcFacts> {
    let dir = proc_root.join(tgid.to_string());
    let status = fs::read_to_string(dir.join("status")).ok()?;
    let stat = fs::read(dir.join("stat")).ok()?;
    let start_tick = crate::process::procfs::parse_stat(&stat)?.start_ticks;
    let comm = fs::read(dir.join("comm")).ok()?;
    let comm = comm.strip_suffix(b"\n").unwrap_or(&comm);
    let exe = fs::metadata(dir.join("exe"))
        .ok()
        .map(|m| (m.ino(), kernel_dev(m.dev())));
    let unit = fs::read_to_string(dir.join("cgroup")).ok().and_then(|t| {
        let path = t.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
        unit_of_path(&path).map(|u| unit_hash(u.as_bytes()))
    });
    let own_ns = ns_inode(&dir).unwrap_or(host_ns);
    let mut keys = Vec::new();
    let tasks: Vec<PathBuf> = fs::read_dir(dir.join("task"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    for t in tasks {
        let Some(tid) = t
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        keys.push(PidKey {
            ns: host_ns,
            nr: tid,
        });
        if own_ns != host_ns
            && let Some(inner) = fs::read_to_string(t.join("status"))
                .ok()
                .as_deref()
                .and_then(inner_pid)
        {
            keys.push(PidKey {
                ns: own_ns,
                nr: inner,
            });
        }
    }
    Some(ProcFacts {
        tgid,
        start_tick,
        uid: real_uid(&status)?,
        comm: comm_key(comm),
        exe,
        unit,
        keys,
    })
}

/// Every process under `proc_root`.
pub fn scan(proc_root: &Path, host_ns: u32) -> Vec<ProcFacts> {
    let Ok(rd) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|tgid| facts(proc_root, tgid, host_ns))
        .collect()
}

/// The host's pid namespace inode (the agent runs in it).
pub fn host_pid_ns(proc_root: &Path) -> u32 {
    ns_inode(&proc_root.join("self")).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_is_the_innermost_service_or_scope_within_four_levels() {
        assert_eq!(
            unit_of_path("/system.slice/x.service/a/b/c"),
            Some("x.service")
        );
        assert_eq!(
            unit_of_path("/system.slice/postgresql.service"),
            Some("postgresql.service")
        );
        assert_eq!(
            unit_of_path("/user.slice/user-1000.slice/session-3.scope"),
            Some("session-3.scope")
        );
        assert_eq!(
            unit_of_path("/system.slice/x.service/a/b/c/d"),
            None,
            "the kernel looks four levels up, no further"
        );
        assert_eq!(unit_of_path("/"), None);
    }

    #[test]
    fn this_process_has_facts_and_a_key_per_thread() {
        let root = Path::new("/proc");
        let host = host_pid_ns(root);
        let me = std::process::id();
        let _t = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(300)));
        let f = facts(root, me, host).unwrap();
        assert_eq!(f.tgid, me);
        assert!(f.start_tick > 0);
        assert!(f.exe.is_some());
        assert!(f.keys.len() >= 2, "{:?}", f.keys);
        assert!(f.keys.contains(&PidKey { ns: host, nr: me }));
        assert!(facts(root, 4_000_000_000, host).is_none());
    }
}
