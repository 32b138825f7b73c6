//! Delivering events to the agent: the ring buffer and when to wake the
//! reader, the drop counters, the failure counters, the per-CPU scratch space events are
//! assembled in, the events parked until their syscall returns, and the
//! repeat counts of aggregated accesses.

use core::ptr::{read_volatile, write_volatile};

use agent_common::{
    AGG_ENTRIES, AccessEvent, AggKey, DEFAULT_RING_BYTES, EventKind, ExecScratch, LOST_SLOTS, fault,
};
use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};

#[map(name = "EVENTS")]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

// Ring buffer flags and queries (uapi `BPF_RB_*`).
const BPF_RB_NO_WAKEUP: u64 = 1;

const BPF_RB_FORCE_WAKEUP: u64 = 2;

const BPF_RB_AVAIL_DATA: u64 = 0;

const BPF_RB_RING_SIZE: u64 = 1;

/// Non-zero while the agent waits for a wake-up; zero while it reads the
/// ring on its own timer (under load). The agent sets it before it
/// sleeps; the first event that finds it set clears it and wakes the
/// agent.
#[map(name = "READER_IDLE")]
static READER_IDLE: Array<u32> = Array::with_max_entries(1, 0);

/// Output flags for an event the agent turns into a record (exec, access):
/// wake the agent only if it is waiting for a wake-up, and then only once.
/// A wake-up is an IPI, which in a VM costs several microseconds in the
/// traced process; an agent that polls under load needs none.
#[inline(always)]
pub(crate) fn wake_if_idle() -> u64 {
    match READER_IDLE.get_ptr_mut(0) {
        // SAFETY: a valid pointer into the array's only slot. A racing
        // event on another CPU costs at most one extra wake-up.
        Some(p) => unsafe {
            if read_volatile(p) != 0 {
                write_volatile(p, 0);
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            }
        },
        None => BPF_RB_FORCE_WAKEUP,
    }
}

/// Output flags for a bookkeeping event (fork, exit): no wake-up, unless
/// the ring is filling up. The agent's next read (its poll timer, the next
/// record-making event's wake-up, or its 1 s tick) brings it along; the
/// kernel keeps protection current at fork and exit itself, so nothing
/// waits on the agent hearing of them.
#[inline(always)]
pub(crate) fn lazy_wakeup() -> u64 {
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA);
    let size = EVENTS.query(BPF_RB_RING_SIZE);
    if avail > size / 16 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

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

/// Counts one event of `kind` that could not be delivered.
#[inline(always)]
pub(crate) fn count_lost(kind: EventKind) {
    if let Some(slot) = LOST.get_ptr_mut(kind as u32) {
        // SAFETY: per-CPU slot; programs do not migrate CPUs while running.
        unsafe { *slot += 1 };
    }
}

/// Failures inside the programs that do not lose a whole event (a read
/// that faulted, a map that refused an insert), by `agent_common::fault`
/// site: the agent serves them as `debugmon_kernel_faults_total`.
#[map(name = "FAULTS")]
static FAULTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(fault::COUNT as u32, 0);

/// Counts one failure at `site` (an `agent_common::fault` constant) and,
/// when the agent asked for kernel logs (`--kernel-log`), logs it with the
/// thread and the helper's error code. Without the flag the agent loads the
/// programs with aya-log's level global at 0, a frozen read-only value, so
/// the verifier drops the logging path and it costs nothing.
#[inline(always)]
pub(crate) fn count_fault(site: u32, err: i64) {
    if let Some(slot) = FAULTS.get_ptr_mut(site) {
        // SAFETY: per-CPU slot; programs do not migrate CPUs while running.
        unsafe { *slot += 1 };
    }
    let (pid, tgid) = crate::task::current_pid_tgid();
    let name = match fault::NAMES.get(site as usize) {
        Some(n) => *n,
        None => "unknown",
    };
    // aya-log-ebpf 0.2 ignores its context argument (its ring buffer needs
    // none), so the helpers that count faults need not carry one.
    aya_log_ebpf::warn!(
        &(),
        "kernel fault at {}: pid {} tgid {} error {}",
        name,
        pid,
        tgid,
        err
    );
}
