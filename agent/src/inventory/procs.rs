//! What each running process shows in /proc that matters to debugging:
//! its name and program, who traces it (`TracerPid` of its status), the
//! debug and injection switches in its argv and environment (named by
//! [`crate::enrich::switches`], the parser the exec path uses) and its
//! network namespace. A process that exits while it is read is skipped.

use std::path::Path;

use crate::enrich::switches::{self, Switch};

/// The fields of `/proc/PID/status` the inventory uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub name: String,
    /// The process (thread group) a thread belongs to.
    pub tgid: u32,
    pub uid: u32,
    /// 0: not traced.
    pub tracer_pid: u32,
}

/// Parses `/proc/PID/status`; `None` when a field is missing or malformed.
pub fn parse_status(text: &str) -> Option<Status> {
    let mut name = None;
    let mut tgid = None;
    let mut uid = None;
    let mut tracer_pid = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            // The name is the rest of the line after one tab, spaces kept.
            "Name" => name = Some(value.strip_prefix('\t').unwrap_or(value).to_owned()),
            "Tgid" => tgid = value.trim().parse().ok(),
            "Uid" => uid = value.split_ascii_whitespace().next()?.parse().ok(),
            "TracerPid" => tracer_pid = value.trim().parse().ok(),
            _ => {}
        }
    }
    Some(Status {
        name: name?,
        tgid: tgid?,
        uid: uid?,
        tracer_pid: tracer_pid?,
    })
}

/// One process as the inventory sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    /// Its process: `pid` itself, unless `pid` names a thread.
    pub tgid: u32,
    pub comm: String,
    /// The program's path; empty for a kernel thread or when unreadable.
    pub exe: String,
    pub uid: u32,
    pub tracer_pid: u32,
    pub switches: Vec<Switch>,
    /// The network namespace (`net:[INODE]`), to read each one's sockets once.
    pub netns: Option<String>,
}

/// The pids under `proc_root`, ascending.
pub fn pids(proc_root: &Path) -> std::io::Result<Vec<u32>> {
    let mut out: Vec<u32> = std::fs::read_dir(proc_root)?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Splits a NUL-separated /proc file (cmdline, environ).
fn split_nul(bytes: &[u8]) -> impl Iterator<Item = String> + '_ {
    bytes
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
}

/// The variables of an environment block that the switch parser reads;
/// nothing else of it is kept.
pub fn debug_env(environ: &[u8]) -> Vec<(String, String)> {
    split_nul(environ)
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            switches::DEFAULT_ENV_NAMES
                .contains(&k)
                .then(|| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Reads process `pid`; `None` when it vanished or its status could not
/// be read (the caller counts it as skipped). A kernel thread has no
/// program and no switches.
pub fn read(proc_root: &Path, pid: u32) -> Option<Proc> {
    let dir = proc_root.join(pid.to_string());
    let status = parse_status(&std::fs::read_to_string(dir.join("status")).ok()?)?;
    let exe = std::fs::read_link(dir.join("exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let argv: Vec<String> = std::fs::read(dir.join("cmdline"))
        .map(|b| split_nul(&b).collect())
        .unwrap_or_default();
    let env = std::fs::read(dir.join("environ"))
        .map(|b| debug_env(&b))
        .unwrap_or_default();
    let switches = if exe.is_empty() && argv.is_empty() {
        Vec::new()
    } else {
        switches::detect(&exe, &argv, &env)
    };
    let netns = std::fs::read_link(dir.join("ns/net"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    Some(Proc {
        pid,
        tgid: status.tgid,
        comm: status.name,
        exe,
        uid: status.uid,
        tracer_pid: status.tracer_pid,
        switches,
        netns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tmy worker\nUmask:\t0022\nState:\tt (tracing stop)\nTgid:\t4242\n\
        Ngid:\t0\nPid:\t4242\nPPid:\t1\nTracerPid:\t4300\nUid:\t1000\t1000\t1000\t1000\n\
        Gid:\t1000\t1000\t1000\t1000\n";

    #[test]
    fn status_name_uid_and_tracer() {
        assert_eq!(
            parse_status(STATUS),
            Some(Status {
                name: "my worker".into(),
                tgid: 4242,
                uid: 1000,
                tracer_pid: 4300
            })
        );
        let untraced = STATUS.replace("TracerPid:\t4300", "TracerPid:\t0");
        assert_eq!(parse_status(&untraced).unwrap().tracer_pid, 0);
        // A status cut short (the process exited while it was read).
        assert_eq!(parse_status("Name:\tx\nUmask:\t0022\n"), None);
        assert_eq!(parse_status(&STATUS.replace("4300", "x")), None);
    }

    #[test]
    fn only_the_debug_variables_of_an_environment_are_kept() {
        let env = b"HOME=/root\0LD_PRELOAD=/tmp/x.so\0SECRET=hunter2\0NODE_OPTIONS=--inspect=0.0.0.0:9229\0\0";
        assert_eq!(
            debug_env(env),
            [
                ("LD_PRELOAD".to_owned(), "/tmp/x.so".to_owned()),
                (
                    "NODE_OPTIONS".to_owned(),
                    "--inspect=0.0.0.0:9229".to_owned()
                )
            ]
        );
        assert!(debug_env(b"").is_empty());
    }

    #[test]
    fn a_fixture_process_and_a_vanished_one() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("77");
        std::fs::create_dir_all(dir.join("ns")).unwrap();
        std::fs::write(dir.join("status"), STATUS).unwrap();
        std::fs::write(
            dir.join("cmdline"),
            b"java\0-agentlib:jdwp=transport=dt_socket,server=y,address=*:5005\0Main\0",
        )
        .unwrap();
        std::fs::write(dir.join("environ"), b"LD_PRELOAD=/usr/lib/libfoo.so\0").unwrap();
        std::os::unix::fs::symlink("/usr/bin/java", dir.join("exe")).unwrap();
        std::os::unix::fs::symlink("net:[4026531840]", dir.join("ns/net")).unwrap();
        let p = read(root.path(), 77).unwrap();
        assert_eq!(p.comm, "my worker");
        assert_eq!(p.exe, "/usr/bin/java");
        assert_eq!(p.tracer_pid, 4300);
        assert_eq!(p.netns.as_deref(), Some("net:[4026531840]"));
        let names: Vec<String> = p.switches.iter().flat_map(|s| s.policy_names()).collect();
        assert_eq!(names, ["jdwp", "jdwp:any_address", "ld_preload"]);
        assert_eq!(read(root.path(), 78), None, "gone: skipped, not a panic");
        assert_eq!(pids(root.path()).unwrap(), [77]);
    }
}
