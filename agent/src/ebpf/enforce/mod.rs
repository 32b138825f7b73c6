//! Enforcement in the kernel: which mechanism is in force ([`mechanism`]),
//! and the decision maps the deny rules are compiled into. The kernel
//! decides; this module only keeps the maps current: rule slots, the
//! identities they protect ([`identity`]), the processes that were running
//! before ([`seed`]; the kernel keeps the rest current at fork, exec and
//! exit), exemptions, grants, and the agent's own objects.
//!
//! A policy load never leaves a moment without a policy: the new rules go
//! into the bank not in use, the bank is flipped in one map write, every
//! protected process is moved to its new slot, and only then is the old
//! bank emptied (a process still on an old slot meanwhile is decided by
//! the old rule, which is still there).

pub mod identity;
pub mod mechanism;
pub mod seed;

use std::path::Path;

use agent_common::{
    AGENT_OBJECTS_MAP, CommKey, ENFORCE_MAP, EXEC_DENY_MAP, EXEMPT_MAP, ExemptKey, GRANTS_MAP,
    GrantKey, IdentityKey, InodeKey, KRULES_BANK, KRULES_MAP, KRule, ObjectKey, PROTECT_COMM_MAP,
    PROTECT_ID_MAP, PROTECT_MAP, PidKey, Protected, SELF_PROTECTION, access_mode, enforce_slot,
    id_kind, krule_flags,
};
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError},
};
use thiserror::Error;

pub use self::mechanism::Mechanism;
use self::{identity::Identities, seed::ProcFacts};
use crate::policy::{grant::AccessMode, kernel::KernelPolicy};

#[derive(Debug, Error)]
pub enum EnforceError {
    #[error("enforcement map `{0}` is missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("updating enforcement map `{map}`")]
    Update {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("the policy has {0} kernel rules; at most {KRULES_BANK} fit")]
    TooManyRules(usize),
}

fn take<T: TryFrom<aya::maps::Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, EnforceError> {
    let map = ebpf.take_map(name).ok_or(EnforceError::MissingMap(name))?;
    T::try_from(map).map_err(|source| EnforceError::Update { map: name, source })
}

fn upd(map: &'static str) -> impl Fn(MapError) -> EnforceError {
    move |source| EnforceError::Update { map, source }
}

/// Removes every key of a hash map that `stale` says goes (keys are
/// collected first: deleting while iterating restarts the kernel's walk).
fn remove_where<K: aya::Pod + Eq + std::hash::Hash, V: aya::Pod>(
    m: &mut HashMap<MapData, K, V>,
    name: &'static str,
    stale: impl Fn(&K, &V) -> bool,
) -> Result<(), EnforceError> {
    let keys: Vec<K> = m
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, v)| stale(k, v))
        .map(|(k, _)| k)
        .collect();
    for k in keys {
        match m.remove(&k) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(upd(name)(e)),
        }
    }
    Ok(())
}

/// The bank a slot belongs to.
fn bank_of(slot: u32) -> u32 {
    slot / KRULES_BANK
}

pub struct Enforcer {
    mechanism: Mechanism,
    settings: Array<MapData, u32>,
    rules: Array<MapData, KRule>,
    protect: HashMap<MapData, PidKey, Protected>,
    ids: HashMap<MapData, IdentityKey, u32>,
    comms: HashMap<MapData, CommKey, u32>,
    exempt: HashMap<MapData, ExemptKey, u32>,
    grants: HashMap<MapData, GrantKey, u64>,
    exec: HashMap<MapData, InodeKey, u32>,
    objects: HashMap<MapData, ObjectKey, u32>,
    /// The bank in use.
    bank: u32,
    /// Its identity tables, for seeding.
    identities: Identities,
    /// The host's pid namespace inode.
    host_ns: u32,
}

impl Enforcer {
    /// Takes the enforcement maps out of the loaded object.
    pub fn new(ebpf: &mut Ebpf, mechanism: Mechanism) -> Result<Self, EnforceError> {
        let mut e = Self {
            mechanism,
            settings: take(ebpf, ENFORCE_MAP)?,
            rules: take(ebpf, KRULES_MAP)?,
            protect: take(ebpf, PROTECT_MAP)?,
            ids: take(ebpf, PROTECT_ID_MAP)?,
            comms: take(ebpf, PROTECT_COMM_MAP)?,
            exempt: take(ebpf, EXEMPT_MAP)?,
            grants: take(ebpf, GRANTS_MAP)?,
            exec: take(ebpf, EXEC_DENY_MAP)?,
            objects: take(ebpf, AGENT_OBJECTS_MAP)?,
            bank: 0,
            identities: Identities::default(),
            host_ns: seed::host_pid_ns(Path::new("/proc")),
        };
        e.settings
            .set(enforce_slot::MODE, mechanism.kernel_mode(), 0)
            .map_err(upd(ENFORCE_MAP))?;
        Ok(e)
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Installs `policy` without a gap (see the module doc). Returns the
    /// names of its rules by slot, for the records of what they deny.
    pub fn install(&mut self, policy: &KernelPolicy) -> Result<Vec<(u32, String)>, EnforceError> {
        if policy.rules.len() > KRULES_BANK as usize {
            return Err(EnforceError::TooManyRules(policy.rules.len()));
        }
        let old = self.bank;
        let new = 1 - old;
        let base = new * KRULES_BANK;
        let running = seed::scan(Path::new("/proc"), self.host_ns)
            .into_iter()
            .filter_map(|f| f.exe)
            .collect();
        let mut ids = Identities::of(policy, base);
        ids.keep_replaced(&self.identities, &running);
        self.write_bank(policy, &ids, new)?;
        // The flip: from here on, exec and fork decide by the new rules.
        self.settings
            .set(enforce_slot::BANK, new, 0)
            .map_err(upd(ENFORCE_MAP))?;
        self.bank = new;
        self.identities = ids;
        self.reseed(old)?;
        self.drop_bank(old)?;
        Ok(policy
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (base + i as u32, r.name.clone()))
            .collect())
    }

    /// Writes `policy` into bank `bank`, which nothing reads yet.
    fn write_bank(
        &mut self,
        policy: &KernelPolicy,
        ids: &Identities,
        bank: u32,
    ) -> Result<(), EnforceError> {
        let base = bank * KRULES_BANK;
        for (c, slot) in &ids.comms {
            let key = CommKey { bank, comm: *c };
            self.comms
                .insert(key, *slot, 0)
                .map_err(upd(PROTECT_COMM_MAP))?;
        }
        let id_key = |kind, value, dev| IdentityKey {
            bank,
            kind,
            value,
            dev,
            _pad: 0,
        };
        for ((ino, dev), slot) in &ids.exes {
            self.ids
                .insert(id_key(id_kind::EXE, *ino, *dev), *slot, 0)
                .map_err(upd(PROTECT_ID_MAP))?;
        }
        for (hash, slot) in &ids.units {
            self.ids
                .insert(id_key(id_kind::UNIT, *hash, 0), *slot, 0)
                .map_err(upd(PROTECT_ID_MAP))?;
        }
        for (uid, slot) in &ids.uids {
            self.ids
                .insert(id_key(id_kind::UID, u64::from(*uid), 0), *slot, 0)
                .map_err(upd(PROTECT_ID_MAP))?;
        }
        for (i, r) in policy.rules.iter().enumerate() {
            let slot = base + i as u32;
            for (uid, mode) in &r.exempt {
                let mode = match mode {
                    AccessMode::Read => access_mode::READ,
                    AccessMode::Full => access_mode::FULL,
                };
                self.exempt
                    .insert(ExemptKey { slot, uid: *uid }, mode, 0)
                    .map_err(upd(EXEMPT_MAP))?;
            }
            for p in &r.exec_paths {
                // A listed debugger that is not installed has nothing to deny.
                if let Some((ino, dev)) = identity::exe_identity(Path::new(p)) {
                    self.exec
                        .insert(InodeKey { ino, dev, bank }, slot, 0)
                        .map_err(upd(EXEC_DENY_MAP))?;
                }
            }
            let mut flags = krule_flags::ENABLED;
            if r.honor_grants {
                flags |= krule_flags::HONOR_GRANTS;
            }
            if r.actor_only {
                flags |= krule_flags::ACTOR_ONLY;
            }
            self.rules
                .set(slot, KRule { ops: r.ops, flags }, 0)
                .map_err(upd(KRULES_MAP))?;
        }
        self.settings
            .set(enforce_slot::KINDS + bank, ids.kinds(), 0)
            .map_err(upd(ENFORCE_MAP))
    }

    /// Moves every running process to its slot in the bank now in use, and
    /// forgets those on `old`'s slots that nothing protects any more.
    fn reseed(&mut self, old: u32) -> Result<(), EnforceError> {
        // Scanned after the flip: a process started before it is either
        // in this scan or on the old bank (below).
        for f in seed::scan(Path::new("/proc"), self.host_ns) {
            self.seed(&f)?;
        }
        // Entries still on the old bank: processes the scan missed (they
        // started during it, from a parent still on the old bank). Decide
        // them now, by their own facts.
        let stale: Vec<u32> = self
            .protect
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| v.slot != SELF_PROTECTION && bank_of(v.slot) == old)
            .map(|(_, v)| v.tgid)
            .collect();
        for tgid in stale {
            match seed::facts(Path::new("/proc"), tgid, self.host_ns) {
                Some(f) => self.seed(&f)?,
                None => remove_where(&mut self.protect, PROTECT_MAP, |_, v| v.tgid == tgid)?,
            }
        }
        Ok(())
    }

    /// Protects (or stops protecting) one process by its facts.
    fn seed(&mut self, f: &ProcFacts) -> Result<(), EnforceError> {
        match self.identities.slot_of(f) {
            Some(slot) => {
                let value = Protected {
                    slot,
                    tgid: f.tgid,
                    start_tick: f.start_tick,
                    unit: f.unit.unwrap_or(0),
                };
                for k in &f.keys {
                    self.protect
                        .insert(*k, value, 0)
                        .map_err(upd(PROTECT_MAP))?;
                }
            }
            None => {
                for k in &f.keys {
                    match self.protect.get(k, 0) {
                        Ok(v) if v.slot != SELF_PROTECTION => match self.protect.remove(k) {
                            Ok(()) | Err(MapError::KeyNotFound) => {}
                            Err(e) => return Err(upd(PROTECT_MAP)(e)),
                        },
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Empties bank `bank` once nothing refers to it.
    fn drop_bank(&mut self, bank: u32) -> Result<(), EnforceError> {
        remove_where(&mut self.comms, PROTECT_COMM_MAP, |k, _| k.bank == bank)?;
        remove_where(&mut self.ids, PROTECT_ID_MAP, |k, _| k.bank == bank)?;
        remove_where(&mut self.exempt, EXEMPT_MAP, |k, _| bank_of(k.slot) == bank)?;
        remove_where(&mut self.exec, EXEC_DENY_MAP, |k, _| k.bank == bank)?;
        for i in 0..KRULES_BANK {
            self.rules
                .set(bank * KRULES_BANK + i, KRule::default(), 0)
                .map_err(upd(KRULES_MAP))?;
        }
        self.settings
            .set(enforce_slot::KINDS + bank, 0, 0)
            .map_err(upd(ENFORCE_MAP))
    }

    /// Protects the agent (process `tgid`, every thread) by its own
    /// identity, not by any name a policy or another process could give.
    /// Threads it starts later inherit this in the kernel.
    pub fn protect_self(&mut self, tgid: u32) -> Result<(), EnforceError> {
        let Some(f) = seed::facts(Path::new("/proc"), tgid, self.host_ns) else {
            return Ok(());
        };
        let value = Protected {
            slot: SELF_PROTECTION,
            tgid,
            start_tick: f.start_tick,
            unit: f.unit.unwrap_or(0),
        };
        for k in &f.keys {
            self.protect
                .insert(*k, value, 0)
                .map_err(upd(PROTECT_MAP))?;
        }
        Ok(())
    }

    /// Marks the agent's own programs, maps and links: `bpf(*_GET_FD_BY_ID)`
    /// on one is an attempt on the agent.
    pub fn protect_objects(&mut self, objects: &[ObjectKey]) -> Result<(), EnforceError> {
        for o in objects {
            self.objects
                .insert(*o, 1, 0)
                .map_err(upd(AGENT_OBJECTS_MAP))?;
        }
        Ok(())
    }

    /// Replaces every grant in the kernel map with `grants` (key, expiry in
    /// CLOCK_BOOTTIME ns).
    pub fn set_grants(&mut self, grants: &[(GrantKey, u64)]) -> Result<(), EnforceError> {
        let keep: std::collections::HashSet<GrantKey> = grants.iter().map(|(k, _)| *k).collect();
        for (k, expiry) in grants {
            self.grants
                .insert(*k, *expiry, 0)
                .map_err(upd(GRANTS_MAP))?;
        }
        remove_where(&mut self.grants, GRANTS_MAP, |k, _| !keep.contains(k))
    }
}
