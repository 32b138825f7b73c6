//! Reading the kernel's structs safely: the load-time globals (the
//! agent's tgid, the struct offsets it resolved from BTF), and wrappers
//! that read task fields at those offsets without ever faulting or
//! panicking: credentials, namespaces, terminal, working directory.

use core::{
    ffi::c_void,
    mem::MaybeUninit,
    ptr::{read_volatile, write_volatile},
};

use agent_common::{
    CWD_CAP, CWD_DEPTH, CWD_NAME_ROOM, Creds, KernelOffsets, NsIds, OFFSET_ABSENT, TTY_LEN, flags,
};
use aya_ebpf::helpers::generated::{bpf_get_current_pid_tgid, bpf_probe_read_kernel};

/// Tgid of the agent; 0 until the loader sets it.
#[unsafe(no_mangle)]
static AGENT_TGID: u32 = 0;

/// Struct field offsets for the running kernel, set by the loader.
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets::ABSENT;

/// The load-time offsets, by reference: the address goes through a
/// volatile load, so the compiler cannot fold in the placeholder values
/// the global has at build time, and no program copies the whole struct
/// (480 bytes) onto its 512-byte stack.
#[inline(always)]
pub(crate) fn offsets() -> &'static KernelOffsets {
    let at: *const KernelOffsets = &raw const OFFSETS;
    // SAFETY: a volatile read of a local; the pointer it yields is the
    // static's address, valid for the program's life.
    unsafe { &*read_volatile(&raw const at) }
}

/// `sys_args[i]` alone, without copying the whole struct to the stack.
#[inline(always)]
pub(crate) fn sys_arg_offset(i: usize) -> u32 {
    if i >= 6 {
        return OFFSET_ABSENT;
    }
    // SAFETY: as in `offsets`; `i` is in bounds.
    unsafe { read_volatile(&raw const OFFSETS.sys_args[i]) }
}

/// `tp_sys_enter_args` and `tp_sys_exit_ret` alone.
#[inline(always)]
pub(crate) fn tp_sys_offsets() -> (u32, u32) {
    // SAFETY: as in `offsets`.
    unsafe {
        (
            read_volatile(&raw const OFFSETS.tp_sys_enter_args),
            read_volatile(&raw const OFFSETS.tp_sys_exit_ret),
        )
    }
}

/// `io_kiocb_opcode` and `io_kiocb_res` alone: the io_uring program runs
/// on every completion on the host and needs only these to pass over
/// the ones that are not opens.
#[inline(always)]
pub(crate) fn uring_offsets() -> (u32, u32) {
    // SAFETY: as in `offsets`.
    unsafe {
        (
            read_volatile(&raw const OFFSETS.io_kiocb_opcode),
            read_volatile(&raw const OFFSETS.io_kiocb_res),
        )
    }
}

/// `task_mm`, `task_flags` and `mm_owner` alone: the address-space hook
/// runs on every lock of every process's memory map and needs only these
/// to pass over a process locking its own.
#[inline(always)]
pub(crate) fn lock_offsets() -> (u32, u32, u32) {
    // SAFETY: as in `offsets`.
    unsafe {
        (
            read_volatile(&raw const OFFSETS.task_mm),
            read_volatile(&raw const OFFSETS.task_flags),
            read_volatile(&raw const OFFSETS.mm_owner),
        )
    }
}

#[inline(always)]
pub(crate) fn current_pid_tgid() -> (u32, u32) {
    // SAFETY: helper without preconditions.
    let v = unsafe { bpf_get_current_pid_tgid() };
    (v as u32, (v >> 32) as u32)
}

/// When `task` started, in clock ticks since boot (as `/proc/PID/stat`).
#[inline(always)]
pub(crate) fn start_tick(task: *const u8) -> u64 {
    let off = offsets();
    let ns = read_or_zero::<u64>(task, off.task_start_boottime);
    ns / u64::from(off.tick_ns.max(1))
}

/// The agent's tgid (0 until the loader sets it).
#[inline(always)]
pub(crate) fn agent_tgid() -> u32 {
    // SAFETY: a plain read of a static that lives in a read-only map.
    unsafe { read_volatile(&raw const AGENT_TGID) }
}

/// True when `tgid` is the agent itself.
#[inline(always)]
pub(crate) fn is_agent(tgid: u32) -> bool {
    let agent = agent_tgid();
    agent != 0 && agent == tgid
}

/// Reads a `T` at `base + off` from kernel memory. Fails on an absent offset
/// or a faulting read, never panics.
#[inline(always)]
pub(crate) fn read_field<T: Copy>(base: *const u8, off: u32) -> Result<T, i64> {
    if off == OFFSET_ABSENT || base.is_null() {
        return Err(-1);
    }
    let mut out = MaybeUninit::<T>::uninit();
    // SAFETY: bpf_probe_read_kernel checks the source address itself; the
    // destination is a local of exactly `size_of::<T>()` bytes.
    let ret = unsafe {
        bpf_probe_read_kernel(
            out.as_mut_ptr().cast::<c_void>(),
            size_of::<T>() as u32,
            base.wrapping_add(off as usize).cast::<c_void>(),
        )
    };
    if ret < 0 {
        Err(ret)
    } else {
        // SAFETY: the helper filled all bytes on success.
        Ok(unsafe { out.assume_init() })
    }
}

/// The current task's comm; zeros if the helper fails (it cannot for a
/// buffer of this size).
#[inline(always)]
pub(crate) fn current_comm() -> [u8; 16] {
    let mut comm = [0u8; 16];
    // SAFETY: the helper writes at most 16 bytes into the local buffer.
    unsafe {
        aya_ebpf::helpers::generated::bpf_get_current_comm(comm.as_mut_ptr().cast::<c_void>(), 16);
    }
    comm
}

/// Reads a `T` at `base + off`, zero on any failure (the helper zeroes its
/// destination when it fails). Nothing branches on the result: chained
/// reads through a null pointer just fail again. Older verifiers (6.1)
/// explore every branch combination of a program, and one branch per read
/// multiplied past their 1M-instruction budget.
#[inline(always)]
pub(crate) fn read_or_zero<T: Copy>(base: *const u8, off: u32) -> T {
    read_or_zero_err(base, off).0
}

/// Like [`read_or_zero`], also returning 1 on failure, 0 on success, for
/// OR-ing into a flag without a branch.
#[inline(always)]
pub(crate) fn read_or_zero_err<T: Copy>(base: *const u8, off: u32) -> (T, u32) {
    let mut out = MaybeUninit::<T>::zeroed();
    // SAFETY: bpf_probe_read_kernel checks the source address itself and
    // zeroes the destination on failure; the destination is a local of
    // exactly `size_of::<T>()` bytes. Callers only use integer, byte-array
    // and pointer types, for which all-zero is a valid value.
    let ret = unsafe {
        bpf_probe_read_kernel(
            out.as_mut_ptr().cast::<c_void>(),
            size_of::<T>() as u32,
            base.wrapping_add(off as usize).cast::<c_void>(),
        )
    };
    // SAFETY: see above.
    (unsafe { out.assume_init() }, (ret as u64 >> 63) as u32)
}

/// The person behind `task`: its login uid if set, else its uid (grants
/// and exemptions follow the person, through sudo).
#[inline(always)]
pub(crate) fn person_uid(task: *const u8) -> u32 {
    let off = offsets();
    let mut fl = 0;
    let c = read_creds(task, off, &mut fl);
    if c.auid != u32::MAX { c.auid } else { c.uid }
}

/// `task`'s real uid: whose process it is (protection by user).
#[inline(always)]
pub(crate) fn real_uid(task: *const u8) -> u32 {
    let off = offsets();
    let cred = read_or_zero::<*const u8>(task, off.task_cred);
    read_or_zero::<u32>(cred, off.cred_uid)
}

/// Credentials and audit ids of `task`. A failed read leaves 0 and sets
/// `CREDS_READ_FAILED` (the record then lists creds as incomplete).
#[inline(always)]
pub(crate) fn read_creds(task: *const u8, off: &KernelOffsets, flags_out: &mut u32) -> Creds {
    let (cred, e0) = read_or_zero_err::<*const u8>(task, off.task_cred);
    let (uid, e1) = read_or_zero_err::<u32>(cred, off.cred_uid);
    let (gid, e2) = read_or_zero_err::<u32>(cred, off.cred_gid);
    let (euid, e3) = read_or_zero_err::<u32>(cred, off.cred_euid);
    let (egid, e4) = read_or_zero_err::<u32>(cred, off.cred_egid);
    let failed = e0 | e1 | e2 | e3 | e4;
    *flags_out |= failed * flags::CREDS_READ_FAILED;
    let mut c = Creds {
        uid,
        gid,
        euid,
        egid,
        auid: u32::MAX,
        sessionid: u32::MAX,
    };
    if off.task_loginuid == OFFSET_ABSENT || off.task_sessionid == OFFSET_ABSENT {
        *flags_out |= flags::NO_AUDIT_IDS;
    } else {
        // Unset audit ids are -1 in the kernel too; a failed read reads 0.
        c.auid = read_or_zero::<u32>(task, off.task_loginuid);
        c.sessionid = read_or_zero::<u32>(task, off.task_sessionid);
    }
    c
}

/// Namespace ids of `task` (zeros where a read fails: the record then says unknown).
#[inline(always)]
pub(crate) fn read_ns(task: *const u8, off: &KernelOffsets) -> NsIds {
    let pid = read_or_zero::<*const u8>(task, off.task_thread_pid);
    // Pid namespaces nest at most 32 deep (MAX_PID_NS_LEVEL); the mask keeps
    // the address arithmetic bounded without a branch.
    let level = read_or_zero::<u32>(pid, off.pid_level) & 63;
    let upid = pid.wrapping_add((off.pid_numbers + level * off.upid_size) as usize);
    let ns = read_or_zero::<*const u8>(upid, off.upid_ns);
    let cred = read_or_zero::<*const u8>(task, off.task_cred);
    let userns = read_or_zero::<*const u8>(cred, off.cred_user_ns);
    let nsproxy = read_or_zero::<*const u8>(task, off.task_nsproxy);
    let mnt = read_or_zero::<*const u8>(nsproxy, off.nsproxy_mnt_ns);
    NsIds {
        pid_ns: read_or_zero::<u32>(ns, off.pidns_inum),
        user_ns: read_or_zero::<u32>(userns, off.userns_inum),
        mnt_ns: read_or_zero::<u32>(mnt, off.mntns_inum),
        ns_pid: read_or_zero::<u32>(upid, off.upid_nr),
    }
}

/// Copies the controlling terminal's name of `task` into `out` (empty when none).
#[inline(always)]
pub(crate) fn read_tty(task: *const u8, off: &KernelOffsets, out: &mut [u8; TTY_LEN]) {
    let signal = read_or_zero::<*const u8>(task, off.task_signal);
    let tty = read_or_zero::<*const u8>(signal, off.signal_tty);
    // SAFETY: the helper bounds the copy by the buffer size and checks the
    // source; a null tty makes it fail and leaves `out` empty.
    unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel_str(
            out.as_mut_ptr().cast::<c_void>(),
            TTY_LEN as u32,
            tty.wrapping_add(off.tty_name as usize).cast::<c_void>(),
        );
    }
}

// The cwd area is indexed with a mask, which proves bounds to the verifier.
const _: () = assert!(CWD_CAP.is_power_of_two() && CWD_NAME_ROOM < CWD_CAP);

/// Walks `task`'s working directory up to the root of its mount
/// namespace, as the kernel's `d_path` does, and writes the names into
/// `out` (which has `CWD_CAP + CWD_NAME_ROOM` bytes), innermost first,
/// each NUL-terminated. The byte count goes to `*len` and the
/// [`flags::CWD_RESOLVED`] / [`flags::CWD_DELETED`] bits into `*flags_out`;
/// without `CWD_RESOLVED` the agent reads the cwd from `/proc` instead.
///
/// Done here because a short-lived process is gone before the agent can
/// read `/proc/PID/cwd`, and the `readlink` cost the agent more than this
/// walk costs the exec. Like `d_path` without `rename_lock`, a rename
/// racing the walk can give a mixed path.
///
/// `len` and `flags_out` point into the map value, and the count lives
/// there between iterations: the verifier does not track values in map
/// memory, so every iteration's state looks alike and is pruned. Kept in
/// a register, each count range made a state of its own, and the walk
/// blew the verifier's budget.
#[inline(always)]
pub(crate) fn read_cwd(
    task: *const u8,
    off: &KernelOffsets,
    out: *mut u8,
    len: *mut u32,
    flags_out: *mut u32,
) {
    // SAFETY (all volatile accesses below): `len` and `flags_out` point
    // into this CPU's scratch map value, valid for the whole program.
    unsafe { write_volatile(len, 0) };
    if off.fs_pwd == OFFSET_ABSENT || off.mount_mnt == OFFSET_ABSENT {
        return;
    }
    let fs = read_or_zero::<*const u8>(task, off.task_fs);
    let pwd = fs.wrapping_add(off.fs_pwd as usize);
    let mut dentry = read_or_zero::<*const u8>(pwd, off.path_dentry);
    let mut vfsmnt = read_or_zero::<*const u8>(pwd, off.path_mnt);
    if fs.is_null() || dentry.is_null() || vfsmnt.is_null() {
        return;
    }
    // An unlinked directory is unhashed (but a root is never hashed).
    if read_or_zero::<u64>(dentry, off.dentry_hash_pprev) == 0
        && read_or_zero::<*const u8>(dentry, off.dentry_d_parent) != dentry
    {
        unsafe { write_volatile(flags_out, read_volatile(flags_out) | flags::CWD_DELETED) };
    }
    for _ in 0..CWD_DEPTH {
        let mnt_root = read_or_zero::<*const u8>(vfsmnt, off.vfsmount_mnt_root);
        if dentry == mnt_root {
            let mount = vfsmnt.wrapping_sub(off.mount_mnt as usize);
            let parent = read_or_zero::<*const u8>(mount, off.mount_mnt_parent);
            if parent == mount {
                // The namespace's root mount: the path is complete.
                unsafe {
                    write_volatile(flags_out, read_volatile(flags_out) | flags::CWD_RESOLVED);
                }
                return;
            }
            if parent.is_null() {
                return;
            }
            // Continue from where this mount is mounted.
            dentry = read_or_zero::<*const u8>(mount, off.mount_mnt_mountpoint);
            vfsmnt = parent.wrapping_add(off.mount_mnt as usize);
            continue;
        }
        let parent = read_or_zero::<*const u8>(dentry, off.dentry_d_parent);
        let at = unsafe { read_volatile(len) };
        if parent.is_null() || parent == dentry || at > (CWD_CAP - CWD_NAME_ROOM) as u32 {
            // A root that is no mount's root (a detached tree), or too long.
            return;
        }
        let name = read_or_zero::<*const u8>(dentry, off.dentry_name);
        // SAFETY: `at <= CWD_CAP - CWD_NAME_ROOM`, so the copy of at most
        // CWD_NAME_ROOM bytes stays inside `out`; the helper checks `name`.
        let n = unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_kernel_str(
                out.wrapping_add((at & (CWD_CAP as u32 - 1)) as usize)
                    .cast::<c_void>(),
                CWD_NAME_ROOM as u32,
                name.cast::<c_void>(),
            )
        };
        if n <= 1 {
            // A failed read, or an empty name no directory has.
            return;
        }
        unsafe { write_volatile(len, at + n as u32) };
        dentry = parent;
    }
}
