//! The pipeline's side of the kernel's decision maps: installing the
//! kernel part of a policy (the enforcer seeds the running processes; the
//! kernel keeps them current at fork, exec and exit), mirroring the live
//! grants with their expiry in boot time, and remembering the targets whose
//! tracer the kill fallback removed, for the runtime to check they were not
//! left stopped.

use agent_common::{GRANT_READ_ONLY, GrantKey, grant_scope, unit_hash};

use crate::{
    ebpf::enforce::{EnforceError, Enforcer, Mechanism},
    enrich::Enricher,
    error::error_chain,
    policy::{
        grant::{AccessMode, Grant, GrantTarget},
        kernel::KernelPolicy,
    },
    process::ProcessTable,
    sys::host,
};

/// The kernel's decision maps as the pipeline uses them (implemented by
/// the [`Enforcer`]; tests use a recorder).
pub trait Protector {
    /// Installs a kernel policy; returns its rule names by slot.
    fn install(&mut self, policy: &KernelPolicy) -> Result<Vec<(u32, String)>, EnforceError>;
    /// Replaces the kernel's grants.
    fn set_grants(&mut self, grants: &[(GrantKey, u64)]) -> Result<(), EnforceError>;
    /// The mechanism that enforces the kernel rules.
    fn mechanism(&self) -> Mechanism;
}

impl Protector for Enforcer {
    fn install(&mut self, policy: &KernelPolicy) -> Result<Vec<(u32, String)>, EnforceError> {
        Enforcer::install(self, policy)
    }
    fn set_grants(&mut self, grants: &[(GrantKey, u64)]) -> Result<(), EnforceError> {
        Enforcer::set_grants(self, grants)
    }
    fn mechanism(&self) -> Mechanism {
        Enforcer::mechanism(self)
    }
}

/// The protector and what it was told.
#[derive(Default)]
pub(super) struct Protection {
    protector: Option<Box<dyn Protector + Send>>,
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

    pub(super) fn set(&mut self, p: Box<dyn Protector + Send>) {
        self.protector = Some(p);
    }

    /// Installs a kernel policy; its rule names by slot (none without a
    /// protector).
    pub(super) fn install(
        &mut self,
        policy: &KernelPolicy,
    ) -> Result<Vec<(u32, String)>, EnforceError> {
        match self.protector.as_mut() {
            Some(p) => p.install(policy),
            None => Ok(policy
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| (i as u32, r.name.clone()))
                .collect()),
        }
    }

    /// Mirrors every live grant into the kernel map, with its expiry in
    /// boot time.
    pub(super) fn set_grants(&mut self, grants: &[Grant], table: &ProcessTable, e: &Enricher) {
        let Some(p) = self.protector.as_mut() else {
            return;
        };
        let keys = grant_keys(grants, table, e);
        if let Err(err) = p.set_grants(&keys) {
            tracing::error!(error = %error_chain(&err), "updating the kernel's grants failed");
        }
    }
}

/// The kernel's keys for `grants`: the user's uid and the scope each
/// target stands for (a unit by name, which a restart keeps; a process by
/// pid and start time, which a reused pid does not share; an executable's
/// processes now).
fn grant_keys(grants: &[Grant], table: &ProcessTable, e: &Enricher) -> Vec<(GrantKey, u64)> {
    // The grant store's clock: wall time moved on by boot time, so a
    // wall-clock jump neither ends nor stretches a grant in the kernel.
    let now_wall = crate::grants::Clock::now(&crate::grants::SystemClock);
    let now_boot = host::boottime_ns();
    let tick = host::tick_ns().max(1);
    let mut keys = Vec::new();
    for g in grants {
        let Some(uid) = e.users().uid_of(&g.user) else {
            tracing::warn!(user = %g.user, "grant for an unknown user: not given to the kernel");
            continue;
        };
        let left = (g.expires - now_wall).num_nanoseconds().unwrap_or(0).max(0);
        let expiry = now_boot
            .saturating_add(u64::try_from(left).unwrap_or(0))
            .min(GRANT_READ_ONLY - 1);
        let expiry = match g.mode {
            AccessMode::Read => expiry | GRANT_READ_ONLY,
            AccessMode::Full => expiry,
        };
        let key = |scope, value, start_tick| {
            (
                GrantKey {
                    uid,
                    scope,
                    value,
                    start_tick,
                },
                expiry,
            )
        };
        match &g.target {
            GrantTarget::Any => keys.push(key(grant_scope::ANY, 0, 0)),
            GrantTarget::Unit(u) => keys.push(key(grant_scope::UNIT, unit_hash(u.as_bytes()), 0)),
            GrantTarget::Pid(pid) => {
                // A grant from before start times were kept names the
                // process that has the pid now.
                let start = g
                    .start_tick
                    .or_else(|| table.get(*pid).map(|p| p.start_ns / tick));
                if let Some(start) = start {
                    keys.push(key(grant_scope::PROCESS, u64::from(*pid), start));
                }
            }
            GrantTarget::Exe(path) => {
                for pid in table.pids() {
                    if let Some(p) = table
                        .get(pid)
                        .filter(|p| p.exited_ns.is_none() && *p.exe == *path.as_bytes())
                    {
                        keys.push(key(grant_scope::PROCESS, u64::from(pid), p.start_ns / tick));
                    }
                }
            }
        }
    }
    keys
}
