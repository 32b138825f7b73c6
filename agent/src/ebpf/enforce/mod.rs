//! Enforcement in the kernel: which mechanism is in force ([`mechanism`]),
//! and the decision maps the deny rules are compiled into. The kernel
//! decides; this module only keeps the maps current. Everything the LSM
//! hooks and the fallback decide from is written here: rule slots,
//! protected comms, cgroups (units), executables and processes, exemptions
//! and grants.

pub mod mechanism;

use std::os::unix::fs::MetadataExt as _;

use agent_common::{
    ENFORCE_MAP, EXEC_DENY_MAP, EXEMPT_MAP, ExemptKey, GRANTS_MAP, GrantKey, InodeKey, KRULES_MAP,
    KRULES_MAX, KRule, PROTECT_CGROUP_MAP, PROTECT_COMM_MAP, PROTECT_TGID_MAP, krule_flags,
};
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError},
};
use thiserror::Error;

pub use self::mechanism::Mechanism;
use crate::policy::kernel::KernelPolicy;

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
    #[error("the policy has {0} kernel rules; at most {KRULES_MAX} fit")]
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

/// Kernel `dev_t` (as in `super_block.s_dev`: major << 20 | minor) of a
/// userspace `st_dev`.
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | minor
}

fn comm_key(comm: &str) -> [u8; 16] {
    let mut k = [0u8; 16];
    let b = comm.as_bytes();
    let n = b.len().min(15);
    k[..n].copy_from_slice(&b[..n]);
    k
}

/// Empties a hash map (keys are collected first: deleting while iterating
/// restarts the kernel's iteration).
fn clear<K: aya::Pod + Eq + std::hash::Hash, V: aya::Pod>(
    m: &mut HashMap<MapData, K, V>,
    name: &'static str,
) -> Result<(), EnforceError> {
    let keys: Vec<K> = m.keys().filter_map(Result::ok).collect();
    for k in keys {
        match m.remove(&k) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(upd(name)(e)),
        }
    }
    Ok(())
}

pub struct Enforcer {
    mechanism: Mechanism,
    mode: Array<MapData, u32>,
    rules: Array<MapData, KRule>,
    tgids: HashMap<MapData, u32, u32>,
    cgroups: HashMap<MapData, u64, u32>,
    comms: HashMap<MapData, [u8; 16], u32>,
    exempt: HashMap<MapData, ExemptKey, u32>,
    grants: HashMap<MapData, GrantKey, u64>,
    exec: HashMap<MapData, InodeKey, u32>,
    policy: KernelPolicy,
    /// cgroup id -> slot, as installed (the fallback protects by tgid, so
    /// userspace needs to know which processes the units cover).
    cgroup_slots: std::collections::HashMap<u64, u32>,
    comm_slots: std::collections::HashMap<String, u32>,
}

impl Enforcer {
    /// Takes the enforcement maps out of the loaded object.
    pub fn new(ebpf: &mut Ebpf, mechanism: Mechanism) -> Result<Self, EnforceError> {
        let mut e = Self {
            mechanism,
            mode: take(ebpf, ENFORCE_MAP)?,
            rules: take(ebpf, KRULES_MAP)?,
            tgids: take(ebpf, PROTECT_TGID_MAP)?,
            cgroups: take(ebpf, PROTECT_CGROUP_MAP)?,
            comms: take(ebpf, PROTECT_COMM_MAP)?,
            exempt: take(ebpf, EXEMPT_MAP)?,
            grants: take(ebpf, GRANTS_MAP)?,
            exec: take(ebpf, EXEC_DENY_MAP)?,
            policy: KernelPolicy::default(),
            cgroup_slots: std::collections::HashMap::new(),
            comm_slots: std::collections::HashMap::new(),
        };
        e.mode
            .set(0, mechanism.kernel_mode(), 0)
            .map_err(upd(ENFORCE_MAP))?;
        Ok(e)
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    pub fn policy(&self) -> &KernelPolicy {
        &self.policy
    }

    /// Replaces the kernel rules. `units` maps a unit name to the cgroup ids
    /// of that unit now. Processes are re-protected by the caller afterwards
    /// ([`Self::protect`]) from its process table.
    pub fn install(
        &mut self,
        policy: KernelPolicy,
        units: impl Fn(&str) -> Vec<u64>,
    ) -> Result<(), EnforceError> {
        if policy.rules.len() > KRULES_MAX as usize {
            return Err(EnforceError::TooManyRules(policy.rules.len()));
        }
        // Disable every slot first so no half-written rule is ever consulted.
        for slot in 0..KRULES_MAX {
            self.rules
                .set(slot, KRule::default(), 0)
                .map_err(upd(KRULES_MAP))?;
        }
        clear(&mut self.tgids, PROTECT_TGID_MAP)?;
        clear(&mut self.cgroups, PROTECT_CGROUP_MAP)?;
        clear(&mut self.comms, PROTECT_COMM_MAP)?;
        clear(&mut self.exempt, EXEMPT_MAP)?;
        clear(&mut self.exec, EXEC_DENY_MAP)?;
        // One comm -> slot and one cgroup -> slot table, first rule wins,
        // serve both the kernel maps (LSM) and userspace (the fallback's
        // tgid list), so the two mechanisms never pick different rules.
        self.comm_slots = policy.comms();
        self.cgroup_slots.clear();
        for (i, r) in policy.rules.iter().enumerate() {
            let slot = u32::try_from(i).expect("invariant: bounded by KRULES_MAX");
            for u in &r.target_units {
                for id in units(u) {
                    self.cgroup_slots.entry(id).or_insert(slot);
                }
            }
        }
        for (c, slot) in &self.comm_slots {
            self.comms
                .insert(comm_key(c), *slot, 0)
                .map_err(upd(PROTECT_COMM_MAP))?;
        }
        for (id, slot) in &self.cgroup_slots {
            self.cgroups
                .insert(*id, *slot, 0)
                .map_err(upd(PROTECT_CGROUP_MAP))?;
        }
        for (i, r) in policy.rules.iter().enumerate() {
            let slot = u32::try_from(i).expect("invariant: bounded by KRULES_MAX");
            for uid in &r.exempt_uids {
                self.exempt
                    .insert(ExemptKey { slot, uid: *uid }, 1, 0)
                    .map_err(upd(EXEMPT_MAP))?;
            }
            for p in &r.exec_paths {
                // A listed debugger that is not installed has nothing to deny.
                if let Ok(m) = std::fs::metadata(p) {
                    let key = InodeKey {
                        ino: m.ino(),
                        dev: kernel_dev(m.dev()),
                        _pad: 0,
                    };
                    self.exec.insert(key, slot, 0).map_err(upd(EXEC_DENY_MAP))?;
                }
            }
        }
        for (i, r) in policy.rules.iter().enumerate() {
            let slot = u32::try_from(i).expect("invariant: bounded by KRULES_MAX");
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
        self.policy = policy;
        Ok(())
    }

    /// Rule slot protecting a process, by every condition the kernel maps
    /// hold (the kill fallback only sees the tgid list, so all must count).
    pub fn slot_for_process(&self, exe: &str, comm: &str, uid: u32, cgroup: u64) -> Option<u32> {
        [
            self.policy.slot_for_process(exe, uid),
            self.comm_slots.get(comm).copied(),
            self.cgroup_slots.get(&cgroup).copied(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Replaces every grant in the kernel map with `grants` (key, expiry in
    /// CLOCK_BOOTTIME ns).
    pub fn set_grants(&mut self, grants: &[(GrantKey, u64)]) -> Result<(), EnforceError> {
        clear(&mut self.grants, GRANTS_MAP)?;
        for (k, expiry) in grants {
            self.grants
                .insert(*k, *expiry, 0)
                .map_err(upd(GRANTS_MAP))?;
        }
        Ok(())
    }

    /// Marks a running process as protected by rule `slot`.
    pub fn protect(&mut self, tgid: u32, slot: u32) -> Result<(), EnforceError> {
        self.tgids
            .insert(tgid, slot, 0)
            .map_err(upd(PROTECT_TGID_MAP))
    }

    /// Forgets a process (it exited, or execed into something unprotected).
    pub fn unprotect(&mut self, tgid: u32) -> Result<(), EnforceError> {
        match self.tgids.remove(&tgid) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(upd(PROTECT_TGID_MAP)(e)),
        }
    }

    /// Grants `uid` (login uid, else uid) access over `scope`/`value` until
    /// `expiry_boot_ns` (CLOCK_BOOTTIME): the kernel stops honouring it then.
    pub fn grant(
        &mut self,
        uid: u32,
        scope: u32,
        value: u64,
        expiry_boot_ns: u64,
    ) -> Result<(), EnforceError> {
        self.grants
            .insert(GrantKey { uid, scope, value }, expiry_boot_ns, 0)
            .map_err(upd(GRANTS_MAP))
    }

    pub fn revoke(&mut self, uid: u32, scope: u32, value: u64) -> Result<(), EnforceError> {
        match self.grants.remove(&GrantKey { uid, scope, value }) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(upd(GRANTS_MAP)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_dev_encoding() {
        // /dev/sda1 is 8:1 -> kernel 8 << 20 | 1.
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(259, 3)), (259 << 20) | 3);
    }

    #[test]
    fn comm_keys_are_nul_padded_and_cut_at_15() {
        assert_eq!(&comm_key("gdb")[..4], b"gdb\0");
        let long = comm_key("a-very-long-command-name");
        assert_eq!(&long[..15], b"a-very-long-com");
        assert_eq!(long[15], 0);
    }
}
