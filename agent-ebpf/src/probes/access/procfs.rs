//! Opens of another process's `/proc/<pid>/mem` and `/proc/<pid>/environ`:
//! by the literal path at the open's entry (which also sees attempts that
//! fail), and by what was opened at its exit, which catches every other way
//! to the same file (relative paths, dirfds, symlinks, `task/<tid>/`).

use agent_common::{AccessKind, Enforcement, EventKind, OFFSET_ABSENT, access_flags};
use aya_ebpf::{
    helpers::{bpf_probe_read_user, generated::bpf_get_current_task},
    macros::{fentry, fexit, tracepoint},
    programs::{FEntryContext, FExitContext, TracePointContext},
};

use super::{
    Args,
    event::{emit, new_event, park},
    exit_ret,
    fallback::{denied, hooks_enforce, kill_if_done, mark_killed, op_of, settle},
};
use crate::{
    enforce::{NO_SLOT, protect},
    ring::count_lost,
    task::{current_pid_tgid, is_agent, lock_offsets, offsets, read_field},
};

const O_ACCMODE: u64 = 3;

const O_PATH: u32 = 0o10_000_000;

/// Parses `/proc/<digits>/mem` or `/proc/<digits>/environ` (NUL-terminated
/// in `p`), or a path under `/proc/<digits>/map_files/` or
/// `/proc/<digits>/fd/`. Returns the access kind and the pid.
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
    if rest + 3 <= 32 && p[rest] == b'f' && p[rest + 1] == b'd' && p[rest + 2] == b'/' {
        return Some((AccessKind::ProcFdMemfd, pid));
    }
    if rest + 10 <= 32
        && p[rest] == b'm'
        && p[rest + 1] == b'a'
        && p[rest + 2] == b'p'
        && p[rest + 3] == b'_'
        && p[rest + 4] == b'f'
        && p[rest + 5] == b'i'
        && p[rest + 6] == b'l'
        && p[rest + 7] == b'e'
        && p[rest + 8] == b's'
        && p[rest + 9] == b'/'
    {
        return Some((AccessKind::ProcMapFiles, pid));
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
    // Sent at the exit with the result, and judged there by the file it
    // opened; the exit then knows this open was reported and does not
    // report the file a second time.
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
    let off = offsets();
    // The opened file and its name's length, read once: every test below
    // starts from them, and every open on the host comes here.
    let named = match ret {
        Some(fd) if fd >= 0 && !is_agent(tgid) => {
            fd_file(off, fd as u32).and_then(|f| Named::of(off, f))
        }
        _ => None,
    };
    let opened = match (ret, &named) {
        (Some(fd), Some(n)) => proc_named(off, n).map(|o| (o, fd)),
        _ => None,
    };
    let parked = settle(ret, |ev| {
        if ev.access == AccessKind::ProcFdMemfd as u32 {
            // Another process's descriptors are opened all the time
            // (lsof reads links, shells reopen pipes); only an anonymous
            // memory file is a way into its memory.
            let memfd = match ret {
                Some(fd) if fd >= 0 => is_memfd(offsets(), fd as u32),
                _ => false,
            };
            if !memfd {
                ev.flags2 |= access_flags::DROP;
            }
            return;
        }
        let parked_open =
            ev.access == AccessKind::ProcMem as u32 || ev.access == AccessKind::ProcEnviron as u32;
        if let (true, Some(((kind, target, _), _))) = (parked_open, opened) {
            // The file says whose it is: the number in the path may have
            // been a thread's, or a pid in another namespace.
            ev.target_host_pid = target;
            ev.flags2 |= access_flags::TARGET_RESOLVED;
            if kind == AccessKind::ProcMem && target != tgid {
                judge_mem_open(ev, target);
            }
        }
    });
    if parked {
        return;
    }
    if let Some((file, fd)) = opened {
        report_opened(pid, tgid, file, fd, 0);
    } else if let (Some(fd), Some(n)) = (ret, &named) {
        report_special(pid, tgid, fd, off, n);
    }
}

/// `/proc/kcore`, `/dev/mem` and its kin (kernel memory), and
/// `/etc/ld.so.preload` opened for writing (library injection into every
/// program): sent as they are, whatever path reached them.
#[inline(always)]
fn report_special(pid: u32, tgid: u32, fd: i64, off: &agent_common::KernelOffsets, n: &Named) {
    let Some((kind, which, flags)) = special_file(off, n) else {
        return;
    };
    let Some(ev) = new_event(pid, tgid, kind, 0) else {
        count_lost(EventKind::Access);
        return;
    };
    ev.request = flags;
    ev.arg = which;
    ev.ret = fd;
    ev.flags2 = access_flags::HAS_RET;
    emit(ev);
}

/// `/proc/kcore` (0), `/dev/mem` (1), `/dev/kmem` (2), `/dev/port` (4) as
/// [`AccessKind::KernelMem`]; `/etc/ld.so.preload` opened for writing as
/// [`AccessKind::PreloadWrite`]. With the open flags.
#[inline(always)]
fn special_file(off: &agent_common::KernelOffsets, n: &Named) -> Option<(AccessKind, u64, u64)> {
    let Named { file, dentry, len } = *n;
    // Every other open on the host ends at one of these tests.
    if len != 3 && len != 4 && len != 5 && len != 13 {
        return None;
    }
    let name_at = read_field::<*const u8>(dentry, off.dentry_name).ok()?;
    let flags = u64::from(read_field::<u32>(file, off.file_f_flags).ok()?);
    if len == 13 {
        let name = read_field::<[u8; 14]>(name_at, 0).ok()?;
        if name != *b"ld.so.preload\0" || flags & O_ACCMODE == 0 {
            return None;
        }
        let parent = read_field::<*const u8>(dentry, off.dentry_d_parent).ok()?;
        let pname_at = read_field::<*const u8>(parent, off.dentry_name).ok()?;
        return (read_field::<[u8; 4]>(pname_at, 0).ok()? == *b"etc\0").then_some((
            AccessKind::PreloadWrite,
            0,
            flags,
        ));
    }
    // An O_PATH handle can neither read nor write the file: systemd opens
    // /proc/kcore so when it sets up any unit with ProtectKernelTunables=
    // (to mount over it), which was a critical alert on every such start.
    if flags & u64::from(O_PATH) != 0 {
        return None;
    }
    let name = read_field::<[u8; 8]>(name_at, 0).ok()?;
    if len == 5 && name[..6] == *b"kcore\0" {
        let sb = read_field::<*const u8>(dentry, off.dentry_d_sb).ok()?;
        return (read_field::<u64>(sb, off.sb_s_magic).ok()? == PROC_SUPER_MAGIC).then_some((
            AccessKind::KernelMem,
            0,
            flags,
        ));
    }
    // The memory devices, by device number (major 1): whatever the node's name.
    let inode = read_field::<*const u8>(file, off.file_f_inode).ok()?;
    let rdev = read_field::<u32>(inode, off.inode_i_rdev).ok()?;
    let minor = rdev & 0xf_ffff;
    match (rdev >> 20, minor) {
        (1, 1 | 2 | 4) => Some((AccessKind::KernelMem, u64::from(minor), flags)),
        _ => None,
    }
}

/// Whether descriptor `fd` of the current task is a memfd (`memfd:NAME`).
#[inline(always)]
fn is_memfd(off: &agent_common::KernelOffsets, fd: u32) -> bool {
    let Some(file) = fd_file(off, fd) else {
        return false;
    };
    let name = read_field::<*const u8>(file, off.file_f_path_dentry)
        .and_then(|d| read_field::<*const u8>(d, off.dentry_name))
        .and_then(|n| read_field::<[u8; 6]>(n, 0));
    name == Ok(*b"memfd:")
}

/// Sends (or, under the kill fallback, acts on) a successful open of
/// another process's `mem` or `environ` as descriptor `fd`.
#[inline(always)]
pub(super) fn report_opened(
    pid: u32,
    tgid: u32,
    file: (AccessKind, u32, u64),
    fd: i64,
    flags: u32,
) {
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
    // Killed as the open returns: the descriptor exists by then, and
    // another thread of the actor that guesses it could use it before the
    // kill lands. BPF-LSM refuses the open itself.
    if kind == AccessKind::ProcMem {
        judge_mem_open(ev, target);
        if ev.flags2 & access_flags::KILL_AT_EXIT != 0 {
            ev.flags2 &= !access_flags::KILL_AT_EXIT;
            mark_killed(ev, ev.rule);
        }
    }
    emit(ev);
}

/// A successful open of process `target`'s memory (a PTRACE_MODE_ATTACH
/// access; `environ` is only READ): marks `ev` for the kill when a rule
/// denies it and the syscall hooks enforce it.
///
/// An open for writing is judged as a read here: gdb opens the file
/// read-write to read through it, and each write through it is judged
/// as it happens (`address_space`), so a read-only grant lets the reads
/// through and stops the first write before it lands. A kernel where
/// accesses cannot be judged as they happen (no CONFIG_MEMCG) judges the
/// writing open instead.
#[inline(always)]
fn judge_mem_open(ev: &mut agent_common::AccessEvent, target: u32) {
    if ev.enforcement != Enforcement::None as u32 {
        return; // BPF-LSM refused it already
    }
    let p = protect::host_named(target);
    if let Some(p) = &p {
        ev.target_host_pid = p.tgid;
    }
    // BPF-LSM lets a writing open through (see above), so where the
    // open is the write's only judge the syscall hooks enforce it.
    let writes = ev.request & O_ACCMODE != 0 && lock_offsets().2 == OFFSET_ABSENT;
    if writes {
        ev.flags2 |= access_flags::WRITES;
    }
    let slot = denied(&p, op_of(ev));
    if slot != NO_SLOT && hooks_enforce(writes) {
        kill_if_done(ev, slot);
    }
}

/// Whether descriptor `fd` of the current task is a process's `mem` or
/// `environ` file: the access kind, the process's host tgid and the
/// open's access mode.
#[inline(always)]
pub(super) fn opened_proc_file(
    off: &agent_common::KernelOffsets,
    fd: u32,
) -> Option<(AccessKind, u32, u64)> {
    proc_file(off, fd_file(off, fd)?)
}

/// Whether `file` is a process's `mem` or `environ` file: as
/// [`opened_proc_file`].
#[inline(always)]
pub(super) fn proc_file(
    off: &agent_common::KernelOffsets,
    file: *const u8,
) -> Option<(AccessKind, u32, u64)> {
    proc_named(off, &Named::of(off, file)?)
}

/// An open file with its dentry and the length of its name: what every
/// test of an opened file reads first.
#[derive(Clone, Copy)]
struct Named {
    file: *const u8,
    dentry: *const u8,
    len: u32,
}

impl Named {
    #[inline(always)]
    fn of(off: &agent_common::KernelOffsets, file: *const u8) -> Option<Self> {
        let dentry = read_field::<*const u8>(file, off.file_f_path_dentry).ok()?;
        let len = read_field::<u32>(dentry, off.dentry_name_len).ok()?;
        Some(Self { file, dentry, len })
    }
}

/// [`proc_file`] of a file whose name is already read.
#[inline(always)]
fn proc_named(off: &agent_common::KernelOffsets, n: &Named) -> Option<(AccessKind, u32, u64)> {
    let Named { file, dentry, len } = *n;
    // Every other open on the host ends at one of these two tests.
    if len != 3 && len != 7 {
        return None;
    }
    if off.proc_inode_vfs_inode == OFFSET_ABSENT || off.task_pid_links == OFFSET_ABSENT {
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

/// current->files->fdt->fd[fd]: the current task's open file `fd`.
#[inline(always)]
pub(super) fn fd_file(off: &agent_common::KernelOffsets, fd: u32) -> Option<*const u8> {
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
