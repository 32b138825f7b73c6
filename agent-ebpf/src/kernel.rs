//! Shared kernel-side state and helpers: maps, load-time globals, and safe
//! wrappers to read task fields at offsets the agent resolved from BTF.

use core::{ffi::c_void, mem::MaybeUninit, ptr::read_volatile};

use agent_common::{
    AGG_ENTRIES, AccessEvent, AggKey, Creds, DEFAULT_RING_BYTES, EventKind, ExecScratch,
    KernelOffsets, LOST_SLOTS, NsIds, OFFSET_ABSENT, TTY_LEN, flags,
};
use aya_ebpf::{
    helpers::generated::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::map,
    maps::{LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};

#[map(name = "EVENTS")]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

#[map(name = "LOST")]
pub(crate) static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOST_SLOTS, 0);

#[map(name = "EXEC_SCRATCH")]
pub(crate) static EXEC_SCRATCH: PerCpuArray<ExecScratch> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "AGG")]
pub(crate) static AGG: LruPerCpuHashMap<AggKey, u64> =
    LruPerCpuHashMap::with_max_entries(AGG_ENTRIES, 0);

#[map(name = "ACCESS_SCRATCH")]
pub(crate) static ACCESS_SCRATCH: PerCpuArray<AccessEvent> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "PENDING")]
pub(crate) static PENDING: LruHashMap<u32, AccessEvent> = LruHashMap::with_max_entries(8192, 0);

/// Tgid of the agent; 0 until the loader sets it.
#[unsafe(no_mangle)]
static AGENT_TGID: u32 = 0;

/// Struct field offsets for the running kernel, set by the loader.
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets::ABSENT;

/// Reads the load-time globals through volatile loads so that the compiler
/// cannot fold in the placeholder values they have at build time.
#[inline(always)]
pub(crate) fn offsets() -> KernelOffsets {
    // SAFETY: a plain read of a static that lives in a read-only map.
    unsafe { read_volatile(&raw const OFFSETS) }
}

#[inline(always)]
pub(crate) fn current_pid_tgid() -> (u32, u32) {
    // SAFETY: helper without preconditions.
    let v = unsafe { bpf_get_current_pid_tgid() };
    (v as u32, (v >> 32) as u32)
}

/// True when the current task belongs to the agent itself.
#[inline(always)]
pub(crate) fn is_agent(tgid: u32) -> bool {
    // SAFETY: a plain read of a static that lives in a read-only map.
    let agent = unsafe { read_volatile(&raw const AGENT_TGID) };
    agent != 0 && agent == tgid
}

/// Counts one event of `kind` that could not be delivered.
#[inline(always)]
pub(crate) fn count_lost(kind: EventKind) {
    if let Some(slot) = LOST.get_ptr_mut(kind as u32) {
        // SAFETY: per-CPU slot; programs do not migrate CPUs while running.
        unsafe { *slot += 1 };
    }
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

/// Credentials and audit ids of `task`. Missing pieces are flagged, not fatal.
#[inline(always)]
pub(crate) fn read_creds(task: *const u8, off: &KernelOffsets, flags_out: &mut u32) -> Creds {
    let mut c = Creds {
        uid: u32::MAX,
        gid: u32::MAX,
        euid: u32::MAX,
        egid: u32::MAX,
        auid: u32::MAX,
        sessionid: u32::MAX,
    };
    match read_field::<*const u8>(task, off.task_cred) {
        Ok(cred) => {
            let uid = read_field::<u32>(cred, off.cred_uid);
            let gid = read_field::<u32>(cred, off.cred_gid);
            let euid = read_field::<u32>(cred, off.cred_euid);
            let egid = read_field::<u32>(cred, off.cred_egid);
            if uid.is_err() || gid.is_err() || euid.is_err() || egid.is_err() {
                *flags_out |= flags::CREDS_READ_FAILED;
            }
            c.uid = uid.unwrap_or(u32::MAX);
            c.gid = gid.unwrap_or(u32::MAX);
            c.euid = euid.unwrap_or(u32::MAX);
            c.egid = egid.unwrap_or(u32::MAX);
        }
        Err(_) => *flags_out |= flags::CREDS_READ_FAILED,
    }
    if off.task_loginuid == OFFSET_ABSENT || off.task_sessionid == OFFSET_ABSENT {
        *flags_out |= flags::NO_AUDIT_IDS;
    } else {
        c.auid = read_field::<u32>(task, off.task_loginuid).unwrap_or(u32::MAX);
        c.sessionid = read_field::<u32>(task, off.task_sessionid).unwrap_or(u32::MAX);
    }
    c
}

/// Namespace ids of `task` (zeros where a read fails: the record then says unknown).
#[inline(always)]
pub(crate) fn read_ns(task: *const u8, off: &KernelOffsets) -> NsIds {
    let mut ids = NsIds::default();
    if let Ok(pid) = read_field::<*const u8>(task, off.task_thread_pid) {
        let level = read_field::<u32>(pid, off.pid_level).unwrap_or(0);
        // Pid namespaces nest at most 32 deep (MAX_PID_NS_LEVEL).
        if level <= 32 && off.upid_size != OFFSET_ABSENT && off.pid_numbers != OFFSET_ABSENT {
            let upid = pid.wrapping_add((off.pid_numbers + level * off.upid_size) as usize);
            ids.ns_pid = read_field::<u32>(upid, off.upid_nr).unwrap_or(0);
            if let Ok(ns) = read_field::<*const u8>(upid, off.upid_ns) {
                ids.pid_ns = read_field::<u32>(ns, off.pidns_inum).unwrap_or(0);
            }
        }
    }
    if let Ok(cred) = read_field::<*const u8>(task, off.task_cred)
        && let Ok(userns) = read_field::<*const u8>(cred, off.cred_user_ns)
    {
        ids.user_ns = read_field::<u32>(userns, off.userns_inum).unwrap_or(0);
    }
    if let Ok(nsproxy) = read_field::<*const u8>(task, off.task_nsproxy)
        && let Ok(mnt) = read_field::<*const u8>(nsproxy, off.nsproxy_mnt_ns)
    {
        ids.mnt_ns = read_field::<u32>(mnt, off.mntns_inum).unwrap_or(0);
    }
    ids
}

/// Copies the controlling terminal's name of `task` into `out` (empty when none).
#[inline(always)]
pub(crate) fn read_tty(task: *const u8, off: &KernelOffsets, out: &mut [u8; TTY_LEN]) {
    let Ok(signal) = read_field::<*const u8>(task, off.task_signal) else {
        return;
    };
    let Ok(tty) = read_field::<*const u8>(signal, off.signal_tty) else {
        return;
    };
    if tty.is_null() || off.tty_name == OFFSET_ABSENT {
        return;
    }
    // SAFETY: the helper bounds the copy by the buffer size and checks the source.
    unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel_str(
            out.as_mut_ptr().cast::<c_void>(),
            TTY_LEN as u32,
            tty.wrapping_add(off.tty_name as usize).cast::<c_void>(),
        );
    }
}
