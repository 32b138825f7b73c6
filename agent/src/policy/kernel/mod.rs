//! The part of the policy the kernel can decide: deny rules whose target
//! conditions are comm, unit (cgroup), exe or uid, whose actor conditions are
//! uids (roles and users expanded), and that honour grants. Built by the
//! policy compiler ([`compile`]); consumed by the kernel's decision maps
//! (`crate::ebpf::enforce`). Also decides, for each process the agent learns
//! about, which rule (if any) protects it.

mod compile;

use std::collections::HashMap;

pub use compile::kernel_policy;

/// One deny rule in kernel form. `slot` is its index in the KRULES map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelRule {
    pub name: String,
    /// `agent_common::ops` bits.
    pub ops: u32,
    pub target_comms: Vec<String>,
    /// systemd units (`postgresql.service`); resolved to cgroup ids.
    pub target_units: Vec<String>,
    /// Exact executable paths of protected processes.
    pub target_exes: Vec<String>,
    pub target_uids: Vec<u32>,
    /// Actors (login uid, else uid) the rule does not apply to.
    pub exempt_uids: Vec<u32>,
    pub honor_grants: bool,
    /// Applies to the actor whatever the target (perf, bpf).
    pub actor_only: bool,
    /// Executables whose exec is denied (bprm_check_security).
    pub exec_paths: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelPolicy {
    pub rules: Vec<KernelRule>,
}

impl KernelPolicy {
    /// Rule slot protecting a process with this exe and uid, by the
    /// conditions the kernel cannot check itself (exe path, uid).
    pub fn slot_for_process(&self, exe: &str, uid: u32) -> Option<u32> {
        self.rules
            .iter()
            .position(|r| {
                !r.actor_only
                    && (r.target_exes.iter().any(|e| e == exe) || r.target_uids.contains(&uid))
            })
            .and_then(|i| u32::try_from(i).ok())
    }

    /// Rule name for a slot, for records.
    pub fn rule_name(&self, slot: u32) -> Option<&str> {
        self.rules.get(slot as usize).map(|r| r.name.as_str())
    }

    /// comm -> slot, first rule wins.
    pub fn comms(&self) -> HashMap<String, u32> {
        let mut m = HashMap::new();
        for (i, r) in self.rules.iter().enumerate() {
            for c in &r.target_comms {
                m.entry(c.clone())
                    .or_insert(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> KernelPolicy {
        KernelPolicy {
            rules: vec![
                KernelRule {
                    name: "db".into(),
                    target_comms: vec!["postgres".into()],
                    target_exes: vec!["/usr/lib/postgresql/15/bin/postgres".into()],
                    ..Default::default()
                },
                KernelRule {
                    name: "svc-user".into(),
                    target_uids: vec![998],
                    target_comms: vec!["postgres".into()],
                    ..Default::default()
                },
                KernelRule {
                    name: "no-perf".into(),
                    actor_only: true,
                    target_uids: vec![0],
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn process_slots_by_exe_and_uid_first_rule_wins() {
        let p = policy();
        assert_eq!(
            p.slot_for_process("/usr/lib/postgresql/15/bin/postgres", 998),
            Some(0)
        );
        assert_eq!(p.slot_for_process("/bin/other", 998), Some(1));
        assert_eq!(
            p.slot_for_process("/bin/other", 0),
            None,
            "actor-only rules protect nobody"
        );
        assert_eq!(p.comms().get("postgres"), Some(&0));
        assert_eq!(p.rule_name(1), Some("svc-user"));
        assert_eq!(p.rule_name(9), None);
    }
}
