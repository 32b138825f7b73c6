//! Failure sites inside the kernel programs: each has a slot in the
//! per-CPU counter array [`FAULTS_MAP`](crate::FAULTS_MAP), so a field
//! that comes out empty or an event that never arrives has a counted,
//! named cause on the agent's `/metrics`
//! (`debugmon_kernel_faults_total{site=...}`). Losses of a whole event to
//! a full ring are not here: they are the per-kind `LOST` counters.
//!
//! Slots are explicit and never reused once retired; [`NAMES`] is indexed
//! by them.

/// The executed file's path could not be read from the exec tracepoint
/// (the record carries no `filename`).
pub const EXEC_FILENAME_READ: u32 = 0;
/// The new image's argv could not be read from its memory (the record
/// carries no `argv`).
pub const EXEC_ARGV_READ: u32 = 1;
/// A syscall's argument structure (`perf_event_attr`, `bpf_attr`) could not
/// be read from the caller's memory: the record's request or program name
/// is unknown.
pub const SYSCALL_ATTR_READ: u32 = 2;
/// The map parking access events until their syscall returns refused an
/// insert: the event went out at once, without the syscall's result.
pub const PENDING_INSERT: u32 = 3;
/// The repeat-count map refused an insert for a new key: the access was
/// neither sent nor counted.
pub const AGG_INSERT: u32 = 4;

/// Slots in [`FAULTS_MAP`](crate::FAULTS_MAP).
pub const COUNT: usize = 5;

/// The `site` label of each slot, in slot order.
pub const NAMES: [&str; COUNT] = [
    "exec_filename_read",
    "exec_argv_read",
    "syscall_attr_read",
    "pending_insert",
    "agg_insert",
];
