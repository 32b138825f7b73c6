//! The machine-wide lock privileged and VM tests hold
//! (`/tmp/debugmon-priv.lock`, flock): only one BPF-loading run at a time,
//! and a VM's CPU load stays out of timing-sensitive host tests. Taken by
//! xtask itself around the host's privileged suites and each VM boot;
//! when a caller already holds it for this process tree
//! (`flock /tmp/debugmon-priv.lock cargo xtask ...`), taking it again
//! would wait for ourselves, so that holder is recognised.

use std::{
    fs,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
};

use anyhow::{Context as _, Result, bail};

pub(crate) const PATH: &str = "/tmp/debugmon-priv.lock";

/// Held until dropped (closing the file releases the flock).
pub(crate) struct PrivLock {
    _file: Option<fs::File>,
}

/// The pids from this process up to pid 1.
fn ancestors() -> Vec<u32> {
    let mut out = Vec::new();
    let mut pid = std::process::id();
    while pid > 1 && out.len() < 64 {
        out.push(pid);
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The parent is the second field after the parenthesised name.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok());
        match parent {
            Some(p) => pid = p,
            None => break,
        }
    }
    out
}

/// Whether /proc/locks shows a flock on inode `ino` held by one of our
/// ancestors.
fn held_by_ancestor(ino: u64) -> bool {
    let ours = ancestors();
    let locks = fs::read_to_string("/proc/locks").unwrap_or_default();
    locks.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // "1: FLOCK ADVISORY WRITE 1234 00:1f:5678 0 EOF"
        let (Some(kind), Some(pid), Some(dev_ino)) = (f.get(1), f.get(4), f.get(5)) else {
            return false;
        };
        *kind == "FLOCK"
            && dev_ino.rsplit(':').next() == Some(&ino.to_string())
            && pid.parse::<u32>().is_ok_and(|p| ours.contains(&p))
    })
}

impl PrivLock {
    pub(crate) fn take() -> Result<Self> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PATH)
            .with_context(|| format!("opening {PATH}"))?;
        let ino = file.metadata()?.ino();
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Self { _file: Some(file) });
        }
        if held_by_ancestor(ino) {
            eprintln!("xtask: {PATH} is held by the command that started us");
            return Ok(Self { _file: None });
        }
        eprintln!("xtask: waiting for {PATH} (another privileged or VM test runs)");
        // SAFETY: as above.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!("flock {PATH}: {}", std::io::Error::last_os_error());
        }
        Ok(Self { _file: Some(file) })
    }
}
