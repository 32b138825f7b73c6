//! Who and where: turns the kernel's numbers into what a person reads —
//! user names, login user, terminal, SSH origin, working directory,
//! systemd unit, container, namespaces and ancestry — for the actor of
//! every record and for the target of an access.

pub mod cgroups;
pub mod exe;
pub mod session;
pub mod switches;
pub mod text;

use std::path::Path;

use agent_common::{Creds, NsIds};
use serde::Serialize;

use self::{cgroups::CgroupResolver, session::SessionCache};
pub use self::{
    session::Ssh,
    text::{Escapes, render},
};
use crate::{
    event::{AccessInfo, ExeFile, ExecInfo},
    process::{ProcessEntry, ProcessTable},
    sys::{nss::NssResolver, users::UserDb},
};

/// One level of ancestry, nearest parent first.
///
/// The output structs here declare their fields in key order: the
/// canonical writer then streams them without buffering.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AncestorOut {
    pub comm: String,
    pub exe: String,
    pub pid: u32,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Namespaces {
    pub mnt: u32,
    /// Pid inside `pid` (equals the host pid in the host namespace).
    pub ns_pid: u32,
    pub pid: u32,
    pub user: u32,
}

impl From<NsIds> for Namespaces {
    fn from(n: NsIds) -> Self {
        Self {
            pid: n.pid_ns,
            user: n.user_ns,
            mnt: n.mnt_ns,
            ns_pid: n.ns_pid,
        }
    }
}

/// Who acted (docs/records.md `actor`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Actor {
    pub ancestry: Vec<AncestorOut>,
    pub argv: Vec<String>,
    pub auid: Option<u32>,
    pub cgroup: Option<String>,
    pub cgroup_id: u64,
    pub comm: String,
    pub container_id: Option<String>,
    pub cwd: Option<String>,
    pub egid: u32,
    pub euid: u32,
    pub euser: Option<String>,
    pub exe: String,
    /// The path is the file the kernel runs, and only root could have put
    /// it there (docs/records.md): what an exemption by `exe` requires.
    pub exe_trusted: bool,
    pub gid: u32,
    pub groups: Vec<String>,
    pub login_user: Option<String>,
    pub namespaces: Namespaces,
    pub pid: u32,
    pub ppid: u32,
    pub session_id: Option<u32>,
    pub ssh: Option<Ssh>,
    pub start_ns: u64,
    pub tgid: u32,
    pub tty: Option<String>,
    pub uid: u32,
    pub unit: Option<String>,
    pub user: Option<String>,
}

/// What was acted upon (docs/records.md `target`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Target {
    /// Host pid (0 when it could not be resolved).
    pub pid: u32,
    /// The pid as the actor named it, when it differs (namespaces).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub named_pid: Option<u32>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub uid: Option<u32>,
    pub user: Option<String>,
    pub unit: Option<String>,
    pub container_id: Option<String>,
    pub cgroup_id: Option<u64>,
    pub namespaces: Option<Namespaces>,
    pub start_ns: Option<u64>,
    /// False when the agent knew nothing about this pid.
    pub known: bool,
}

impl Target {
    /// A target the agent could not map to a host process.
    pub fn unresolved(named: u32) -> Self {
        Self {
            pid: 0,
            named_pid: Some(named),
            comm: None,
            exe: None,
            uid: None,
            user: None,
            unit: None,
            container_id: None,
            cgroup_id: None,
            namespaces: None,
            start_ns: None,
            known: false,
        }
    }
}

/// Facts about the acting process, from the event and the process table.
pub struct ActorFacts<'a> {
    pub pid: u32,
    pub ppid: u32,
    pub start_ns: u64,
    pub creds: Creds,
    pub cgroup_id: u64,
    pub ns: NsIds,
    pub comm: &'a [u8],
    pub exe: &'a [u8],
    /// The file the kernel runs, when known.
    pub exe_file: Option<ExeFile>,
    pub argv: &'a [Vec<u8>],
    pub tty: &'a [u8],
    /// The cwd the kernel walked at an exec; `None`: read `/proc/PID/cwd`.
    pub cwd: Option<&'a [u8]>,
}

impl<'a> ActorFacts<'a> {
    /// What the kernel said about the actor of an exec.
    pub fn of_exec(e: &'a ExecInfo) -> Self {
        Self {
            pid: e.tgid,
            ppid: e.ppid,
            start_ns: e.start_ns,
            creds: e.creds,
            cgroup_id: e.cgroup_id,
            ns: e.ns,
            comm: &e.comm,
            exe: &e.filename,
            exe_file: Some(e.exe_file),
            argv: &e.argv,
            tty: &e.tty,
            cwd: e.cwd.as_deref(),
        }
    }

    /// A process known only from the table (the tracer of a traced exec):
    /// pid alone when the table does not know it.
    pub fn of_entry(pid: u32, entry: Option<&'a ProcessEntry>) -> Self {
        const NO_ARGV: &[Vec<u8>] = &[];
        match entry {
            Some(e) => Self {
                pid,
                ppid: e.ppid,
                start_ns: e.start_ns,
                creds: e.creds,
                cgroup_id: e.cgroup_id,
                ns: e.ns,
                comm: &e.comm,
                exe: &e.exe,
                exe_file: Some(e.exe_file),
                argv: &e.argv,
                tty: &e.tty,
                cwd: None,
            },
            None => Self {
                pid,
                ppid: 0,
                start_ns: 0,
                creds: Creds::default(),
                cgroup_id: 0,
                ns: NsIds::default(),
                comm: &[],
                exe: &[],
                exe_file: None,
                argv: NO_ARGV,
                tty: &[],
                cwd: None,
            },
        }
    }

    /// The actor of an access: the event's credentials, and what the table
    /// knows of its program (`entry`, when known).
    pub fn of_access(a: &'a AccessInfo, entry: Option<&'a ProcessEntry>) -> Self {
        const NO_ARGV: &[Vec<u8>] = &[];
        Self {
            pid: a.tgid,
            ppid: a.ppid,
            start_ns: a.start_ns,
            creds: a.creds,
            cgroup_id: a.cgroup_id,
            ns: a.ns,
            comm: &a.comm,
            exe: entry.map_or(&[][..], |e| &e.exe),
            exe_file: entry.map(|e| e.exe_file),
            argv: entry.map_or(NO_ARGV, |e| &e.argv),
            tty: entry.map_or(&[][..], |e| &e.tty),
            // The actor may have changed directory since its exec.
            cwd: None,
        }
    }
}

fn audit_id(v: u32) -> Option<u32> {
    (v != u32::MAX).then_some(v)
}

pub struct Enricher {
    users: UserDb,
    /// Names of users the files do not list, through NSS off this thread
    /// (the running host only; tests read fixture files alone).
    nss: Option<NssResolver>,
    cgroups: CgroupResolver,
    v1: cgroups::V1Probe,
    sessions: SessionCache,
    ancestry_depth: usize,
    /// The host's pid namespace (the agent's own): pids named there are host pids.
    host_pid_ns: u32,
    proc_root: std::path::PathBuf,
    exes: exe::ExeResolver,
}

impl Enricher {
    /// `cgroup_root` is the cgroup v2 mount; [`Enricher::for_host`] finds
    /// it, and the v1 mounts that `/proc/<pid>/cgroup` is read for.
    pub fn new(etc: &Path, cgroup_root: &Path, proc_root: &Path, ancestry_depth: usize) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        let host_pid_ns = std::fs::metadata(proc_root.join("self/ns/pid"))
            .map(|m| u32::try_from(m.ino()).unwrap_or(0))
            .unwrap_or(0);
        Self {
            users: UserDb::new(etc),
            nss: None,
            cgroups: CgroupResolver::new(cgroup_root),
            v1: cgroups::V1Probe::new(Vec::new()),
            sessions: SessionCache::new(proc_root),
            ancestry_depth,
            host_pid_ns,
            proc_root: proc_root.to_path_buf(),
            exes: exe::ExeResolver::default(),
        }
    }

    /// An enricher over the running host's /etc, /proc and cgroup v2 mount.
    pub fn for_host(ancestry_depth: usize) -> Self {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = cgroups::cgroup2_root(&mounts).unwrap_or_else(|| {
            tracing::warn!("no cgroup v2 mount: units and containers come from /proc only");
            std::path::PathBuf::from("/sys/fs/cgroup")
        });
        let mut e = Self::new(Path::new("/etc"), &root, Path::new("/proc"), ancestry_depth);
        e.nss = NssResolver::start();
        e.v1 = cgroups::V1Probe::new(cgroups::cgroup1_roots(&mounts));
        e
    }

    /// cgroup ids of every cgroup named `unit` (a service has one; a unit
    /// name matches wherever it sits in the tree).
    pub fn cgroup_ids_of_unit(&mut self, unit: &str) -> Vec<u64> {
        self.cgroups.ids_named(unit)
    }

    pub fn users(&self) -> &UserDb {
        &self.users
    }

    /// Periodic upkeep: notices changed passwd/group files.
    pub fn refresh(&mut self) {
        self.users.refresh();
    }

    /// The files first (read in memory, never blocking), then NSS's cache.
    fn user(&self, uid: u32) -> Option<String> {
        self.users
            .user(uid)
            .map(str::to_owned)
            .or_else(|| self.nss.as_ref()?.user(uid).map(|u| u.name))
    }

    /// Group names of `user` (uid `uid`): from the files when they list
    /// the user, else from NSS's cache.
    fn groups(&self, uid: u32, user: &str) -> Vec<String> {
        if self.users.user(uid).is_some() {
            return self.users.groups_of(user);
        }
        self.nss
            .as_ref()
            .and_then(|n| n.user(uid))
            .map(|u| u.groups)
            .unwrap_or_default()
    }

    /// cgroup path, unit and container of process `pid` in cgroup `cgroup_id`.
    fn unit_container(
        &mut self,
        cgroup_id: u64,
        pid: u32,
    ) -> (Option<String>, Option<String>, Option<String>) {
        let path = self.cgroups.path(cgroup_id).map(str::to_owned);
        let mut unit = path
            .as_deref()
            .and_then(cgroups::unit_of)
            .map(str::to_owned);
        let mut container = path
            .as_deref()
            .and_then(cgroups::container_of)
            .map(str::to_owned);
        if (unit.is_none() || container.is_none()) && self.v1.useful() {
            // Hybrid hosts keep units in the v1 name=systemd tree.
            let file = self.proc_root.join(pid.to_string()).join("cgroup");
            if let Ok(text) = std::fs::read_to_string(file) {
                let (u, c) = cgroups::from_proc_cgroup(&text);
                unit = unit.or(u);
                container = container.or(c);
            }
        }
        (path, unit, container)
    }

    pub fn actor(&mut self, f: &ActorFacts<'_>, table: &ProcessTable, esc: &mut Escapes) -> Actor {
        let ancestors = table.ancestry(f.pid, self.ancestry_depth);
        let lineage: Vec<(u32, u64)> = std::iter::once((f.pid, 0))
            .chain(ancestors.iter().map(|a| (a.pid, a.start_ns)))
            .collect();
        let ssh = self.sessions.ssh(f.creds.sessionid, &lineage);
        let exe = match f.exe_file {
            Some(file) => self.exes.view(f.exe, f.cwd, file),
            None => exe::ExeView {
                real: None,
                trusted: false,
            },
        };
        let (cgroup, unit, container_id) = self.unit_container(f.cgroup_id, f.pid);
        let user = self.user(f.creds.uid);
        let groups = user
            .as_deref()
            .map(|u| self.groups(f.creds.uid, u))
            .unwrap_or_default();
        Actor {
            pid: f.pid,
            tgid: f.pid,
            ppid: f.ppid,
            uid: f.creds.uid,
            user,
            gid: f.creds.gid,
            groups,
            euid: f.creds.euid,
            euser: self.user(f.creds.euid),
            egid: f.creds.egid,
            auid: audit_id(f.creds.auid),
            login_user: audit_id(f.creds.auid).and_then(|a| self.user(a)),
            session_id: audit_id(f.creds.sessionid),
            tty: (!f.tty.is_empty()).then(|| esc.text("tty", f.tty)),
            ssh,
            exe: esc.text("exe", exe.real.as_deref().unwrap_or(f.exe)),
            exe_trusted: exe.trusted,
            comm: esc.text("comm", f.comm),
            argv: f.argv.iter().map(|a| esc.text("argv", a)).collect(),
            cwd: match f.cwd {
                Some(c) => Some(esc.text("cwd", c)),
                None => self.sessions.cwd(f.pid),
            },
            unit,
            container_id,
            cgroup_id: f.cgroup_id,
            cgroup,
            namespaces: f.ns.into(),
            start_ns: f.start_ns,
            ancestry: ancestors
                .iter()
                .map(|a| AncestorOut {
                    pid: a.pid,
                    comm: esc.text("ancestry", &a.comm),
                    exe: esc.text("ancestry", &a.exe),
                })
                .collect(),
        }
    }

    /// Host pid of the process the actor named `named` (0: none named).
    pub fn resolve_target(&self, actor_ns: NsIds, named: u32, table: &ProcessTable) -> Option<u32> {
        if named == 0 {
            return None;
        }
        if actor_ns.pid_ns == 0 || actor_ns.pid_ns == self.host_pid_ns {
            return Some(named);
        }
        table.host_pid(actor_ns.pid_ns, named)
    }

    /// The target of an access: the process the actor named, as a host
    /// process (resolved by the kernel, or here through the actor's pid
    /// namespace); unresolved when it cannot be mapped, `None` when the
    /// access named no process.
    pub fn access_target(
        &mut self,
        a: &AccessInfo,
        table: &ProcessTable,
        esc: &mut Escapes,
    ) -> Option<Target> {
        // ESRCH: the kernel found no such process, so none of the table's
        // (which keeps exited ones a while, and may hold an earlier
        // namespace's holder of that number) is the target.
        let vanished = a.ret == Some(-i64::from(libc::ESRCH));
        let host_pid = a
            .target_host_pid
            .or_else(|| (!vanished).then(|| self.resolve_target(a.ns, a.target_pid, table))?);
        match (a.target_pid, host_pid) {
            (0, None) => None,
            (named, Some(h)) => Some(self.target(h, named, table, esc)),
            (named, None) => Some(Target::unresolved(named)),
        }
    }

    pub fn target(
        &mut self,
        host_pid: u32,
        named: u32,
        table: &ProcessTable,
        esc: &mut Escapes,
    ) -> Target {
        let named_pid = (named != 0 && named != host_pid).then_some(named);
        let Some(e): Option<&ProcessEntry> = table.get(host_pid) else {
            return Target {
                pid: host_pid,
                named_pid,
                ..Target::unresolved(named)
            };
        };
        let (_, unit, container_id) = self.unit_container(e.cgroup_id, host_pid);
        let uid = (e.creds.uid != u32::MAX).then_some(e.creds.uid);
        Target {
            pid: host_pid,
            named_pid,
            comm: Some(esc.text("target", &e.comm)),
            exe: Some(esc.text("target", &e.exe)),
            uid,
            user: uid.and_then(|u| self.user(u)),
            unit,
            container_id,
            cgroup_id: Some(e.cgroup_id),
            namespaces: Some(e.ns.into()),
            start_ns: Some(e.start_ns),
            known: true,
        }
    }
}
