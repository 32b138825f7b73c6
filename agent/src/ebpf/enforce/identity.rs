//! The identities one bank of rules protects, as userspace holds them: the
//! same tables the kernel decides from at exec ([`agent_common::IdentityKey`],
//! [`agent_common::CommKey`]), built from a [`KernelPolicy`], and the same
//! rule for reading them: the lowest slot among the facts that match. Used
//! to seed the processes that were running before the agent, and to write
//! the kernel's tables.

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt as _,
    path::Path,
};

use agent_common::{id_kind, unit_hash};

use super::seed::ProcFacts;
pub use super::seed::comm_key;
use crate::{event::model::kernel_dev, policy::kernel::KernelPolicy};

/// The (inode, kernel device) of an executable path, if it exists now.
pub fn exe_identity(path: &Path) -> Option<(u64, u32)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), kernel_dev(m.dev())))
}

/// One bank's identity tables: fact -> the first slot naming it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Identities {
    pub comms: HashMap<[u8; 16], u32>,
    pub exes: HashMap<(u64, u32), u32>,
    pub units: HashMap<u64, u32>,
    pub uids: HashMap<u32, u32>,
    /// Each program path the rules name, with the files it stands for:
    /// the one it names now and, after an upgrade replaced it, the ones
    /// still running from before.
    pub programs: Vec<(String, (u64, u32))>,
}

impl Identities {
    /// The tables of `policy` with its rules in slots `base..`. Executable
    /// paths are resolved to the files they name now; a missing one
    /// protects nothing (and is looked for again at the next load).
    pub fn of(policy: &KernelPolicy, base: u32) -> Self {
        let mut t = Self::default();
        for (i, r) in policy.rules.iter().enumerate() {
            if r.actor_only {
                continue;
            }
            let slot = base + u32::try_from(i).expect("invariant: bounded by the bank size");
            for c in &r.target_comms {
                t.comms.entry(comm_key(c.as_bytes())).or_insert(slot);
            }
            for e in &r.target_exes {
                if let Some(id) = exe_identity(Path::new(e)) {
                    t.exes.entry(id).or_insert(slot);
                    t.programs.push((e.clone(), id));
                }
            }
            for u in &r.target_units {
                t.units.entry(unit_hash(u.as_bytes())).or_insert(slot);
            }
            for uid in &r.target_uids {
                t.uids.entry(*uid).or_insert(slot);
            }
        }
        t
    }

    /// Keeps protecting the processes that run a program `old` knew under
    /// a path that now names another file (a package upgrade renamed a
    /// new file over it): while one of `running` still runs the old file,
    /// it stays in the tables, under the slot the path has now.
    pub fn keep_replaced(&mut self, old: &Self, running: &HashSet<(u64, u32)>) {
        for (path, id) in &old.programs {
            if self.programs.iter().any(|(p, i)| p == path && i == id) || !running.contains(id) {
                continue;
            }
            let slot = self
                .programs
                .iter()
                .find(|(p, _)| p == path)
                .and_then(|(_, now)| self.exes.get(now).copied());
            if let Some(slot) = slot {
                self.exes.entry(*id).or_insert(slot);
                self.programs.push((path.clone(), *id));
            }
        }
    }

    /// `1 << id_kind` bits of the kinds present (the kernel skips the rest).
    pub fn kinds(&self) -> u32 {
        let mut k = 0;
        if !self.exes.is_empty() {
            k |= 1 << id_kind::EXE;
        }
        if !self.units.is_empty() {
            k |= 1 << id_kind::UNIT;
        }
        if !self.uids.is_empty() {
            k |= 1 << id_kind::UID;
        }
        if !self.comms.is_empty() {
            k |= 1 << id_kind::COMM;
        }
        k
    }

    /// The slot protecting a process with these facts: the lowest that
    /// names any of them, as the kernel decides at exec.
    pub fn slot_of(&self, f: &ProcFacts) -> Option<u32> {
        [
            f.exe.and_then(|e| self.exes.get(&e).copied()),
            self.comms.get(&f.comm).copied(),
            f.unit.and_then(|u| self.units.get(&u).copied()),
            self.uids.get(&f.uid).copied(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::kernel::KernelRule;

    #[test]
    fn kernel_dev_encoding() {
        // /dev/sda1 is 8:1 -> kernel 8 << 20 | 1.
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(259, 3)), (259 << 20) | 3);
    }

    #[test]
    fn comm_keys_are_nul_padded_and_cut_at_15() {
        assert_eq!(&comm_key(b"gdb")[..4], b"gdb\0");
        let long = comm_key(b"a-very-long-command-name");
        assert_eq!(&long[..15], b"a-very-long-com");
        assert_eq!(long[15], 0);
    }

    #[test]
    fn the_lowest_slot_naming_any_fact_wins_and_actor_rules_protect_nobody() {
        let policy = KernelPolicy {
            rules: vec![
                KernelRule {
                    name: "perf".into(),
                    actor_only: true,
                    target_uids: vec![0],
                    ..Default::default()
                },
                KernelRule {
                    name: "db".into(),
                    target_comms: vec!["postgres".into()],
                    target_units: vec!["postgresql.service".into()],
                    ..Default::default()
                },
                KernelRule {
                    name: "svc-user".into(),
                    target_uids: vec![105],
                    target_exes: vec!["/bin/sh".into()],
                    ..Default::default()
                },
            ],
        };
        let t = Identities::of(&policy, 128);
        assert_eq!(
            t.kinds(),
            (1 << id_kind::COMM) | (1 << id_kind::UNIT) | (1 << id_kind::UID) | (1 << id_kind::EXE)
        );
        let sh = exe_identity(Path::new("/bin/sh")).unwrap();
        let facts = |comm: &[u8], exe, unit: Option<&str>, uid| ProcFacts {
            comm: comm_key(comm),
            exe,
            unit: unit.map(|u| unit_hash(u.as_bytes())),
            uid,
            ..ProcFacts::default()
        };
        assert_eq!(t.slot_of(&facts(b"postgres", None, None, 105)), Some(129));
        assert_eq!(t.slot_of(&facts(b"x", None, None, 105)), Some(130));
        assert_eq!(
            t.slot_of(&facts(b"x", None, Some("postgresql.service"), 1)),
            Some(129),
            "a restarted unit is the same name"
        );
        assert_eq!(t.slot_of(&facts(b"x", Some(sh), None, 1)), Some(130));
        assert_eq!(t.slot_of(&facts(b"x", None, None, 0)), None, "actor-only");
    }

    #[test]
    fn a_replaced_program_keeps_its_running_processes_under_the_new_slot() {
        let policy = KernelPolicy {
            rules: vec![KernelRule {
                name: "db".into(),
                ops: agent_common::ops::ATTACH,
                target_exes: vec!["/bin/sh".into()],
                ..KernelRule::default()
            }],
        };
        let now = exe_identity(Path::new("/bin/sh")).unwrap();
        let gone = (now.0 + 1, now.1);
        let mut old = Identities::of(&policy, 0);
        // As if /bin/sh had been `gone` when the old bank was written.
        old.exes = HashMap::from([(gone, 0)]);
        old.programs = vec![("/bin/sh".into(), gone)];
        let mut new = Identities::of(&policy, 128);
        new.keep_replaced(&old, &HashSet::from([gone]));
        assert_eq!(new.exes.get(&gone), Some(&128), "still running: kept");
        assert_eq!(new.exes.get(&now), Some(&128));
        let mut next = Identities::of(&policy, 0);
        next.keep_replaced(&new, &HashSet::new());
        assert_eq!(next.exes.get(&gone), None, "no longer running: dropped");
    }
}
