//! Keeps the kernel's decision maps in step with what userspace knows: the
//! processes a kernel rule protects (the kill fallback decides from a list
//! of tgids), the rules themselves after a policy load, and the live grants
//! with their expiry in boot time. Also remembers the targets whose tracer
//! the kill fallback removed, for the runtime to check they were not left
//! stopped.

use std::collections::HashMap;

use agent_common::{GrantKey, grant_scope};

use crate::{
    ebpf::enforce::{EnforceError, Enforcer, Mechanism},
    enrich::Enricher,
    error::error_chain,
    policy::{
        grant::{Grant, GrantTarget},
        kernel::KernelPolicy,
    },
    process::{ProcessEntry, ProcessTable},
    sys::host,
};

/// The kernel's decision maps as the pipeline uses them (implemented by
/// the [`Enforcer`]; tests use a recorder).
pub trait Protector {
    /// Rule slot that protects this process, if any.
    fn slot_for(&self, e: &ProcessEntry) -> Option<u32>;
    fn protect(&mut self, tgid: u32, slot: u32);
    fn unprotect(&mut self, tgid: u32);
    /// Installs a new kernel policy; `units` resolves a unit to cgroup ids.
    fn install(
        &mut self,
        policy: KernelPolicy,
        units: &dyn Fn(&str) -> Vec<u64>,
    ) -> Result<(), EnforceError>;
    /// Replaces the kernel's grants.
    fn set_grants(&mut self, grants: &[(GrantKey, u64)]) -> Result<(), EnforceError>;
    /// The mechanism that enforces the kernel rules.
    fn mechanism(&self) -> Mechanism;
}

impl Protector for Enforcer {
    fn slot_for(&self, e: &ProcessEntry) -> Option<u32> {
        let exe = String::from_utf8_lossy(&e.exe);
        let comm = String::from_utf8_lossy(&e.comm);
        self.slot_for_process(&exe, &comm, e.creds.uid, e.cgroup_id)
    }
    fn install(
        &mut self,
        policy: KernelPolicy,
        units: &dyn Fn(&str) -> Vec<u64>,
    ) -> Result<(), EnforceError> {
        Enforcer::install(self, policy, units)
    }
    fn set_grants(&mut self, grants: &[(GrantKey, u64)]) -> Result<(), EnforceError> {
        Enforcer::set_grants(self, grants)
    }
    fn protect(&mut self, tgid: u32, slot: u32) {
        if let Err(e) = Enforcer::protect(self, tgid, slot) {
            tracing::error!(tgid, error = %e, "cannot protect a process in the kernel map");
        }
    }
    fn unprotect(&mut self, tgid: u32) {
        if let Err(e) = Enforcer::unprotect(self, tgid) {
            tracing::error!(tgid, error = %e, "cannot update the kernel's protected processes");
        }
    }
    fn mechanism(&self) -> Mechanism {
        Enforcer::mechanism(self)
    }
}

/// The protector and what it was told.
#[derive(Default)]
pub(super) struct Protection {
    protector: Option<Box<dyn Protector + Send>>,
    /// Processes protected in the kernel map, by tgid.
    protected: HashMap<u32, u32>,
    /// Targets whose tracer the kill fallback removed: the agent checks they
    /// are not left stopped.
    pub(super) resume: Vec<u32>,
}

impl Protection {
    pub(super) fn mechanism(&self) -> Mechanism {
        self.protector
            .as_ref()
            .map_or(Mechanism::Off, |p| p.mechanism())
    }

    /// Installs the protector and protects every known process that a
    /// kernel rule covers (called again after each policy load).
    pub(super) fn set(&mut self, p: Box<dyn Protector + Send>, table: &ProcessTable) {
        self.protector = Some(p);
        for tgid in std::mem::take(&mut self.protected).into_keys() {
            if let Some(p) = self.protector.as_mut() {
                p.unprotect(tgid);
            }
        }
        let pids: Vec<u32> = table.pids().collect();
        for pid in pids {
            self.sync(pid, table);
        }
    }

    /// Installs a new kernel policy and re-protects every known process.
    pub(super) fn install(
        &mut self,
        policy: KernelPolicy,
        table: &ProcessTable,
        enricher: &mut Enricher,
    ) -> Result<(), EnforceError> {
        let Some(mut p) = self.protector.take() else {
            return Ok(());
        };
        let units: HashMap<String, Vec<u64>> = policy
            .rules
            .iter()
            .flat_map(|r| r.target_units.iter())
            .map(|u| (u.clone(), enricher.cgroup_ids_of_unit(u)))
            .collect();
        let r = p.install(policy, &|unit| units.get(unit).cloned().unwrap_or_default());
        self.protected.clear();
        self.set(p, table);
        r
    }

    /// Whether process `tgid` is protected in the kernel as a rule says now.
    pub(super) fn sync(&mut self, tgid: u32, table: &ProcessTable) {
        let Some(p) = self.protector.as_mut() else {
            return;
        };
        let slot = table
            .get(tgid)
            .filter(|e| e.exited_ns.is_none())
            .and_then(|e| p.slot_for(e));
        match (slot, self.protected.get(&tgid).copied()) {
            (Some(s), Some(old)) if s == old => {}
            (Some(s), _) => {
                p.protect(tgid, s);
                self.protected.insert(tgid, s);
            }
            (None, Some(_)) => {
                p.unprotect(tgid);
                self.protected.remove(&tgid);
            }
            (None, None) => {}
        }
    }

    /// Mirrors every live grant into the kernel map, with its expiry in
    /// boot time.
    pub(super) fn set_grants(&mut self, grants: &[Grant], table: &ProcessTable, e: &mut Enricher) {
        let Some(p) = self.protector.as_mut() else {
            return;
        };
        let keys = grant_keys(grants, table, e);
        if let Err(err) = p.set_grants(&keys) {
            tracing::error!(error = %error_chain(&err), "updating the kernel's grants failed");
        }
    }
}

/// Live processes running `exe`.
fn pids_with_exe(table: &ProcessTable, exe: &[u8]) -> Vec<u32> {
    table
        .pids()
        .filter(|&pid| {
            table
                .get(pid)
                .is_some_and(|e| e.exited_ns.is_none() && *e.exe == *exe)
        })
        .collect()
}

/// The kernel's keys for `grants`: the user's uid and the scope each
/// target stands for now (a unit's cgroups, an executable's processes).
fn grant_keys(grants: &[Grant], table: &ProcessTable, e: &mut Enricher) -> Vec<(GrantKey, u64)> {
    let now_wall = chrono::Utc::now();
    let now_boot = host::boottime_ns();
    let mut keys = Vec::new();
    for g in grants {
        let Some(uid) = e.users().uid_of(&g.user) else {
            tracing::warn!(user = %g.user, "grant for an unknown user: not given to the kernel");
            continue;
        };
        let left = (g.expires - now_wall).num_nanoseconds().unwrap_or(0).max(0);
        let expiry = now_boot.saturating_add(u64::try_from(left).unwrap_or(0));
        let key = |scope, value| (GrantKey { uid, scope, value }, expiry);
        match &g.target {
            GrantTarget::Any => keys.push(key(grant_scope::ANY, 0)),
            GrantTarget::Pid(pid) => keys.push(key(grant_scope::TGID, u64::from(*pid))),
            GrantTarget::Unit(u) => {
                for id in e.cgroup_ids_of_unit(u) {
                    keys.push(key(grant_scope::CGROUP, id));
                }
            }
            GrantTarget::Exe(path) => {
                for pid in pids_with_exe(table, path.as_bytes()) {
                    keys.push(key(grant_scope::TGID, u64::from(pid)));
                }
            }
        }
    }
    keys
}
