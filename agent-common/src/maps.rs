//! Names both sides use for the maps and load-time globals, and their
//! sizes.

/// Ring buffer carrying every event to userspace.
pub const EVENTS_MAP: &str = "EVENTS";

/// Per-CPU array of `u64` counters: events dropped in the kernel, indexed by [`EventKind`](crate::EventKind).
pub const LOST_MAP: &str = "LOST";

/// Per-CPU array of `u64` counters: failures inside the programs, indexed
/// by the [`fault`](crate::fault) site constants.
pub const FAULTS_MAP: &str = "FAULTS";

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

/// Array of [`KRule`](crate::KRule): two banks of [`KRULES_BANK`] slots.
pub const KRULES_MAP: &str = "KRULES";
pub const KRULES_MAX: u32 = 256;
/// Slots per bank: bank `b` holds slots `b * KRULES_BANK ..`.
pub const KRULES_BANK: u32 = KRULES_MAX / 2;
/// Hash [`PidKey`](crate::PidKey) -> [`Protected`](crate::Protected): every
/// thread of every protected process, at each pid namespace level it is
/// seen in. Kept by the kernel at fork, exec and exit, and seeded by the
/// agent for processes that were running before it.
pub const PROTECT_MAP: &str = "PROTECT";
pub const PROTECT_ENTRIES: u32 = 262_144;
/// Hash [`IdentityKey`](crate::IdentityKey) -> slot: executables, units and
/// users a rule protects.
pub const PROTECT_ID_MAP: &str = "PROTECT_ID";
/// Hash [`CommKey`](crate::CommKey) -> slot.
pub const PROTECT_COMM_MAP: &str = "PROTECT_COMM";
pub const EXEMPT_MAP: &str = "EXEMPT";
pub const GRANTS_MAP: &str = "GRANTS";
pub const EXEC_DENY_MAP: &str = "EXEC_DENY";
/// Hash [`ObjectKey`](crate::ObjectKey) -> 1: the agent's own programs,
/// maps and links.
pub const AGENT_OBJECTS_MAP: &str = "AGENT_OBJECTS";
pub const AGENT_OBJECTS_ENTRIES: u32 = 1024;
/// Array map of the [`enforce_slot`](crate::enforce_slot) values.
pub const ENFORCE_MAP: &str = "ENFORCE";
/// Slots of [`ENFORCE_MAP`]: mode, bank, and the identity kinds of each bank.
pub const ENFORCE_SLOTS: u32 = 4;

/// LRU hash `AggKey -> u64`: calls after the first, which was sent at once.
pub const AGG_MAP: &str = "AGG";

/// Size of [`AGG_MAP`].
pub const AGG_ENTRIES: u32 = 16_384;

/// Per-thread access events waiting for their syscall's exit.
pub const PENDING_MAP: &str = "PENDING";

/// Array of [`crate::EnvName`]: the environment variables an exec reports
/// (set by the agent; an all-zero entry ends the list).
pub const ENV_NAMES_MAP: &str = "ENV_NAMES";
