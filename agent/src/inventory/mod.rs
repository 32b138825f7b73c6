//! The host's debug exposure now, "a good audit starts with an
//! inventory": the debuggers and profilers installed (the loaded policy's
//! `debuggers:` classes, found on disk), processes traced right now and by
//! whom, processes started with debug or injection switches, debug
//! interfaces listening on TCP ports (and on which address), injection in
//! force (`/etc/ld.so.preload`, `LD_PRELOAD` in running processes), and the
//! kernel settings that decide who may debug whom. `debugmon inventory`
//! prints it; the agent writes it as `inventory` records (docs/records.md).
//!
//! [`collect`] reads only files: a process that vanishes or a file that
//! cannot be read is skipped and counted in `skipped`, never an error.

pub mod kernel;
pub mod net;
pub mod procs;
pub mod render;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    path::{Path, PathBuf},
};

pub use kernel::KernelSettings;
use serde::Serialize;

use crate::{
    enrich::switches::{self, Switch},
    policy::PolicySet,
};

/// Where the inventory reads from; [`Sources::host`] for the real host,
/// a directory of fixtures in tests.
#[derive(Debug, Clone)]
pub struct Sources {
    pub proc_root: PathBuf,
    /// The securityfs mount (`/sys/kernel/security`).
    pub security: PathBuf,
    pub ld_so_preload: PathBuf,
    /// Directories searched for debuggers and profilers.
    pub program_dirs: Vec<PathBuf>,
}

/// Directories programs are installed in, searched beside `$PATH` (the
/// agent runs under systemd with a short one).
const PROGRAM_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/opt/bin",
];

impl Sources {
    /// The host's own files; `path_var`: `$PATH`, whose directories are
    /// searched too.
    pub fn host(path_var: Option<&str>) -> Self {
        let mut program_dirs: Vec<PathBuf> = PROGRAM_DIRS.iter().map(PathBuf::from).collect();
        for d in path_var
            .unwrap_or("")
            .split(':')
            .filter(|d| d.starts_with('/'))
        {
            program_dirs.push(PathBuf::from(d));
        }
        Self {
            proc_root: PathBuf::from("/proc"),
            security: PathBuf::from("/sys/kernel/security"),
            ld_so_preload: PathBuf::from("/etc/ld.so.preload"),
            program_dirs,
        }
    }
}

/// A debugger or profiler installed on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Installed {
    pub class: String,
    pub path: String,
}

/// A process, as findings name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcRef {
    pub pid: u32,
    pub comm: String,
    pub exe: String,
    pub uid: u32,
}

impl ProcRef {
    fn of(p: &procs::Proc) -> Self {
        Self {
            pid: p.pid,
            comm: p.comm.clone(),
            exe: p.exe.clone(),
            uid: p.uid,
        }
    }
}

/// A process traced right now, and its tracer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Traced {
    pub process: ProcRef,
    pub tracer: ProcRef,
    /// The tracer's debugger class; `None`: not a known debugger.
    pub debugger: Option<String>,
    /// `traced`, and `traced:non_debugger` when the tracer is no known
    /// debugger.
    pub findings: Vec<String>,
}

/// A debug interface listening on a TCP port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DebugPort {
    pub process: ProcRef,
    pub port: u16,
    pub bind: String,
    pub interface: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<&'static str>,
    /// `debug_port`, `debug_port:INTERFACE`, `debug_port:any_address`.
    pub findings: Vec<String>,
}

/// A process running with debug or injection switches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Switched {
    pub process: ProcRef,
    pub switches: Vec<Switch>,
    /// `debug_switch:INTERFACE` and `debug_switch:INTERFACE:RISK`.
    pub findings: Vec<String>,
}

/// `/etc/ld.so.preload` and the libraries it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preload {
    pub path: String,
    pub libraries: Vec<String>,
}

/// The inventory (docs/records.md, `inventory` with `event: snapshot`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Inventory {
    pub debuggers: Vec<Installed>,
    pub traced: Vec<Traced>,
    pub debug_ports: Vec<DebugPort>,
    /// Processes running with debug or injection switches (`LD_PRELOAD`
    /// among them).
    pub switches: Vec<Switched>,
    pub ld_so_preload: Option<Preload>,
    pub kernel: KernelSettings,
    /// What the host itself exposes, as policy names it: `ld_so_preload`
    /// and the kernel settings' findings. Each process entry has its own.
    pub findings: Vec<String>,
    /// Processes that vanished and files that could not be read.
    pub skipped: u64,
}

fn traced_findings(debugger: Option<&str>) -> Vec<String> {
    let mut out = vec!["traced".to_owned()];
    if debugger.is_none() {
        out.push("traced:non_debugger".to_owned());
    }
    out
}

fn port_findings(interface: &str, risk: Option<&str>) -> Vec<String> {
    let mut out = vec!["debug_port".to_owned(), format!("debug_port:{interface}")];
    if let Some(r) = risk {
        out.push(format!("debug_port:{r}"));
    }
    out
}

fn switch_findings(switches: &[Switch]) -> Vec<String> {
    switches
        .iter()
        .flat_map(|s| s.policy_names())
        .map(|n| format!("debug_switch:{n}"))
        .collect()
}

impl Inventory {
    /// Every finding, the host's and each process's, sorted and once.
    pub fn all_findings(&self) -> Vec<String> {
        let mut all: BTreeSet<String> = self.findings.iter().cloned().collect();
        all.extend(self.traced.iter().flat_map(|t| t.findings.iter().cloned()));
        all.extend(
            self.debug_ports
                .iter()
                .flat_map(|p| p.findings.iter().cloned()),
        );
        all.extend(
            self.switches
                .iter()
                .flat_map(|w| w.findings.iter().cloned()),
        );
        all.into_iter().collect()
    }
}

/// Reads the host's debug exposure. `set` names the debuggers (its
/// `debuggers:` classes).
pub fn collect(src: &Sources, set: &PolicySet) -> Inventory {
    let mut skipped = 0;
    let kernel = KernelSettings::read(&src.proc_root, &src.security, &mut skipped);
    let ld_so_preload = read_preload(&src.ld_so_preload, &mut skipped);
    let debuggers = installed(&src.program_dirs, set);
    let pids = match procs::pids(&src.proc_root) {
        Ok(p) => p,
        Err(_) => {
            skipped += 1;
            Vec::new()
        }
    };
    let mut all = Vec::with_capacity(pids.len());
    for pid in pids {
        match procs::read(&src.proc_root, pid) {
            // /proc lists processes only; a thread's directory is not one.
            Some(p) if p.tgid != p.pid => {}
            Some(p) => all.push(p),
            None => skipped += 1,
        }
    }
    let by_pid: HashMap<u32, &procs::Proc> = all.iter().map(|p| (p.pid, p)).collect();
    let traced = all
        .iter()
        .filter(|p| p.tracer_pid != 0)
        .filter_map(|p| {
            // TracerPid names the tracing thread: its process is the
            // tracer. One gone since the tracee was read is skipped.
            let Some(t) = tracer_of(&src.proc_root, p.tracer_pid, &by_pid) else {
                skipped += 1;
                return None;
            };
            let t = &t;
            let debugger = set.debugger_class(&t.exe, &t.comm).map(str::to_owned);
            Some(Traced {
                process: ProcRef::of(p),
                tracer: ProcRef::of(t),
                findings: traced_findings(debugger.as_deref()),
                debugger,
            })
        })
        .collect();
    let debug_ports = ports(&src.proc_root, &all, &by_pid, &mut skipped);
    let switches = all
        .iter()
        .filter(|p| !p.switches.is_empty())
        .map(|p| Switched {
            process: ProcRef::of(p),
            switches: p.switches.clone(),
            findings: switch_findings(&p.switches),
        })
        .collect();
    let mut findings: Vec<String> = ld_so_preload
        .iter()
        .map(|_| "ld_so_preload".to_owned())
        .collect();
    findings.extend(kernel.findings().into_iter().map(str::to_owned));
    Inventory {
        debuggers,
        traced,
        debug_ports,
        switches,
        ld_so_preload,
        kernel,
        findings,
        skipped,
    }
}

/// The process of tracing thread `tid`: listed under its own pid when it
/// is a process's main thread, else found through the thread's `Tgid`
/// (/proc does not list threads, but reads them).
fn tracer_of(
    proc_root: &Path,
    tid: u32,
    by_pid: &HashMap<u32, &procs::Proc>,
) -> Option<procs::Proc> {
    if let Some(p) = by_pid.get(&tid) {
        return Some((*p).clone());
    }
    let thread = procs::read(proc_root, tid)?;
    Some(by_pid.get(&thread.tgid).map_or(thread, |p| (*p).clone()))
}

/// The debug interfaces listening on TCP ports: each network namespace's
/// sockets read once, each socket given to the process holding it, kept
/// when the port serves a debug interface (the process's switches, its
/// program, a runtime's default port; as `debug_port` records decide).
fn ports(
    proc_root: &Path,
    all: &[procs::Proc],
    by_pid: &HashMap<u32, &procs::Proc>,
    skipped: &mut u64,
) -> Vec<DebugPort> {
    let mut seen_ns = HashSet::new();
    let mut listens = Vec::new();
    for p in all {
        let Some(ns) = &p.netns else {
            continue;
        };
        if seen_ns.contains(ns) {
            continue;
        }
        match net::listening(proc_root, p.pid) {
            Some(l) => {
                listens.extend(l);
                seen_ns.insert(ns.clone());
            }
            None => *skipped += 1,
        }
    }
    if listens.is_empty() {
        return Vec::new();
    }
    let pids: Vec<u32> = all
        .iter()
        .filter(|p| !p.exe.is_empty())
        .map(|p| p.pid)
        .collect();
    let owners = net::socket_owners(proc_root, &pids, skipped);
    let mut out = Vec::new();
    for l in listens {
        let Some(p) = owners.get(&l.inode).and_then(|pid| by_pid.get(pid)) else {
            continue;
        };
        let started: Vec<&'static str> = p.switches.iter().map(|s| s.interface).collect();
        let Some(interface) = switches::port_interface(&started, &p.exe, l.port) else {
            continue;
        };
        let risk = net::is_any(&l.addr).then_some("any_address");
        out.push(DebugPort {
            process: ProcRef::of(p),
            port: l.port,
            bind: l.addr.to_string(),
            interface,
            risk,
            findings: port_findings(interface, risk),
        });
    }
    out.sort_by_key(|d| (d.process.pid, d.port));
    out.dedup();
    out
}

/// `/etc/ld.so.preload`: `None` when absent or naming nothing.
fn read_preload(path: &Path, skipped: &mut u64) -> Option<Preload> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(_) => {
            *skipped += 1;
            return None;
        }
    };
    let libraries = parse_preload(&text);
    (!libraries.is_empty()).then(|| Preload {
        path: path.display().to_string(),
        libraries,
    })
}

/// The libraries `ld.so.preload` names: separated by white space or `:`,
/// `#` comments to the end of the line.
pub fn parse_preload(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == ':'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The programs in `dirs` the policy classes as debuggers or profilers,
/// each real file once (`/bin` is often `/usr/bin`).
fn installed(dirs: &[PathBuf], set: &PolicySet) -> Vec<Installed> {
    let mut seen_dirs = HashSet::new();
    let mut seen_files = HashSet::new();
    let mut out = Vec::new();
    for d in dirs {
        let Ok(real) = std::fs::canonicalize(d) else {
            continue;
        };
        if !seen_dirs.insert(real.clone()) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&real) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(class) = set.debugger_class(&path.to_string_lossy(), name) else {
                continue;
            };
            // Only programs: a file with an execute bit, reached through links.
            let Ok(target) = std::fs::canonicalize(&path) else {
                continue;
            };
            if !is_executable(&target) || !seen_files.insert(target) {
                continue;
            }
            out.push(Installed {
                class: class.to_owned(),
                path: path.display().to_string(),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests;
