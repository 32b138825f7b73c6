//! One process reaching into another: ptrace, process_vm_readv/writev,
//! opens of /proc/<pid>/mem and /proc/<pid>/environ, perf_event_open on
//! another pid, bpf program loads, pidfd_getfd. Each hook exists twice:
//! as an fentry program on the syscall function (`__x64_sys_*`, plus fexit
//! where the result matters), which the agent prefers, and as a
//! `syscalls/sys_enter_*` (`sys_exit_*`) tracepoint, its fallback where the
//! kernel refuses BPF trampolines. The tracepoints cost every process on
//! the host: enabling one sends every syscall through the syscall-tracing
//! slow path, while a trampoline costs only the hooked syscall.
//!
//! Opens of a process's `mem` and `environ` are seen twice over: by the
//! path at the open's entry (which also sees attempts that fail), and by
//! what was opened at its exit, which catches every other way to the same
//! file (relative paths, dirfds, symlinks, `/proc/<pid>/task/<tid>/`).
//! io_uring opens are judged the same way, by the opened file, when their
//! completion is posted.
//!
//! Flood control happens here, not in userspace: high-rate accesses
//! (PEEK/POKE and register requests, process_vm_*, perf opens) send their
//! first occurrence per (actor, target, kind, request) at once and only count
//! the rest in `AGG`, which the agent reports as aggregates.

use agent_common::{
    AccessEvent, AccessKind, AggKey, Decision, EventKind, OFFSET_ABSENT, access_flags,
    enforce_mode, ops,
};
use aya_ebpf::{
    EbpfContext as _,
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_probe_read_user,
        generated::{
            bpf_get_current_cgroup_id, bpf_get_current_task, bpf_ktime_get_boot_ns, bpf_send_signal,
        },
    },
    macros::{btf_tracepoint, fentry, fexit, tracepoint},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, TracePointContext},
};

use crate::{
    enforce,
    kernel::{
        ACCESS_SCRATCH, AGG, EVENTS, PENDING, count_lost, current_comm, current_pid_tgid, is_agent,
        offsets, read_creds, read_field, read_ns, read_or_zero, sys_arg_offset, tp_sys_offsets,
        uring_offsets, wake_if_idle,
    },
};

const PTRACE_TRACEME: u64 = 0;
const PTRACE_ATTACH: u64 = 16;
const PTRACE_SEIZE: u64 = 0x4206;
const BPF_PROG_LOAD: u64 = 5;
const O_ACCMODE: u64 = 3;
const O_PATH: u32 = 0o10_000_000;
const SIGKILL: u32 = 9;

/// A syscall entry hook twice, on one body: as the `sys_enter_*`
/// tracepoint `$tp` and as the fentry program `$fentry`.
macro_rules! syscall_entry {
    ($body:ident, $tp:ident = $tp_name:literal, $fentry:ident) => {
        #[tracepoint(category = "syscalls", name = $tp_name)]
        pub(crate) fn $tp(ctx: TracePointContext) -> u32 {
            $body(Args::record(&ctx))
        }

        #[fentry]
        pub(crate) fn $fentry(ctx: FEntryContext) -> u32 {
            $body(Args::regs(&ctx))
        }
    };
}

/// A syscall exit hook twice, on one body taking the return value (`None`
/// when the tracepoint record could not be read): as the `sys_exit_*`
/// tracepoint `$tp` and as the fexit program `$fexit`.
macro_rules! syscall_exit {
    ($body:ident, $tp:ident = $tp_name:literal, $fexit:ident) => {
        #[tracepoint(category = "syscalls", name = $tp_name)]
        pub(crate) fn $tp(ctx: TracePointContext) -> u32 {
            $body(exit_ret(&ctx));
            0
        }

        /// The return value is the argument after the `pt_regs` pointer.
        #[fexit]
        pub(crate) fn $fexit(ctx: FExitContext) -> u32 {
            $body(Some(ctx.arg::<i64>(1)));
            0
        }
    };
}

/// Where the hooked syscall's arguments are.
#[derive(Clone, Copy)]
enum Args {
    /// A `sys_enter_*` tracepoint record.
    Record(*const u8),
    /// The `struct pt_regs` a syscall function gets as its only parameter.
    Regs(*const u8),
}

impl Args {
    #[inline(always)]
    fn record(ctx: &TracePointContext) -> Self {
        Self::Record(ctx.as_ptr().cast::<u8>())
    }

    #[inline(always)]
    fn regs(ctx: &FEntryContext) -> Self {
        Self::Regs(ctx.arg::<*const u8>(0))
    }

    /// Syscall argument `i` (0..6).
    #[inline(always)]
    fn arg(self, i: usize) -> Result<u64, i64> {
        match self {
            Self::Record(p) => {
                let base = tp_sys_offsets().0;
                if base == OFFSET_ABSENT || i >= 6 {
                    return Err(-1);
                }
                read_field::<u64>(p, base + 8 * i as u32)
            }
            Self::Regs(p) => read_field::<u64>(p, sys_arg_offset(i)),
        }
    }
}

/// An access event for the current task with the actor filled in, built
/// in per-CPU scratch space: the BPF stack (512 bytes) cannot hold it next
/// to the hooks' own locals.
#[inline(always)]
fn new_event(
    pid: u32,
    tgid: u32,
    access: AccessKind,
    target_pid: u32,
) -> Option<&'static mut AccessEvent> {
    let p = ACCESS_SCRATCH.get_ptr_mut(0)?;
    let off = offsets();
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: a per-CPU map value, exclusive to this CPU while the program runs.
    let ev = unsafe { &mut *p };
    ev.header.kind = EventKind::Access as u32;
    ev.header.flags = 0;
    // SAFETY: helper without preconditions.
    ev.header.ktime_ns = unsafe { bpf_ktime_get_boot_ns() };
    ev.header.pid = pid;
    ev.header.tgid = tgid;
    ev.header.start_ns = read_or_zero::<u64>(task, off.task_start_boottime);
    ev.access = access as u32;
    ev.target_pid = target_pid;
    ev.request = 0;
    ev.arg = 0;
    ev.ret = 0;
    ev.count = 1;
    ev.target_host_pid = 0;
    ev.flags2 = 0;
    let parent = read_or_zero::<*const u8>(task, off.task_real_parent);
    ev.ppid = read_or_zero::<u32>(parent, off.task_tgid);
    ev.creds = read_creds(task, &off, &mut ev.header.flags);
    ev.ns = read_ns(task, &off);
    // SAFETY: helper without preconditions.
    ev.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    ev.comm = current_comm();
    ev.name = [0; 16];
    ev.rule = 0;
    ev.decision = Decision::None as u32;
    Some(ev)
}

/// An event for a kernel denial by the current task.
#[inline(always)]
pub(crate) fn deny_event(
    kind: AccessKind,
    target: u32,
    slot: u32,
    d: Decision,
) -> Option<&'static mut AccessEvent> {
    let (pid, tgid) = current_pid_tgid();
    let ev = new_event(pid, tgid, kind, target)?;
    ev.rule = slot;
    ev.decision = d as u32;
    Some(ev)
}

/// Reports a denial: the first per (actor, target, kind) at once, repeats
/// (a tool retrying in a loop) counted.
#[inline(always)]
pub(crate) fn report_denial(ev: Option<&'static mut AccessEvent>) {
    match ev {
        Some(ev) => aggregate(ev),
        None => count_lost(EventKind::Access),
    }
}

/// Fallback for rules on the actor alone (perf, bpf).
#[inline(always)]
fn kill_fallback_actor(ev: &mut AccessEvent, op: u32) -> bool {
    if enforce::mode() != enforce_mode::KILL {
        return false;
    }
    match enforce::decide_actor(op) {
        enforce::NO_SLOT => false,
        slot => kill_actor(ev, slot),
    }
}

/// Kills the current process and reports it with the deciding rule.
#[inline(always)]
fn kill_actor(ev: &mut AccessEvent, slot: u32) -> bool {
    mark_killed(ev, slot);
    emit(ev);
    true
}

/// Kills the current process; `ev` says so, for the caller to send.
#[inline(always)]
fn mark_killed(ev: &mut AccessEvent, slot: u32) {
    // SAFETY: helper without preconditions; signals the current process.
    unsafe { bpf_send_signal(SIGKILL) };
    ev.rule = slot;
    ev.decision = Decision::Killed as u32;
}

/// Fallback enforcement where BPF-LSM is unavailable: the actor is killed at
/// the syscall's entry (an open found at its exit: as it returns), so no
/// result of the syscall ever reaches it. The
/// syscall itself still runs (a tracepoint cannot cancel it): an attach may
/// stop the target before the tracer dies and is detached, which is why the
/// agent resumes targets its kills left stopped.
#[inline(always)]
fn kill_fallback(ev: &mut AccessEvent, target_tgid: u32, op: u32) -> bool {
    kill_unsent(ev, target_tgid, op) && {
        emit(ev);
        true
    }
}

/// [`kill_fallback`] without sending the event.
#[inline(always)]
fn kill_unsent(ev: &mut AccessEvent, target_tgid: u32, op: u32) -> bool {
    if enforce::mode() != enforce_mode::KILL {
        return false;
    }
    match enforce::decide_target(core::ptr::null(), target_tgid, op) {
        enforce::NO_SLOT => false,
        slot => {
            mark_killed(ev, slot);
            true
        }
    }
}

#[inline(always)]
fn emit(ev: &AccessEvent) {
    if EVENTS.output::<AccessEvent>(ev, wake_if_idle()).is_err() {
        count_lost(EventKind::Access);
    }
}

/// Counts a repeat of an already reported access; reports the first at once.
#[inline(always)]
pub(crate) fn aggregate(ev: &AccessEvent) {
    let key = AggKey {
        actor_tgid: ev.header.tgid,
        target_pid: ev.target_pid,
        access: ev.access,
        _pad: 0,
        request: ev.request,
    };
    if let Some(v) = AGG.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a per-CPU map value, valid while the
        // program runs; per-CPU slots need no atomics.
        unsafe { *v += 1 };
        return;
    }
    if AGG.insert(key, 0, u64::from(BPF_NOEXIST)).is_ok() {
        emit(ev);
    } else if let Some(v) = AGG.get_ptr_mut(key) {
        // Another CPU inserted it first: this call is a repeat.
        // SAFETY: as above.
        unsafe { *v += 1 };
    }
}

/// Parks an event until the syscall returns, so the record carries the result.
#[inline(always)]
fn park(pid: u32, ev: &AccessEvent) {
    if PENDING.insert(pid, ev, 0).is_err() {
        emit(ev); // better without a result than not at all
    }
}

#[inline(always)]
fn ptrace_sys_enter_ptrace_body(a: Args) -> u32 {
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    let (Ok(req), Ok(target)) = (a.arg(0), a.arg(1)) else {
        count_lost(EventKind::Access);
        return 0;
    };
    // Attaches are sent with their result; every other request (memory,
    // registers, control) is sent once per tracer, target and request, then
    // counted: `strace -f` issues one or more per syscall of the tracee.
    let attach = matches!(req, PTRACE_TRACEME | PTRACE_ATTACH | PTRACE_SEIZE);
    let target = if req == PTRACE_TRACEME {
        0
    } else {
        target as u32
    };
    let Some(ev) = new_event(pid, tgid, AccessKind::Ptrace, target) else {
        count_lost(EventKind::Access);
        return 0;
    };
    ev.request = req;
    ev.arg = a.arg(2).unwrap_or(0);
    let (subject, op) = if req == PTRACE_TRACEME {
        (tgid, ops::TRACEME)
    } else {
        (target, ops::ATTACH)
    };
    if kill_fallback(ev, subject, op) {
        return 0;
    }
    if attach {
        park(pid, ev);
    } else {
        aggregate(ev);
    }
    0
}

syscall_entry!(
    ptrace_sys_enter_ptrace_body,
    ptrace_sys_enter_ptrace = "sys_enter_ptrace",
    fentry_ptrace
);

/// The return value in a `sys_exit_*` tracepoint record; `None` when the
/// record cannot be read (then nothing may be judged by it: a 0 would
/// name descriptor 0).
#[inline(always)]
fn exit_ret(ctx: &TracePointContext) -> Option<i64> {
    // SAFETY: the offset comes from the tracepoint's format file.
    unsafe { ctx.read_at::<i64>(tp_sys_offsets().1 as usize) }.ok()
}

/// Sends the parked event of this thread with the syscall's return value
/// (without one when it is unknown), after `amend` has had its say;
/// false when nothing was parked.
#[inline(always)]
fn unpark(ret: Option<i64>, amend: impl FnOnce(&mut AccessEvent)) -> bool {
    let (pid, _) = current_pid_tgid();
    let Some(ev) = PENDING.get_ptr_mut(pid) else {
        return false;
    };
    // SAFETY: a map value pointer, valid while the program runs; only this
    // thread parks under its own id.
    let ev = unsafe { &mut *ev };
    if let Some(ret) = ret {
        ev.ret = ret;
        ev.flags2 |= access_flags::HAS_RET;
    }
    amend(ev);
    emit(ev);
    let _ = PENDING.remove(pid);
    true
}

#[inline(always)]
fn send_parked(ret: Option<i64>) {
    unpark(ret, |_| ());
}

syscall_exit!(
    send_parked,
    ptrace_sys_exit_ptrace = "sys_exit_ptrace",
    fexit_ptrace
);
syscall_exit!(send_parked, bpf_sys_exit_bpf = "sys_exit_bpf", fexit_bpf);

#[inline(always)]
fn vm_access(a: Args, kind: AccessKind) {
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return;
    }
    let Ok(target) = a.arg(0) else {
        count_lost(EventKind::Access);
        return;
    };
    let Some(ev) = new_event(pid, tgid, kind, target as u32) else {
        count_lost(EventKind::Access);
        return;
    };
    if !kill_fallback(ev, target as u32, ops::ATTACH) {
        aggregate(ev);
    }
}

#[inline(always)]
fn mem_sys_enter_process_vm_readv_body(a: Args) -> u32 {
    vm_access(a, AccessKind::VmReadv);
    0
}

syscall_entry!(
    mem_sys_enter_process_vm_readv_body,
    mem_sys_enter_process_vm_readv = "sys_enter_process_vm_readv",
    fentry_process_vm_readv
);

#[inline(always)]
fn mem_sys_enter_process_vm_writev_body(a: Args) -> u32 {
    vm_access(a, AccessKind::VmWritev);
    0
}

syscall_entry!(
    mem_sys_enter_process_vm_writev_body,
    mem_sys_enter_process_vm_writev = "sys_enter_process_vm_writev",
    fentry_process_vm_writev
);

/// Parses `/proc/<digits>/mem` or `/proc/<digits>/environ` (NUL-terminated
/// in `p`). Returns the access kind and the pid.
#[inline(always)]
fn match_proc_path(p: &[u8; 32]) -> Option<(AccessKind, u32)> {
    if p[0] != b'/' || p[1] != b'p' || p[2] != b'r' || p[3] != b'o' || p[4] != b'c' || p[5] != b'/'
    {
        return None;
    }
    let mut pid: u32 = 0;
    let mut i = 6;
    while i < 17 {
        let c = p[i];
        if c.is_ascii_digit() {
            pid = pid.wrapping_mul(10).wrapping_add(u32::from(c - b'0'));
            i += 1;
        } else {
            break;
        }
    }
    if i == 6 || i >= 17 || p[i] != b'/' {
        return None;
    }
    let rest = i + 1;
    if rest + 4 <= 32
        && p[rest] == b'm'
        && p[rest + 1] == b'e'
        && p[rest + 2] == b'm'
        && p[rest + 3] == 0
    {
        return Some((AccessKind::ProcMem, pid));
    }
    if rest + 8 <= 32
        && p[rest] == b'e'
        && p[rest + 1] == b'n'
        && p[rest + 2] == b'v'
        && p[rest + 3] == b'i'
        && p[rest + 4] == b'r'
        && p[rest + 5] == b'o'
        && p[rest + 6] == b'n'
        && p[rest + 7] == 0
    {
        return Some((AccessKind::ProcEnviron, pid));
    }
    None
}

/// Shared by open, openat and openat2: checks the path cheaply (a 32-byte
/// copy and a prefix test) since every open on the host passes here.
#[inline(always)]
fn proc_open(path: u64, flags: u64) {
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return;
    }
    let mut buf = [0u8; 32];
    // SAFETY: the helper bounds the copy by the buffer and checks the address.
    let n = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user_str(
            buf.as_mut_ptr().cast(),
            32,
            path as *const core::ffi::c_void,
        )
    };
    if n < 10 {
        return;
    }
    let Some((kind, target)) = match_proc_path(&buf) else {
        return;
    };
    let Some(ev) = new_event(pid, tgid, kind, target) else {
        count_lost(EventKind::Access);
        return;
    };
    ev.request = flags & O_ACCMODE;
    // /proc/<pid>/mem is a PTRACE_MODE_ATTACH access; environ only READ.
    // A process may read its own memory, as the kernel allows.
    if kind == AccessKind::ProcMem && target != tgid {
        kill_unsent(ev, target, ops::ATTACH);
    }
    // Sent at the exit with the result; the exit then knows this open was
    // reported and does not report the file a second time.
    park(pid, ev);
}

/// procfs's `s_magic`.
const PROC_SUPER_MAGIC: u64 = 0x9fa0;

/// The exit of open, openat and openat2. An open the entry hook knew by
/// its path was parked and goes out now, with its result. Any other open
/// that succeeded is judged by what it opened: a procfs file named `mem`
/// or `environ` that belongs to a process is the same access reached
/// another way (a relative path, a dirfd, a symlink, `/proc/<pid>/task/
/// <tid>/`, `/proc/self`), which no path test can catch. Such an open
/// that failed is not seen.
#[inline(always)]
fn proc_open_exit(ret: Option<i64>) {
    let (pid, tgid) = current_pid_tgid();
    let opened = match ret {
        Some(fd) if fd >= 0 && !is_agent(tgid) => {
            opened_proc_file(&offsets(), fd as u32).map(|o| (o, fd))
        }
        _ => None,
    };
    let parked = unpark(ret, |ev| {
        let parked_open =
            ev.access == AccessKind::ProcMem as u32 || ev.access == AccessKind::ProcEnviron as u32;
        if let (true, Some(((kind, target, _), _))) = (parked_open, opened) {
            // The file says whose it is: the number in the path may have
            // been a thread's, which the entry's rule lookup (by process)
            // did not find.
            ev.target_host_pid = target;
            ev.flags2 |= access_flags::TARGET_RESOLVED;
            if kind == AccessKind::ProcMem && target != tgid && ev.decision == Decision::None as u32
            {
                kill_unsent(ev, target, ops::ATTACH);
            }
        }
    });
    if parked {
        return;
    }
    if let Some((file, fd)) = opened {
        report_opened(pid, tgid, file, fd, 0);
    }
}

/// Sends (or, under the kill fallback, acts on) a successful open of
/// another process's `mem` or `environ` as descriptor `fd`.
#[inline(always)]
fn report_opened(pid: u32, tgid: u32, file: (AccessKind, u32, u64), fd: i64, flags: u32) {
    let (kind, target, accmode) = file;
    // A process may read its own memory, as the kernel allows.
    if target == tgid {
        return;
    }
    let Some(ev) = new_event(pid, tgid, kind, target) else {
        count_lost(EventKind::Access);
        return;
    };
    ev.request = accmode;
    ev.ret = fd;
    ev.target_host_pid = target;
    ev.flags2 = access_flags::HAS_RET | access_flags::TARGET_RESOLVED | flags;
    // Killed as the open returns. Like the kill at entry, this is after
    // the fact: the descriptor exists by then, and another thread of the
    // actor that guesses it could use it before the kill lands. BPF-LSM
    // refuses the open itself.
    if kind == AccessKind::ProcMem && kill_fallback(ev, target, ops::ATTACH) {
        return;
    }
    emit(ev);
}

const IORING_OP_OPENAT: u8 = 18;
const IORING_OP_OPENAT2: u8 = 28;

/// Every io_uring completion: an IORING_OP_OPENAT/OPENAT2 request that
/// gave a descriptor is judged like an open syscall at its exit. The
/// completion runs in a thread of the submitting process (the submitter,
/// its SQPOLL thread or an io-wq worker), which shares its descriptor
/// table. Opens into a fixed file slot give no descriptor and are not
/// seen. The second argument is the request (null for a completion that
/// has none).
#[btf_tracepoint(function = "io_uring_complete")]
pub(crate) fn uring_io_uring_complete(ctx: BtfTracePointContext) -> u32 {
    uring_open_complete(ctx.arg(1));
    0
}

#[inline(always)]
fn uring_open_complete(req: *const u8) {
    let (opcode_at, res_at) = uring_offsets();
    if opcode_at == OFFSET_ABSENT || res_at == OFFSET_ABSENT || req.is_null() {
        return;
    }
    // Every other completion on the host ends here.
    match read_field::<u8>(req, opcode_at) {
        Ok(IORING_OP_OPENAT | IORING_OP_OPENAT2) => {}
        _ => return,
    }
    let Ok(res) = read_field::<i32>(req, res_at) else {
        return;
    };
    if res < 0 {
        return;
    }
    let off = offsets();
    if off.io_kiocb_cmd != OFFSET_ABSENT && off.io_open_file_slot != OFFSET_ABSENT {
        let slot = read_field::<u32>(req, off.io_kiocb_cmd + off.io_open_file_slot);
        if slot != Ok(0) {
            // A fixed slot (or unreadable): `res` is no descriptor.
            return;
        }
    }
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return;
    }
    if let Some(file) = opened_proc_file(&off, res as u32) {
        report_opened(pid, tgid, file, i64::from(res), access_flags::IO_URING);
    }
}

/// Whether descriptor `fd` of the current task is a process's `mem` or
/// `environ` file: the access kind, the process's host tgid and the
/// open's access mode.
#[inline(always)]
fn opened_proc_file(off: &agent_common::KernelOffsets, fd: u32) -> Option<(AccessKind, u32, u64)> {
    if off.proc_inode_vfs_inode == OFFSET_ABSENT || off.task_pid_links == OFFSET_ABSENT {
        return None;
    }
    let file = fd_file(off, fd)?;
    let dentry = read_field::<*const u8>(file, off.file_f_path_dentry).ok()?;
    // Every other open on the host ends at one of these two tests.
    let len = read_field::<u32>(dentry, off.dentry_name_len).ok()?;
    if len != 3 && len != 7 {
        return None;
    }
    let name_at = read_field::<*const u8>(dentry, off.dentry_name).ok()?;
    // Short names live inline in the dentry, which has room for 8 bytes.
    let name = read_field::<[u8; 8]>(name_at, 0).ok()?;
    let kind = if len == 3 && name[..4] == *b"mem\0" {
        AccessKind::ProcMem
    } else if len == 7 && name == *b"environ\0" {
        AccessKind::ProcEnviron
    } else {
        return None;
    };
    let sb = read_field::<*const u8>(dentry, off.dentry_d_sb).ok()?;
    if read_field::<u64>(sb, off.sb_s_magic).ok()? != PROC_SUPER_MAGIC {
        return None;
    }
    let flags = read_field::<u32>(file, off.file_f_flags).ok()?;
    if flags & O_PATH != 0 {
        // A handle on the file that cannot read or write it.
        return None;
    }
    let inode = read_field::<*const u8>(file, off.file_f_inode).ok()?;
    let proc_inode = inode.wrapping_sub(off.proc_inode_vfs_inode as usize);
    let pid = read_field::<*const u8>(proc_inode, off.proc_inode_pid).ok()?;
    // The pid's task (a thread, under /proc/<pid>/task/) and its process;
    // none when it has exited.
    let link = read_field::<*const u8>(pid, off.pid_tasks).ok()?;
    if link.is_null() {
        return None;
    }
    let task = link.wrapping_sub(off.task_pid_links as usize);
    let tgid = read_field::<u32>(task, off.task_tgid).ok()?;
    Some((kind, tgid, u64::from(flags) & O_ACCMODE))
}

syscall_exit!(
    proc_open_exit,
    mem_sys_exit_openat = "sys_exit_openat",
    fexit_openat
);
syscall_exit!(
    proc_open_exit,
    mem_sys_exit_open = "sys_exit_open",
    fexit_open
);
syscall_exit!(
    proc_open_exit,
    mem_sys_exit_openat2 = "sys_exit_openat2",
    fexit_openat2
);

#[inline(always)]
fn mem_sys_enter_openat_body(a: Args) -> u32 {
    if let (Ok(path), Ok(flags)) = (a.arg(1), a.arg(2)) {
        proc_open(path, flags);
    }
    0
}

syscall_entry!(
    mem_sys_enter_openat_body,
    mem_sys_enter_openat = "sys_enter_openat",
    fentry_openat
);

#[inline(always)]
fn mem_sys_enter_open_body(a: Args) -> u32 {
    if let (Ok(path), Ok(flags)) = (a.arg(0), a.arg(1)) {
        proc_open(path, flags);
    }
    0
}

syscall_entry!(
    mem_sys_enter_open_body,
    mem_sys_enter_open = "sys_enter_open",
    fentry_open
);

#[inline(always)]
fn mem_sys_enter_openat2_body(a: Args) -> u32 {
    if let (Ok(path), Ok(how)) = (a.arg(1), a.arg(2)) {
        // open_how.flags is the first u64 (UAPI).
        // SAFETY: the helper checks the user address.
        let flags = unsafe { bpf_probe_read_user::<u64>(how as *const u64) }.unwrap_or(0);
        proc_open(path, flags);
    }
    0
}

syscall_entry!(
    mem_sys_enter_openat2_body,
    mem_sys_enter_openat2 = "sys_enter_openat2",
    fentry_openat2
);

#[inline(always)]
fn perf_sys_enter_perf_event_open_body(a: Args) -> u32 {
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    let (Ok(attr), Ok(target), Ok(cpu)) = (a.arg(0), a.arg(1), a.arg(2)) else {
        count_lost(EventKind::Access);
        return 0;
    };
    let target = target as i32;
    // pid 0 is the caller itself; pid -1 with a cpu is system-wide.
    if target == 0 {
        return 0;
    }
    let Some(ev) = new_event(
        pid,
        tgid,
        AccessKind::PerfOpen,
        if target > 0 { target as u32 } else { 0 },
    ) else {
        count_lost(EventKind::Access);
        return 0;
    };
    // SAFETY: the helper checks the user address; perf_event_attr.type is the first u32.
    ev.request =
        u64::from(unsafe { bpf_probe_read_user::<u32>(attr as *const u32) }.unwrap_or(u32::MAX));
    ev.arg = u64::from(cpu as u32);
    if !kill_fallback_actor(ev, ops::PERF) {
        aggregate(ev);
    }
    0
}

syscall_entry!(
    perf_sys_enter_perf_event_open_body,
    perf_sys_enter_perf_event_open = "sys_enter_perf_event_open",
    fentry_perf_event_open
);

#[inline(always)]
fn bpf_sys_enter_bpf_body(a: Args) -> u32 {
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    let (Ok(cmd), Ok(attr)) = (a.arg(0), a.arg(1)) else {
        count_lost(EventKind::Access);
        return 0;
    };
    if cmd != BPF_PROG_LOAD {
        return 0;
    }
    let Some(ev) = new_event(pid, tgid, AccessKind::BpfProgLoad, 0) else {
        count_lost(EventKind::Access);
        return 0;
    };
    // union bpf_attr (UAPI) for BPF_PROG_LOAD: prog_type at 0, prog_name[16] at 48.
    // SAFETY: the helper checks the user address.
    ev.request =
        u64::from(unsafe { bpf_probe_read_user::<u32>(attr as *const u32) }.unwrap_or(u32::MAX));
    // SAFETY: as above.
    ev.name = unsafe { bpf_probe_read_user::<[u8; 16]>((attr + 48) as *const [u8; 16]) }
        .unwrap_or([0; 16]);
    if !kill_fallback_actor(ev, ops::BPF) {
        park(pid, ev);
    }
    0
}

syscall_entry!(
    bpf_sys_enter_bpf_body,
    bpf_sys_enter_bpf = "sys_enter_bpf",
    fentry_bpf
);

#[inline(always)]
fn mem_sys_enter_pidfd_getfd_body(a: Args) -> u32 {
    let (pid, tgid) = current_pid_tgid();
    if is_agent(tgid) {
        return 0;
    }
    let (Ok(pidfd), Ok(targetfd)) = (a.arg(0), a.arg(1)) else {
        count_lost(EventKind::Access);
        return 0;
    };
    let Some(ev) = new_event(pid, tgid, AccessKind::PidfdGetfd, 0) else {
        count_lost(EventKind::Access);
        return 0;
    };
    ev.arg = targetfd;
    if let Some(host_pid) = pidfd_to_pid(pidfd as u32) {
        ev.target_pid = host_pid;
        ev.target_host_pid = host_pid;
        ev.flags2 |= access_flags::TARGET_RESOLVED;
        if kill_fallback(ev, host_pid, ops::ATTACH) {
            return 0;
        }
    }
    emit(ev);
    0
}

syscall_entry!(
    mem_sys_enter_pidfd_getfd_body,
    mem_sys_enter_pidfd_getfd = "sys_enter_pidfd_getfd",
    fentry_pidfd_getfd
);

/// current->files->fdt->fd[fd]: the current task's open file `fd`.
#[inline(always)]
fn fd_file(off: &agent_common::KernelOffsets, fd: u32) -> Option<*const u8> {
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let files = read_field::<*const u8>(task, off.task_files).ok()?;
    let fdt = read_field::<*const u8>(files, off.files_fdt).ok()?;
    let max = read_field::<u32>(fdt, off.fdt_max_fds).ok()?;
    if fd >= max {
        return None;
    }
    let fds = read_field::<*const u8>(fdt, off.fdt_fd).ok()?;
    let file = read_field::<*const u8>(fds, fd.checked_mul(8)?).ok()?;
    (!file.is_null()).then_some(file)
}

/// current->files->fdt->fd[pidfd]->private_data is the pidfd's `struct pid`;
/// its level-0 number is the host pid.
#[inline(always)]
fn pidfd_to_pid(fd: u32) -> Option<u32> {
    let off = offsets();
    let file = fd_file(&off, fd)?;
    let pid = if off.pidfd_in_inode == 1 {
        let inode = read_field::<*const u8>(file, off.file_f_inode).ok()?;
        read_field::<*const u8>(inode, off.inode_i_private).ok()?
    } else {
        read_field::<*const u8>(file, off.file_private_data).ok()?
    };
    if off.pid_numbers == agent_common::OFFSET_ABSENT {
        return None;
    }
    read_field::<u32>(pid, off.pid_numbers + off.upid_nr).ok()
}
