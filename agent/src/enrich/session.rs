//! Where a login came from: the SSH client address and port of the login
//! session (from `SSH_CONNECTION` in the environment of the process or its
//! nearest living ancestor, cached per audit session), and the working
//! directory. Both read /proc and so are best effort: a process that already
//! exited has no cwd in the record, and says so by omission.

use std::{collections::HashMap, fs, os::unix::ffi::OsStrExt as _, path::Path};

use serde::Serialize;

/// SSH client endpoint of a login session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ssh {
    pub src_ip: String,
    pub src_port: u16,
}

/// Parses `SSH_CONNECTION=<client ip> <client port> <server ip> <server port>`.
pub fn parse_ssh_connection(value: &[u8]) -> Option<Ssh> {
    let s = std::str::from_utf8(value).ok()?;
    let mut it = s.split_ascii_whitespace();
    let ip = it.next()?;
    let port = it.next()?.parse().ok()?;
    ip.parse::<std::net::IpAddr>().ok()?;
    Some(Ssh {
        src_ip: ip.to_owned(),
        src_port: port,
    })
}

/// `SSH_CONNECTION` from a NUL-separated environment block.
pub fn ssh_from_environ(env: &[u8]) -> Option<Ssh> {
    env.split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"SSH_CONNECTION="))
        .and_then(parse_ssh_connection)
}

pub struct SessionCache {
    proc_root: std::path::PathBuf,
    by_session: HashMap<u32, Option<Ssh>>,
    /// Per ancestor (pid, start time): shells and sshd live long and start
    /// many children, so each environment is read once, not once per
    /// record, and a process that vanished is not asked again. (Reading
    /// every actor's environ was most of the agent's CPU under an exec
    /// storm, and two agents on one host fed each other's reads.)
    /// `None`: the environment could not be read (the process is gone).
    by_pid: HashMap<(u32, u64), Option<Option<Ssh>>>,
}

impl SessionCache {
    pub fn new(proc_root: &Path) -> Self {
        Self {
            proc_root: proc_root.to_path_buf(),
            by_session: HashMap::new(),
            by_pid: HashMap::new(),
        }
    }

    /// SSH origin for a process whose lineage (itself first) is `pids`,
    /// as (pid, start time). `session` is the audit session id
    /// (`u32::MAX` when unset).
    pub fn ssh(&mut self, session: u32, pids: &[(u32, u64)]) -> Option<Ssh> {
        if session != u32::MAX
            && let Some(hit) = self.by_session.get(&session)
        {
            return hit.clone();
        }
        let mut found = None;
        let mut any_read = false;
        // The actor's environment is its parent's unless it was replaced at
        // exec, which a login never does: the ancestors decide.
        for key @ (pid, _) in pids.iter().skip(1) {
            let known = match self.by_pid.get(key) {
                Some(known) => known.clone(),
                None => {
                    let env = fs::read(self.proc_root.join(pid.to_string()).join("environ"));
                    let known = env.ok().map(|e| ssh_from_environ(&e));
                    if self.by_pid.len() > 8192 {
                        self.by_pid.clear();
                    }
                    self.by_pid.insert(*key, known.clone());
                    known
                }
            };
            let Some(hit) = known else { continue };
            any_read = true;
            found = hit;
            if found.is_some() {
                break;
            }
        }
        // Cache only a real answer: an empty lineage proves nothing.
        if session != u32::MAX && any_read {
            if self.by_session.len() > 4096 {
                self.by_session.clear();
            }
            self.by_session.insert(session, found.clone());
        }
        found
    }

    pub fn cwd(&self, pid: u32) -> Option<String> {
        fs::read_link(self.proc_root.join(pid.to_string()).join("cwd"))
            .ok()
            .map(|p| super::text::render(p.as_os_str().as_bytes()).0.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ssh_connection() {
        let env = b"PATH=/bin\0SSH_CONNECTION=10.0.0.5 51234 10.0.0.1 22\0TERM=xterm\0";
        assert_eq!(
            ssh_from_environ(env),
            Some(Ssh {
                src_ip: "10.0.0.5".into(),
                src_port: 51234
            })
        );
        assert_eq!(
            parse_ssh_connection(b"fe80::1 2222 fe80::2 22")
                .unwrap()
                .src_ip,
            "fe80::1"
        );
        assert_eq!(ssh_from_environ(b"SSH_CONNECTION=garbage\0"), None);
        assert_eq!(ssh_from_environ(b"X_SSH_CONNECTION=10.0.0.5 1 2 3\0"), None);
        assert_eq!(ssh_from_environ(b""), None);
    }

    #[test]
    fn own_cwd_is_readable() {
        let c = SessionCache::new(Path::new("/proc"));
        let want = std::env::current_dir().unwrap();
        assert_eq!(c.cwd(std::process::id()), Some(want.display().to_string()));
        assert_eq!(c.cwd(u32::MAX - 1), None);
    }

    #[test]
    fn ssh_origin_is_read_once_per_ancestor_and_again_after_pid_reuse() {
        let d = tempfile::tempdir().unwrap();
        let env = |pid: u32, text: &str| {
            std::fs::create_dir_all(d.path().join(pid.to_string())).unwrap();
            std::fs::write(d.path().join(format!("{pid}/environ")), text).unwrap();
        };
        env(11, "SSH_CONNECTION=10.0.0.5 51234 10.0.0.1 22\0");
        let mut c = SessionCache::new(d.path());
        // pid 10 has no environ (gone): skipped, and not asked again.
        let lineage = [(99, 0), (10, 1), (11, 2)];
        assert_eq!(c.ssh(u32::MAX, &lineage).unwrap().src_ip, "10.0.0.5");
        env(10, "SSH_CONNECTION=10.9.9.9 1 10.0.0.1 22\0");
        env(11, "PATH=/bin\0");
        assert_eq!(
            c.ssh(u32::MAX, &lineage).unwrap().src_ip,
            "10.0.0.5",
            "answers come from the cache"
        );
        // Same pids, new processes (other start times): read again.
        assert_eq!(
            c.ssh(u32::MAX, &[(99, 0), (10, 5), (11, 6)])
                .unwrap()
                .src_ip,
            "10.9.9.9"
        );
        assert_eq!(c.ssh(u32::MAX, &[(99, 0), (11, 6)]), None);
    }
}
