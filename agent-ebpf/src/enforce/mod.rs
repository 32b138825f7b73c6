//! In-kernel decisions: the maps userspace compiles the deny rules into,
//! and the functions that read them. Used by the BPF-LSM hooks (deny with
//! -EPERM) and, where BPF-LSM is missing, by the syscall hooks (SIGKILL the
//! actor). Userspace is never on the decision path: which processes are
//! protected is kept here, at fork, exec and exit ([`protect`]), from the
//! identities the rules name ([`identity`]); a grant's expiry is a
//! boot-time timestamp compared here, so it ends on time even if the agent
//! is busy or gone.
//!
//! Rules live in two banks; a policy load fills the bank not in use and
//! flips [`enforce_slot::BANK`], so a decision always sees one whole
//! policy. A process's [`Protected`] entry names its slot, in whichever
//! bank it was decided: the old bank's rules stay until the agent has
//! moved every entry to the new one.

pub(crate) mod identity;
pub(crate) mod protect;

use agent_common::{
    AGENT_OBJECTS_ENTRIES, CommKey, ENFORCE_SLOTS, ExemptKey, GRANT_READ_ONLY, GrantKey,
    IdentityKey, InodeKey, KRULES_BANK, KRULES_MAX, KRule, ObjectKey, PROTECT_ENTRIES, PidKey,
    Protected, SELF_PROTECTION, access_mode, enforce_slot, grant_scope, krule_flags, ops,
};
use aya_ebpf::{
    helpers::generated::bpf_ktime_get_boot_ns,
    macros::map,
    maps::{Array, HashMap},
};

#[map(name = "KRULES")]
static KRULES: Array<KRule> = Array::with_max_entries(KRULES_MAX, 0);

#[map(name = "PROTECT")]
pub(crate) static PROTECT: HashMap<PidKey, Protected> =
    HashMap::with_max_entries(PROTECT_ENTRIES, 0);

#[map(name = "PROTECT_ID")]
pub(crate) static PROTECT_ID: HashMap<IdentityKey, u32> = HashMap::with_max_entries(16_384, 0);

#[map(name = "PROTECT_COMM")]
pub(crate) static PROTECT_COMM: HashMap<CommKey, u32> = HashMap::with_max_entries(8192, 0);

#[map(name = "EXEMPT")]
static EXEMPT: HashMap<ExemptKey, u32> = HashMap::with_max_entries(16_384, 0);

#[map(name = "GRANTS")]
static GRANTS: HashMap<GrantKey, u64> = HashMap::with_max_entries(4096, 0);

#[map(name = "EXEC_DENY")]
static EXEC_DENY: HashMap<InodeKey, u32> = HashMap::with_max_entries(2048, 0);

#[map(name = "AGENT_OBJECTS")]
static AGENT_OBJECTS: HashMap<ObjectKey, u32> = HashMap::with_max_entries(AGENT_OBJECTS_ENTRIES, 0);

/// The [`enforce_slot`] values. A map, not a load-time global: the agent
/// learns whether BPF-LSM works only after trying to attach it, and flips
/// the rule bank at every policy load.
#[map(name = "ENFORCE")]
static ENFORCE: Array<u32> = Array::with_max_entries(ENFORCE_SLOTS, 0);

/// "No rule": a plain value, not an `Option`. An `Option<u32>` that is
/// `None` leaves its payload undefined, and LLVM may spill that undefined
/// register; older verifiers (6.1) reject reading it (`R6 !read_ok`).
pub(crate) const NO_SLOT: u32 = u32::MAX - 1;

#[inline(always)]
fn setting(slot: u32) -> u32 {
    ENFORCE.get(slot).copied().unwrap_or(0)
}

#[inline(always)]
pub(crate) fn mode() -> u32 {
    setting(enforce_slot::MODE)
}

/// The rule bank in use.
#[inline(always)]
pub(crate) fn bank() -> u32 {
    setting(enforce_slot::BANK) & 1
}

/// Which kinds of identity the bank in use protects (`1 << id_kind`
/// bits): identity work nobody asked for is skipped.
#[inline(always)]
pub(crate) fn identity_kinds() -> u32 {
    setting(enforce_slot::KINDS + bank())
}

/// The rule in `slot`, with `flags == 0` when the slot is empty.
#[inline(always)]
fn rule(slot: u32) -> KRule {
    match KRULES.get(slot) {
        Some(r) => *r,
        None => KRule { ops: 0, flags: 0 },
    }
}

#[inline(always)]
fn enabled(r: &KRule) -> bool {
    r.flags & krule_flags::ENABLED != 0
}

/// True when `uid` (a login uid, else a uid) may act on process `p` despite
/// rule `slot`: exempt, or holding an unexpired grant over it. A `write`
/// (an [`ops::WRITE`] access) needs a full exemption or grant; a
/// read-only one covers only looking.
#[inline(always)]
fn excused(slot: u32, r: &KRule, p: &Protected, uid: u32, write: bool) -> bool {
    // SAFETY: map lookup with a key on the stack.
    if let Some(&mode) = unsafe { EXEMPT.get(ExemptKey { slot, uid }) }
        && (!write || mode != access_mode::READ)
    {
        return true;
    }
    if r.flags & krule_flags::HONOR_GRANTS == 0 {
        return false;
    }
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let keys = [
        GrantKey {
            uid,
            scope: grant_scope::ANY,
            value: 0,
            start_tick: 0,
        },
        GrantKey {
            uid,
            scope: grant_scope::UNIT,
            value: p.unit,
            start_tick: 0,
        },
        GrantKey {
            uid,
            scope: grant_scope::PROCESS,
            value: u64::from(p.tgid),
            start_tick: p.start_tick,
        },
    ];
    for k in &keys {
        // SAFETY: map lookup with a key on the stack.
        if let Some(&v) = unsafe { GRANTS.get(k) }
            && v & !GRANT_READ_ONLY > now
            && (!write || v & GRANT_READ_ONLY == 0)
        {
            return true;
        }
    }
    false
}

/// Rule slot that denies `op` (with [`ops::WRITE`] for an access that
/// changes the target) on process `p` to actor `uid`, or [`NO_SLOT`]. The
/// agent's own protection admits no exemption.
#[inline(always)]
pub(crate) fn decide(p: &Protected, op: u32, uid: u32) -> u32 {
    if p.slot == SELF_PROTECTION {
        return if op & (ops::ATTACH | ops::TRACEME) != 0 {
            SELF_PROTECTION
        } else {
            NO_SLOT
        };
    }
    let r = rule(p.slot);
    let write = op & ops::WRITE != 0;
    if !enabled(&r) || r.ops & op & !ops::WRITE == 0 || excused(p.slot, &r, p, uid, write) {
        return NO_SLOT;
    }
    p.slot
}

/// Rule slot that denies `op` for actor `uid` whatever the target (perf
/// and bpf rules), or [`NO_SLOT`]. Slots are dense from each bank's first:
/// the scan stops at the first empty one.
#[inline(always)]
pub(crate) fn decide_actor(op: u32, uid: u32) -> u32 {
    let base = bank() * KRULES_BANK;
    let none = Protected {
        slot: 0,
        tgid: 0,
        start_tick: 0,
        unit: 0,
    };
    let mut i = 0u32;
    while i < 64 {
        let slot = base + i;
        let r = rule(slot);
        if !enabled(&r) {
            return NO_SLOT;
        }
        if r.flags & krule_flags::ACTOR_ONLY != 0
            && r.ops & op != 0
            && !excused(slot, &r, &none, uid, false)
        {
            return slot;
        }
        i += 1;
    }
    NO_SLOT
}

/// Rule slot that denies executing the file with this inode, or [`NO_SLOT`].
#[inline(always)]
pub(crate) fn decide_exec(ino: u64, dev: u32, uid: u32) -> u32 {
    let key = InodeKey {
        ino,
        dev,
        bank: bank(),
    };
    // SAFETY: map lookup with a key on the stack.
    let slot = unsafe { EXEC_DENY.get(key) }.copied().unwrap_or(NO_SLOT);
    if slot == NO_SLOT {
        return NO_SLOT;
    }
    let r = rule(slot);
    let none = Protected::default();
    if !enabled(&r) || r.ops & ops::EXEC == 0 || excused(slot, &r, &none, uid, false) {
        return NO_SLOT;
    }
    slot
}

/// Whether `bpf(*_GET_FD_BY_ID)` names one of the agent's own objects.
#[inline(always)]
pub(crate) fn agent_object(kind: u32, id: u32) -> bool {
    // SAFETY: map lookup with a key on the stack.
    unsafe { AGENT_OBJECTS.get(ObjectKey { kind, id }) }.is_some()
}
