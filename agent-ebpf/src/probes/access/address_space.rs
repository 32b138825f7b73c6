//! The last point before another process's memory is read or written,
//! whatever way the reader got there: the reader locking the target's
//! address space (`mmap_lock_start_locking`), which every read or write
//! of `/proc/<pid>/mem` does before a byte moves.
//!
//! The open hooks judge an open when they see it; this one judges the
//! access when it happens, so a file opened where no hook looks still
//! meets a decision before it is used: an io_uring open into a fixed file
//! slot, one whose completion was skipped (IOSQE_CQE_SKIP_SUCCESS) or
//! overflowed, on a task-deferred or polled ring, a descriptor passed
//! over a socket or inherited. io_uring runs every read of a procfs file
//! in one of its worker threads (such files cannot be read without
//! blocking), whose current request names the file.
//!
//! A kill sent here lands before the copy: the kernel checks for a fatal
//! signal before it pins each page of the target, so the read or write
//! fails with nothing moved. ptrace and process_vm_* lock the target too:
//! their own hooks judge them and record them with their result, but a
//! kill their entry decided on is sent here, before the copy, so neither a
//! write (POKEDATA, process_vm_writev) lands in the target nor a read
//! lands in memory the actor shares with an accomplice.
//!
//! The target is found from the address space's owner (CONFIG_MEMCG); a
//! kernel without it has this check off, and the open hooks alone decide.

use agent_common::{AccessKind, EventKind, KernelOffsets, OFFSET_ABSENT, Protected, access_flags};
use aya_ebpf::{
    helpers::generated::{bpf_get_current_task, bpf_get_current_task_btf, bpf_task_pt_regs},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use super::{
    event::{aggregate, emit, new_event},
    fallback::{denied, hooks_enforce, kill_before_copy, mark_killed, op_of},
    procfs::{fd_file, proc_file},
};
use crate::{
    enforce::{NO_SLOT, identity, protect},
    ring::count_lost,
    task::{current_pid_tgid, is_agent, lock_offsets, offsets, read_field, read_or_zero},
};

/// `PF_IO_WORKER`: an io_uring worker (or SQPOLL) thread of a process.
const PF_IO_WORKER: u32 = 0x10;
/// `PF_KTHREAD`: a kernel thread (reclaim, compaction, khugepaged).
const PF_KTHREAD: u32 = 0x0020_0000;

// Another process's memory is only ever read or written under its map's
// read lock (access_remote_vm for /proc/<pid>/mem, environ and ptrace's
// peeks and pokes; process_vm_readv and _writev). A write lock is a map
// being changed: mmap, munmap, brk, exec, fork, about two thirds of the
// locks on a host running new programs, passed over before any helper
// runs. Where `write` is depends on the kernel: (mm, write) on newer
// ones (6.18), (mm, memcg_path, write) on older ones (6.1). One program per
// layout, each reading its argument at a constant place, and the loader
// attaches the one the tracepoint's BTF prototype names
// (KernelOffsets::mmap_lock_write_arg): a single program choosing its
// argument at run time compiles into a context read at a computed offset,
// which the verifier refuses.

/// `write` is the second argument: (mm, write).
#[btf_tracepoint(function = "mmap_lock_start_locking")]
pub(crate) fn mem_mmap_lock_start_locking_w1(ctx: BtfTracePointContext) -> u32 {
    if ctx.arg::<u64>(1) != 0 {
        return 0;
    }
    foreign_lock(ctx.arg(0));
    0
}

/// `write` is the third argument: (mm, memcg_path, write).
#[btf_tracepoint(function = "mmap_lock_start_locking")]
pub(crate) fn mem_mmap_lock_start_locking_w2(ctx: BtfTracePointContext) -> u32 {
    if ctx.arg::<u64>(2) != 0 {
        return 0;
    }
    foreign_lock(ctx.arg(0));
    0
}

/// A prototype the loader does not know: every lock is judged.
#[btf_tracepoint(function = "mmap_lock_start_locking")]
pub(crate) fn mem_mmap_lock_start_locking(ctx: BtfTracePointContext) -> u32 {
    foreign_lock(ctx.arg(0));
    0
}

#[inline(always)]
fn foreign_lock(mm: *const u8) {
    let (task_mm, task_flags, mm_owner) = lock_offsets();
    if mm_owner == OFFSET_ABSENT {
        return;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // Nearly every lock on the host is a process locking its own map and
    // ends here.
    if read_or_zero::<*const u8>(task, task_mm) == mm {
        return;
    }
    let flags = read_or_zero::<u32>(task, task_flags);
    if flags & PF_KTHREAD != 0 {
        return;
    }
    let owner = read_or_zero::<*const u8>(mm, mm_owner);
    // An exec building its new map (bprm_mm_init names the execing task
    // the owner): several locks per exec, passed over before the lookups.
    if owner.is_null() || owner == task {
        return;
    }
    // Most foreign maps belong to unprotected processes: with no identity
    // protected either, that is the end of it.
    let known = protect::of_task(owner);
    if known.is_none() && !identity::any() {
        return;
    }
    let (pid, tgid) = current_pid_tgid();
    let off = offsets();
    let owner_tgid = read_or_zero::<u32>(owner, off.task_tgid);
    if is_agent(tgid) || owner_tgid == tgid {
        return;
    }
    // Whether the access writes: known from the syscall; for an io_uring
    // worker, whose request's direction is not read here, from whether the
    // file was opened for writing.
    let (file, uring, writes) = if flags & PF_IO_WORKER != 0 {
        (worker_file(off, task), true, None)
    } else {
        match syscall(off) {
            Syscall::FileRw(fd, writes) => (fd_file(off, fd), false, Some(writes)),
            Syscall::OwnHook => {
                kill_before_copy(known, owner);
                return;
            }
            // The kernel reading a few words for /proc/<pid>/cmdline and
            // the like.
            Syscall::Other => return,
        }
    };
    let kind = match file.and_then(|f| proc_file(off, f)) {
        Some((kind, file_tgid, accmode)) if file_tgid == owner_tgid => Some((kind, accmode)),
        // A procfs file of some other kind (cmdline, maps): no memory.
        Some(_) => return,
        // A worker whose request cannot be read: judged as the memory
        // access it most likely is. A syscall on a descriptor that is no
        // mem or environ file is the kernel reading for its own reasons.
        None if uring => None,
        None => return,
    };
    // A process the map does not hold yet (forked a moment ago) is
    // protected by what it is.
    let Some(p) = identity::known_or_protection_of(known, owner) else {
        return;
    };
    judge(pid, tgid, &p, kind, uring, writes);
}

/// The file of the io_uring request the current worker thread runs.
#[inline(always)]
fn worker_file(off: &KernelOffsets, task: *const u8) -> Option<*const u8> {
    if off.task_worker_private == OFFSET_ABSENT
        || off.io_worker_cur_work == OFFSET_ABSENT
        || off.io_kiocb_work == OFFSET_ABSENT
        || off.io_kiocb_file == OFFSET_ABSENT
    {
        return None;
    }
    let worker = read_field::<*const u8>(task, off.task_worker_private).ok()?;
    let work = read_field::<*const u8>(worker, off.io_worker_cur_work).ok()?;
    if work.is_null() {
        return None;
    }
    let req = work.wrapping_sub(off.io_kiocb_work as usize);
    let file = read_field::<*const u8>(req, off.io_kiocb_file).ok()?;
    (!file.is_null()).then_some(file)
}

/// What the syscall the current task is in does with a foreign map.
enum Syscall {
    /// Reads (false) or writes (true) this descriptor (read, pwrite64,
    /// readv, ...).
    FileRw(u32, bool),
    /// ptrace or process_vm_*: their own hooks parked an event.
    OwnHook,
    Other,
}

#[inline(always)]
fn syscall(off: &KernelOffsets) -> Syscall {
    if off.pt_regs_syscall_nr == OFFSET_ABSENT {
        return Syscall::Other;
    }
    // SAFETY: helpers without preconditions; the task pointer is the
    // BTF-typed current task the second one requires.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u8;
    let Ok(nr) = read_field::<u64>(regs, off.pt_regs_syscall_nr) else {
        return Syscall::Other;
    };
    let nr = nr as u32;
    let (mut rw, mut writes) = (false, false);
    let mut i = 0;
    while i < off.sys_file_rw.len() {
        if off.sys_file_rw[i] == nr {
            rw = true;
            // Readers at even indexes, each one's writing twin after it.
            writes = i % 2 == 1;
        }
        i += 1;
    }
    if rw {
        return match read_field::<u64>(regs, off.sys_args[0]) {
            Ok(fd) => Syscall::FileRw(fd as u32, writes),
            Err(_) => Syscall::Other,
        };
    }
    let mut own = false;
    let mut i = 0;
    while i < off.sys_own_hook.len() {
        own |= off.sys_own_hook[i] == nr;
        i += 1;
    }
    if own {
        Syscall::OwnHook
    } else {
        Syscall::Other
    }
}

/// Records the access (the first per actor and target; repeats counted)
/// or, where the syscall hooks enforce and a rule denies it, kills the
/// actor before the memory moves. `kind` is the file's kind and access
/// mode, unknown for a worker whose request could not be read; `writes`
/// whether the syscall writes, unknown for a worker.
///
/// A write is judged here under BPF-LSM too: a read-only holder may open
/// the file read-write (gdb and gdbserver read memory through such a
/// descriptor and fail without it), so its writes meet no other hook.
#[inline(always)]
fn judge(
    pid: u32,
    tgid: u32,
    p: &Protected,
    kind: Option<(AccessKind, u64)>,
    uring: bool,
    writes: Option<bool>,
) {
    let (kind, accmode) = kind.unwrap_or((AccessKind::ProcMem, 0));
    // O_WRONLY (1) or O_RDWR (2): a worker's request may be a write.
    let writes = writes.unwrap_or(accmode != 0);
    let Some(ev) = new_event(pid, tgid, kind, p.tgid) else {
        count_lost(EventKind::Access);
        return;
    };
    ev.request = accmode;
    ev.target_host_pid = p.tgid;
    ev.flags2 = access_flags::TARGET_RESOLVED | access_flags::AT_ACCESS;
    if uring {
        ev.flags2 |= access_flags::IO_URING;
    }
    // As at the open: a process's memory is a PTRACE_MODE_ATTACH access,
    // its environment only a READ one.
    if kind == AccessKind::ProcMem {
        if writes {
            ev.flags2 |= access_flags::WRITES;
        }
        let slot = denied(&Some(*p), op_of(ev));
        if slot != NO_SLOT && hooks_enforce(writes) {
            mark_killed(ev, slot);
            emit(ev);
            return;
        }
    }
    aggregate(ev);
}
