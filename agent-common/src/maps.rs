//! Names both sides use for the maps and load-time globals, and their
//! sizes.

/// Ring buffer carrying every event to userspace.
pub const EVENTS_MAP: &str = "EVENTS";

/// Per-CPU array of `u64` counters: events dropped in the kernel, indexed by [`EventKind`](crate::EventKind).
pub const LOST_MAP: &str = "LOST";

/// One `u32`: non-zero while the agent waits to be woken (see the agent's read loop).
pub const READER_IDLE_MAP: &str = "READER_IDLE";

/// Per-CPU scratch space used to assemble variable-length exec events.
pub const EXEC_SCRATCH_MAP: &str = "EXEC_SCRATCH";

/// Name of the global holding [`KernelOffsets`](crate::KernelOffsets).
pub const OFFSETS_GLOBAL: &str = "OFFSETS";

/// Name of the global holding the agent's own tgid (its events are filtered out in the kernel).
pub const AGENT_TGID_GLOBAL: &str = "AGENT_TGID";

/// Default ring buffer size in bytes (power of two, multiple of the page size).
pub const DEFAULT_RING_BYTES: u32 = 4 * 1024 * 1024;

/// Number of slots in [`LOST_MAP`]: one per [`EventKind`](crate::EventKind) discriminant, slot 0 unused.
pub const LOST_SLOTS: u32 = 5;

pub const KRULES_MAP: &str = "KRULES";

pub const KRULES_MAX: u32 = 256;

pub const PROTECT_TGID_MAP: &str = "PROTECT_TGID";

pub const PROTECT_CGROUP_MAP: &str = "PROTECT_CGROUP";

pub const PROTECT_COMM_MAP: &str = "PROTECT_COMM";

pub const EXEMPT_MAP: &str = "EXEMPT";

pub const GRANTS_MAP: &str = "GRANTS";

pub const EXEC_DENY_MAP: &str = "EXEC_DENY";

/// Array map whose slot 0 holds the [`enforce_mode`](crate::enforce_mode) in force.
pub const ENFORCE_MAP: &str = "ENFORCE";

/// LRU hash `AggKey -> u64`: calls after the first, which was sent at once.
pub const AGG_MAP: &str = "AGG";

/// Size of [`AGG_MAP`].
pub const AGG_ENTRIES: u32 = 16_384;

/// Per-thread access events waiting for their syscall's exit.
pub const PENDING_MAP: &str = "PENDING";
