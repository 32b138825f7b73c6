//! In-kernel decisions: the maps userspace compiles the deny rules into and
//! the one function that reads them. Used by the BPF-LSM hooks (deny with
//! -EPERM) and, where BPF-LSM is missing, by the syscall-entry fallback
//! (SIGKILL the actor). Userspace is never on the decision path: a grant's
//! expiry is a boot-time timestamp compared here, so it ends on time even if
//! the agent is busy or gone.

use agent_common::{
    ExemptKey, GrantKey, InodeKey, KRULES_MAX, KRule, OFFSET_ABSENT, grant_scope, krule_flags,
};
use aya_ebpf::{
    helpers::generated::{bpf_get_current_task, bpf_ktime_get_boot_ns},
    macros::map,
    maps::{Array, HashMap},
};

use crate::task::{offsets, read_creds, read_or_zero};

#[map(name = "KRULES")]
static KRULES: Array<KRule> = Array::with_max_entries(KRULES_MAX, 0);

#[map(name = "PROTECT_TGID")]
static PROTECT_TGID: HashMap<u32, u32> = HashMap::with_max_entries(65_536, 0);

#[map(name = "PROTECT_CGROUP")]
static PROTECT_CGROUP: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

#[map(name = "PROTECT_COMM")]
static PROTECT_COMM: HashMap<[u8; 16], u32> = HashMap::with_max_entries(4096, 0);

#[map(name = "EXEMPT")]
static EXEMPT: HashMap<ExemptKey, u32> = HashMap::with_max_entries(16_384, 0);

#[map(name = "GRANTS")]
static GRANTS: HashMap<GrantKey, u64> = HashMap::with_max_entries(4096, 0);

#[map(name = "EXEC_DENY")]
static EXEC_DENY: HashMap<InodeKey, u32> = HashMap::with_max_entries(1024, 0);

/// Slot 0: the `enforce_mode` in force. A map, not a load-time global: the
/// agent learns whether BPF-LSM works only after trying to attach it.
#[map(name = "ENFORCE")]
static ENFORCE: Array<u32> = Array::with_max_entries(1, 0);

/// Whether the agent protects process `tgid` by pid (the list the
/// syscall-entry fallback decides from).
#[inline(always)]
pub(crate) fn tgid_protected(tgid: u32) -> bool {
    // SAFETY: map lookup with a key on the stack.
    unsafe { PROTECT_TGID.get(tgid) }.is_some()
}

#[inline(always)]
pub(crate) fn mode() -> u32 {
    ENFORCE.get(0).copied().unwrap_or(0)
}

/// cgroup v2 id of any task: task->cgroups->dfl_cgrp->kn->id.
#[inline(always)]
pub(crate) fn task_cgroup_id(task: *const u8) -> u64 {
    let off = offsets();
    let css = read_or_zero::<*const u8>(task, off.task_cgroups);
    let cgrp = read_or_zero::<*const u8>(css, off.css_set_dfl_cgrp);
    let kn = read_or_zero::<*const u8>(cgrp, off.cgroup_kn);
    read_or_zero::<u64>(kn, off.kernfs_node_id)
}

/// Login uid of the current task if set, else its uid: grants and
/// exemptions follow the person, through sudo.
#[inline(always)]
fn actor_id() -> u32 {
    let off = offsets();
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let mut fl = 0;
    let c = read_creds(task, &off, &mut fl);
    if c.auid != u32::MAX { c.auid } else { c.uid }
}

/// "No rule": a plain value, not an `Option`. An `Option<u32>` that is
/// `None` leaves its payload undefined, and LLVM may spill that undefined
/// register; older verifiers (6.1) reject reading it (`R6 !read_ok`).
pub(crate) const NO_SLOT: u32 = u32::MAX - 1;

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

/// True when the actor may do `op` despite rule `slot`: exempt, or holding
/// an unexpired grant over the target.
#[inline(always)]
fn excused(slot: u32, r: &KRule, cgroup: u64, tgid: u32) -> bool {
    let uid = actor_id();
    // SAFETY: map lookup with a key on the stack.
    if unsafe { EXEMPT.get(ExemptKey { slot, uid }) }.is_some() {
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
        },
        GrantKey {
            uid,
            scope: grant_scope::CGROUP,
            value: cgroup,
        },
        GrantKey {
            uid,
            scope: grant_scope::TGID,
            value: u64::from(tgid),
        },
    ];
    for k in &keys {
        // SAFETY: map lookup with a key on the stack.
        if let Some(&expiry) = unsafe { GRANTS.get(k) }
            && expiry > now
        {
            return true;
        }
    }
    false
}

/// Rule slot that denies `op` on the target, or [`NO_SLOT`]. `task` may be
/// null (syscall-entry fallback): then only the tgid list is consulted.
#[inline(always)]
pub(crate) fn decide_target(task: *const u8, tgid: u32, op: u32) -> u32 {
    let off = offsets();
    // SAFETY: map lookups with keys on the stack.
    let mut slot = unsafe { PROTECT_TGID.get(tgid) }
        .copied()
        .unwrap_or(NO_SLOT);
    let mut cgroup = 0;
    if !task.is_null() {
        cgroup = task_cgroup_id(task);
        if slot == NO_SLOT {
            // SAFETY: as above.
            slot = unsafe { PROTECT_CGROUP.get(cgroup) }
                .copied()
                .unwrap_or(NO_SLOT);
        }
        if slot == NO_SLOT && off.task_comm != OFFSET_ABSENT {
            let comm = read_or_zero::<[u8; 16]>(task, off.task_comm);
            // SAFETY: as above.
            slot = unsafe { PROTECT_COMM.get(comm) }
                .copied()
                .unwrap_or(NO_SLOT);
        }
    }
    if slot == NO_SLOT {
        return NO_SLOT;
    }
    let r = rule(slot);
    if !enabled(&r) || r.ops & op == 0 || excused(slot, &r, cgroup, tgid) {
        return NO_SLOT;
    }
    slot
}

/// Rule slot that denies `op` for the current actor whatever the target
/// (perf and bpf rules), or [`NO_SLOT`]. Slots are dense from 0: the scan
/// stops at the first empty one.
#[inline(always)]
pub(crate) fn decide_actor(op: u32) -> u32 {
    let mut slot = 0u32;
    while slot < 64 {
        let r = rule(slot);
        if !enabled(&r) {
            return NO_SLOT;
        }
        if r.flags & krule_flags::ACTOR_ONLY != 0 && r.ops & op != 0 && !excused(slot, &r, 0, 0) {
            return slot;
        }
        slot += 1;
    }
    NO_SLOT
}

/// Rule slot that denies executing the file with this inode, or [`NO_SLOT`].
#[inline(always)]
pub(crate) fn decide_exec(ino: u64, dev: u32) -> u32 {
    // SAFETY: map lookup with a key on the stack.
    let slot = unsafe { EXEC_DENY.get(InodeKey { ino, dev, _pad: 0 }) }
        .copied()
        .unwrap_or(NO_SLOT);
    if slot == NO_SLOT {
        return NO_SLOT;
    }
    let r = rule(slot);
    if !enabled(&r) || r.ops & agent_common::ops::EXEC == 0 || excused(slot, &r, 0, 0) {
        return NO_SLOT;
    }
    slot
}
