//! Loads the embedded eBPF object, hands it the kernel layout it needs and
//! the agent's own tgid, and attaches every program the probe tables list
//! ([`super::probes`]). A required probe that fails is fatal at start; an
//! optional one is logged and skipped.

use std::path::Path;

use agent_common::{
    AGENT_TGID_GLOBAL, AGG_MAP, AggKey, DEFAULT_RING_BYTES, ENV_NAMES, ENV_NAMES_MAP, EVENTS_MAP,
    EnvName, FAULTS_MAP, KernelOffsets, LOST_MAP, OFFSETS_GLOBAL, ObjectKey, READER_IDLE_MAP,
};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{BtfTracePoint, FEntry, FExit, Lsm, ProgramError, TracePoint},
};
use thiserror::Error;
use tracing::{info, warn};

use super::{
    btf::{BtfError, KernelBtf, VMLINUX_BTF},
    enforce::{EnforceError, Enforcer, Mechanism, mechanism},
    kernel_log,
    probes::{self, Hook, LSM_PROBES, PROBES, Probe, SYSCALL_PREFIX, SYSCALL_PROBES},
    tracefs::{self, TracefsError, TracefsState},
};
use crate::error::error_chain;

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("tracefs")]
    Tracefs(#[from] TracefsError),
    #[error("resolving kernel struct layouts")]
    Btf(#[from] BtfError),
    #[error("parsing kernel BTF for BTF-typed programs")]
    AyaBtf(#[from] aya::BtfError),
    #[error("loading the eBPF object")]
    Load(#[from] aya::EbpfError),
    #[error("program `{0}` is missing from the eBPF object")]
    MissingProgram(&'static str),
    #[error("map `{0}` is missing from the eBPF object or has the wrong type")]
    Map(&'static str),
    #[error("opening the programs' log ring (--kernel-log)")]
    KernelLog(#[source] aya_log::Error),
    #[error("enforcement maps")]
    Enforce(#[from] EnforceError),
    #[error("writing map `{name}`")]
    MapWrite {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("loading or attaching program `{program}`")]
    Program {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
}

/// Options for [`load_and_attach`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Tgid whose events the kernel drops (the agent itself).
    pub agent_tgid: u32,
    /// Enforce deny rules (and protect the agent) when the kernel allows it.
    pub enforce: bool,
    /// Environment variables each exec reports (at most
    /// [`agent_common::ENV_NAMES`]; the kernel matches their first 8 bytes).
    pub env_names: Vec<String>,
    /// Have the programs log each counted failure (`--kernel-log`).
    pub kernel_log: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ring_bytes: DEFAULT_RING_BYTES,
            agent_tgid: std::process::id(),
            enforce: true,
            env_names: Vec::new(),
            kernel_log: false,
        }
    }
}

/// A loaded, attached object. Dropping it detaches every program.
pub struct Loaded {
    /// Owns the programs and their links.
    pub ebpf: Ebpf,
    pub ring: RingBuf<MapData>,
    /// Set while the agent waits for the kernel to wake it (`wake_if_idle`).
    pub reader_idle: Array<MapData, u32>,
    pub lost: PerCpuArray<MapData, u64>,
    /// Failures inside the programs, by `agent_common::fault` site.
    pub faults: PerCpuArray<MapData, u64>,
    /// The programs' log ring, when `kernel_log` was asked for.
    pub kernel_log: Option<kernel_log::Logger>,
    /// Repeat counts of aggregated accesses.
    pub agg: PerCpuHashMap<MapData, AggKey, u64>,
    /// Names of the programs that are attached.
    pub attached: Vec<&'static str>,
    pub tracefs: TracefsState,
    pub offsets: KernelOffsets,
    /// Keeps the decision maps; knows the mechanism in force.
    pub enforcer: Enforcer,
    /// Why this mechanism (for the start record and `status`).
    pub mechanism_reason: String,
    /// The agent's own programs, maps and links, by id.
    pub objects: Vec<ObjectKey>,
}

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/debugmon-ebpf"));

/// Loads the programs into the running kernel and attaches them.
pub fn load_and_attach(opts: &LoadOptions) -> Result<Loaded, LoadError> {
    raise_memlock_limit();
    let tracefs = tracefs::ensure_mounted()?;
    if let TracefsState::MountedByUs(path) = &tracefs {
        info!(path = %path.display(), "tracefs was not mounted; mounted it (tracepoints need it)");
    }

    let kbtf = KernelBtf::open(Path::new(VMLINUX_BTF))?;
    let mut offsets = kbtf.kernel_offsets()?;
    offsets.tp_exec_filename =
        tracefs::field_offset(tracefs.root(), "sched", "sched_process_exec", "filename")?;
    offsets.tp_exec_old_pid =
        tracefs::field_offset(tracefs.root(), "sched", "sched_process_exec", "old_pid")?;
    // Every sys_enter_* record has the same layout (struct syscall_trace_enter),
    // and every sys_exit_* one too: one format file tells the offsets for all.
    // Only the tracepoint fallback of the syscall hooks needs them: a kernel
    // without syscall tracepoints still runs the fentry programs.
    let tp_offset = |name: &str, field: &str| {
        tracefs::field_offset(tracefs.root(), "syscalls", name, field).unwrap_or_else(|e| {
            info!(error = %error_chain(&e), "no syscall tracepoints: the syscall hooks have no fallback");
            agent_common::OFFSET_ABSENT
        })
    };
    offsets.tp_sys_enter_args = tp_offset("sys_enter_ptrace", "request");
    offsets.tp_sys_exit_ret = tp_offset("sys_exit_ptrace", "ret");
    offsets.tick_ns = u32::try_from(crate::sys::host::tick_ns()).unwrap_or(10_000_000);
    if offsets.mm_owner == agent_common::OFFSET_ABSENT {
        warn!(
            "kernel built without CONFIG_MEMCG: reads and writes of another process's memory are \
             judged when the file is opened, not as they happen (io_uring opens into fixed slots \
             or with skipped completions go unseen; see docs/threat-model.md)"
        );
    }
    if offsets.task_loginuid == agent_common::OFFSET_ABSENT {
        warn!("kernel built without CONFIG_AUDIT: records carry no auid or session id");
    }

    let btf = aya::Btf::from_sys_fs()?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .override_global(OFFSETS_GLOBAL, &offsets, true)
        .override_global(AGENT_TGID_GLOBAL, &opts.agent_tgid, true)
        .override_global(aya_log::LEVEL, &kernel_log::level(opts.kernel_log), true)
        .map_max_entries(EVENTS_MAP, opts.ring_bytes)
        .load(OBJECT)?;

    set_env_names(&mut ebpf, &opts.env_names)?;
    let mut attached = Vec::with_capacity(PROBES.len() + SYSCALL_PROBES.len() + 1);
    let address_space = probes::address_space(offsets.mmap_lock_write_arg);
    for probe in PROBES.iter().chain([&address_space]) {
        match attach(&mut ebpf, &btf, probe) {
            Ok(()) => attached.push(probe.program),
            Err(e) if !probe.required => {
                warn!(program = probe.program, error = %error_chain(&e), "optional probe not attached");
            }
            Err(e) => return Err(e),
        }
    }
    let mut trampoline_refused = None;
    for sp in SYSCALL_PROBES {
        let preferred = sp.preferred();
        let first = match attach(&mut ebpf, &btf, &preferred) {
            Ok(()) => {
                attached.push(preferred.program);
                continue;
            }
            Err(e) => e,
        };
        let fallback = sp.fallback();
        match attach(&mut ebpf, &btf, &fallback) {
            Ok(()) => {
                attached.push(fallback.program);
                trampoline_refused.get_or_insert_with(|| error_chain(&first));
            }
            Err(e) => warn!(
                syscall = sp.name,
                fentry = %error_chain(&first),
                tracepoint = %error_chain(&e),
                "syscall hook not attached: this access vector is not watched"
            ),
        }
    }
    if let Some(why) = trampoline_refused {
        warn!(
            reason = %why,
            "syscall hooks fell back to syscall tracepoints (the kernel refused fentry): every syscall on this host now takes the kernel's syscall-tracing path"
        );
    }

    let (mechanism, mechanism_reason) = if opts.enforce {
        choose_mechanism(&mut ebpf, &btf, &mut attached)
    } else {
        (Mechanism::Off, "disabled by configuration".to_owned())
    };
    match mechanism {
        Mechanism::Lsm => info!("enforcement: BPF-LSM ({mechanism_reason})"),
        Mechanism::Kill => warn!(
            "enforcement: kill fallback, the actor of a denied action is killed when the action succeeds, before it can use it ({mechanism_reason})"
        ),
        Mechanism::Off => warn!("enforcement: off ({mechanism_reason}); observing only"),
    }
    let objects = own_objects(&ebpf);
    let enforcer = Enforcer::new(&mut ebpf, mechanism)?;

    let ring = RingBuf::try_from(
        ebpf.take_map(EVENTS_MAP)
            .ok_or(LoadError::Map(EVENTS_MAP))?,
    )
    .map_err(|_| LoadError::Map(EVENTS_MAP))?;
    let lost = PerCpuArray::try_from(ebpf.take_map(LOST_MAP).ok_or(LoadError::Map(LOST_MAP))?)
        .map_err(|_| LoadError::Map(LOST_MAP))?;
    let faults = PerCpuArray::try_from(
        ebpf.take_map(FAULTS_MAP)
            .ok_or(LoadError::Map(FAULTS_MAP))?,
    )
    .map_err(|_| LoadError::Map(FAULTS_MAP))?;
    let agg = PerCpuHashMap::try_from(ebpf.take_map(AGG_MAP).ok_or(LoadError::Map(AGG_MAP))?)
        .map_err(|_| LoadError::Map(AGG_MAP))?;
    let reader_idle = Array::try_from(
        ebpf.take_map(READER_IDLE_MAP)
            .ok_or(LoadError::Map(READER_IDLE_MAP))?,
    )
    .map_err(|_| LoadError::Map(READER_IDLE_MAP))?;
    let kernel_log = if opts.kernel_log {
        Some(kernel_log::take(&mut ebpf).map_err(LoadError::KernelLog)?)
    } else {
        None
    };
    Ok(Loaded {
        kernel_log,
        ebpf,
        ring,
        reader_idle,
        lost,
        faults,
        agg,
        attached,
        tracefs,
        offsets,
        enforcer,
        mechanism_reason,
        objects,
    })
}

/// BPF-LSM when `bpf` is an active LSM and every LSM program attaches;
/// otherwise the kill fallback, with the reason.
fn choose_mechanism(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    attached: &mut Vec<&'static str>,
) -> (Mechanism, String) {
    let list = match mechanism::active_lsms() {
        Ok((list, mounted)) => {
            if mounted {
                info!(
                    "securityfs was not mounted; mounted it at {}",
                    mechanism::SECURITYFS
                );
            }
            list
        }
        Err(e) => {
            return (
                Mechanism::Kill,
                format!("cannot read the active LSM list: {e}"),
            );
        }
    };
    if !mechanism::lsm_list_has_bpf(&list) {
        return (
            Mechanism::Kill,
            format!("`bpf` is not in the active LSM list ({})", list.trim()),
        );
    }
    let mut done = Vec::new();
    for (program, hook) in LSM_PROBES {
        let r = ebpf
            .program_mut(program)
            .ok_or(LoadError::MissingProgram(program))
            .and_then(|p| {
                let wrap = |source| LoadError::Program { program, source };
                let lsm: &mut Lsm = p.try_into().map_err(wrap)?;
                lsm.load(hook, btf).map_err(wrap)?;
                lsm.attach().map_err(wrap)?;
                Ok(())
            });
        match r {
            Ok(()) => done.push(*program),
            Err(e) => {
                // All or nothing: unload what did attach.
                for p in &done {
                    if let Some(prog) = ebpf.program_mut(p)
                        && let Ok(lsm) = <&mut Lsm>::try_from(prog)
                    {
                        let _ = lsm.unload();
                    }
                }
                return (
                    Mechanism::Kill,
                    format!("BPF-LSM program `{program}` refused: {}", error_chain(&e)),
                );
            }
        }
    }
    attached.extend(done);
    (
        Mechanism::Lsm,
        format!("`bpf` is an active LSM ({})", list.trim()),
    )
}

fn attach(ebpf: &mut Ebpf, btf: &aya::Btf, probe: &Probe) -> Result<(), LoadError> {
    let prog = ebpf
        .program_mut(probe.program)
        .ok_or(LoadError::MissingProgram(probe.program))?;
    let wrap = |source| LoadError::Program {
        program: probe.program,
        source,
    };
    match probe.hook {
        Hook::TracePoint { category, name } => {
            let tp: &mut TracePoint = prog.try_into().map_err(wrap)?;
            tp.load().map_err(wrap)?;
            tp.attach(category, name).map_err(wrap)?;
        }
        Hook::BtfTracePoint { name } => {
            let tp: &mut BtfTracePoint = prog.try_into().map_err(wrap)?;
            tp.load(name, btf).map_err(wrap)?;
            tp.attach().map_err(wrap)?;
        }
        Hook::SyscallTracePoint { name, exit } => {
            let tp: &mut TracePoint = prog.try_into().map_err(wrap)?;
            tp.load().map_err(wrap)?;
            let dir = if exit { "exit" } else { "enter" };
            tp.attach("syscalls", &format!("sys_{dir}_{name}"))
                .map_err(wrap)?;
        }
        Hook::Syscall { name, exit: false } => {
            let p: &mut FEntry = prog.try_into().map_err(wrap)?;
            p.load(&format!("{SYSCALL_PREFIX}{name}"), btf)
                .map_err(wrap)?;
            p.attach().map_err(wrap)?;
        }
        Hook::Syscall { name, exit: true } => {
            let p: &mut FExit = prog.try_into().map_err(wrap)?;
            p.load(&format!("{SYSCALL_PREFIX}{name}"), btf)
                .map_err(wrap)?;
            p.attach().map_err(wrap)?;
        }
    }
    Ok(())
}

/// The key the kernel matches a variable name on: the first 8 bytes of
/// `NAME=` (fewer, with the `=`, for a short name), and their mask.
pub fn env_name_key(name: &str) -> EnvName {
    let mut bytes = [0u8; 8];
    let with_eq = format!("{name}=");
    let n = with_eq.len().min(8);
    bytes[..n].copy_from_slice(&with_eq.as_bytes()[..n]);
    let mask = if n == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    };
    EnvName {
        prefix: u64::from_le_bytes(bytes),
        mask,
    }
}

/// Fills `ENV_NAMES`; names beyond its size are dropped with a warning.
fn set_env_names(ebpf: &mut Ebpf, names: &[String]) -> Result<(), LoadError> {
    let Some(map) = ebpf.map_mut(ENV_NAMES_MAP) else {
        return Ok(());
    };
    let write = |source| LoadError::MapWrite {
        name: ENV_NAMES_MAP,
        source,
    };
    let mut arr: Array<_, EnvName> = Array::try_from(map).map_err(write)?;
    if names.len() > ENV_NAMES {
        warn!(
            dropped = ?&names[ENV_NAMES..],
            "more environment names than the kernel matches ({ENV_NAMES})"
        );
    }
    for (i, n) in names.iter().take(ENV_NAMES).enumerate() {
        arr.set(i as u32, env_name_key(n), 0).map_err(write)?;
    }
    Ok(())
}

/// The ids of every program, map and link of the object, as `bpf()` names
/// them: reaching for one by id is reaching for the agent's instruments.
/// An id the kernel will not tell is skipped (logged).
fn own_objects(ebpf: &Ebpf) -> Vec<ObjectKey> {
    use agent_common::object_kind;
    let mut out = Vec::new();
    let mut progs = Vec::new();
    for (name, prog) in ebpf.programs() {
        match prog.info() {
            Ok(i) => {
                progs.push(i.id());
                out.push(ObjectKey {
                    kind: object_kind::PROG,
                    id: i.id(),
                });
            }
            // A program that is not loaded (an unused fallback) has no id.
            Err(e) => tracing::debug!(program = name, error = %error_chain(&e), "no program id"),
        }
    }
    for (name, map) in ebpf.maps() {
        let info = match map {
            Map::Array(m)
            | Map::HashMap(m)
            | Map::LruHashMap(m)
            | Map::PerCpuArray(m)
            | Map::PerCpuHashMap(m)
            | Map::PerCpuLruHashMap(m)
            | Map::RingBuf(m) => m.info(),
            _ => continue,
        };
        match info {
            Ok(i) => out.push(ObjectKey {
                kind: object_kind::MAP,
                id: i.id(),
            }),
            Err(e) => {
                warn!(map = name, error = %error_chain(&e), "no map id: bpf() on it is not watched")
            }
        }
    }
    for link in aya::programs::loaded_links().flatten() {
        if progs.contains(&link.program_id()) {
            out.push(ObjectKey {
                kind: object_kind::LINK,
                id: link.id(),
            });
        }
    }
    out
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK. Failing to raise
/// it is harmless on newer kernels (memcg accounting), so it is only logged.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer to a local.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const rlim) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "setrlimit(RLIMIT_MEMLOCK) failed");
    }
}
