//! Which rule protects a task, from what the task is: its executable (the
//! inode the kernel runs, not a name anyone can give a copy), its comm, the
//! systemd unit its cgroup belongs to (by the unit's name, which a restart
//! keeps, not the cgroup id, which it does not), and its user. The same
//! facts, in the same order, that the agent uses when it seeds processes
//! that were running before it.

use agent_common::{CommKey, IdentityKey, Protected, id_kind, unit_hash};
use aya_ebpf::helpers::generated::bpf_probe_read_kernel_str;

use super::{NO_SLOT, PROTECT_COMM, PROTECT_ID, bank, identity_kinds};
use crate::task::{offsets, read_or_zero, real_uid, start_tick};

/// Cgroup levels walked up looking for the unit (a service's processes sit
/// in its cgroup or a few below it).
const UNIT_DEPTH: u32 = 4;
/// Longest unit name matched (longer ones are not systemd units anyone
/// names in a policy).
const NAME_ROOM: usize = 64;

#[inline(always)]
fn lookup_id(kind: u32, value: u64, dev: u32) -> u32 {
    let key = IdentityKey {
        bank: bank(),
        kind,
        value,
        dev,
        _pad: 0,
    };
    // SAFETY: map lookup with a key on the stack.
    unsafe { PROTECT_ID.get(key) }.copied().unwrap_or(NO_SLOT)
}

/// Whether `name[..len]` ends with `suffix`.
#[inline(always)]
fn ends_with(name: &[u8; NAME_ROOM], len: usize, suffix: &[u8]) -> bool {
    if len < suffix.len() || len > NAME_ROOM {
        return false;
    }
    let start = len - suffix.len();
    let mut i = 0;
    while i < suffix.len() {
        let at = (start + i) & (NAME_ROOM - 1);
        if name[at] != suffix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// [`unit_hash`] of the innermost `.service` or `.scope` cgroup `task` is
/// in, within [`UNIT_DEPTH`] levels; 0 when there is none.
#[inline(always)]
pub(crate) fn unit_of(task: *const u8) -> u64 {
    let off = offsets();
    let css = read_or_zero::<*const u8>(task, off.task_cgroups);
    let cgrp = read_or_zero::<*const u8>(css, off.css_set_dfl_cgrp);
    let mut kn = read_or_zero::<*const u8>(cgrp, off.cgroup_kn);
    let mut level = 0;
    while level < UNIT_DEPTH {
        if kn.is_null() {
            return 0;
        }
        let name_ptr = read_or_zero::<*const u8>(kn, off.kernfs_node_name);
        let mut name = [0u8; NAME_ROOM];
        // SAFETY: the helper bounds the copy by the buffer and checks the
        // source; it returns the length with the NUL, or an error.
        let n = unsafe {
            bpf_probe_read_kernel_str(name.as_mut_ptr().cast(), NAME_ROOM as u32, name_ptr.cast())
        };
        if n > 1 {
            let len = (n - 1) as usize;
            if ends_with(&name, len, b".service") || ends_with(&name, len, b".scope") {
                return unit_hash(&name);
            }
        }
        kn = read_or_zero::<*const u8>(kn, off.kernfs_node_parent);
        level += 1;
    }
    0
}

/// The executable `task` runs: inode number and kernel device.
#[inline(always)]
pub(crate) fn exe_of(task: *const u8) -> (u64, u32) {
    let off = offsets();
    let mm = read_or_zero::<*const u8>(task, off.task_mm);
    let file = read_or_zero::<*const u8>(mm, off.mm_exe_file);
    let inode = read_or_zero::<*const u8>(file, off.file_f_inode);
    let ino = read_or_zero::<u64>(inode, off.inode_i_ino);
    let sb = read_or_zero::<*const u8>(inode, off.inode_i_sb);
    (ino, read_or_zero::<u32>(sb, off.sb_s_dev))
}

/// What a process is, for the rules: exe inode and device, comm, unit and
/// uid. A fact the caller does not have is 0.
pub(crate) struct Identity {
    pub(crate) ino: u64,
    pub(crate) dev: u32,
    pub(crate) comm: [u8; 16],
    pub(crate) unit: u64,
    pub(crate) uid: u32,
}

/// Rule slot (in the bank in use) protecting a process with this identity,
/// or [`NO_SLOT`]: the first rule that names any of its facts.
#[inline(always)]
pub(crate) fn slot_of(id: &Identity) -> u32 {
    let kinds = identity_kinds();
    let mut slot = NO_SLOT;
    if kinds & (1 << id_kind::EXE) != 0 && id.ino != 0 {
        slot = slot.min(lookup_id(id_kind::EXE, id.ino, id.dev));
    }
    if kinds & (1 << id_kind::COMM) != 0 {
        let key = CommKey {
            bank: bank(),
            comm: id.comm,
        };
        // SAFETY: map lookup with a key on the stack.
        slot = slot.min(unsafe { PROTECT_COMM.get(key) }.copied().unwrap_or(NO_SLOT));
    }
    if kinds & (1 << id_kind::UNIT) != 0 && id.unit != 0 {
        slot = slot.min(lookup_id(id_kind::UNIT, id.unit, 0));
    }
    if kinds & (1 << id_kind::UID) != 0 {
        slot = slot.min(lookup_id(id_kind::UID, u64::from(id.uid), 0));
    }
    slot
}

/// Whether any identity is protected at all (else nothing needs reading).
#[inline(always)]
pub(crate) fn any() -> bool {
    identity_kinds() != 0
}

/// `known` (the protection map's answer for `task`) or, when the map has
/// none, [`protection_of`]. Without a closure: a closure the compiler
/// keeps out of line in a program inlined more than once adds its stack
/// frame to the program's, past what older verifiers (6.1) allow.
#[inline(always)]
pub(crate) fn known_or_protection_of(
    known: Option<Protected>,
    task: *const u8,
) -> Option<Protected> {
    match known {
        Some(p) => Some(p),
        None => protection_of(task),
    }
}

/// The protection `task` would have by what it is, for a process the
/// protection map does not hold (yet: a child between its fork and the
/// fork tracepoint, which another process can already name).
#[inline(always)]
pub(crate) fn protection_of(task: *const u8) -> Option<Protected> {
    if !any() {
        return None;
    }
    let off = offsets();
    let (ino, dev) = exe_of(task);
    let unit = unit_of(task);
    let id = Identity {
        ino,
        dev,
        comm: read_or_zero::<[u8; 16]>(task, off.task_comm),
        unit,
        uid: real_uid(task),
    };
    match slot_of(&id) {
        NO_SLOT => None,
        slot => Some(Protected {
            slot,
            tgid: read_or_zero::<u32>(task, off.task_tgid),
            start_tick: start_tick(task),
            unit,
        }),
    }
}
