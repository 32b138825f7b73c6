//! Policy -> kernel: the deny rules the kernel can decide by itself,
//! compiled into [`KernelPolicy`]. A deny rule is kernel-decidable when its
//! triggers map to kernel operations and its conditions are ones the maps
//! express: target comm, exe or unit given literally, target uids/users;
//! exemptions by role or user (expanded to uids here) and grants. Every
//! other deny rule still alerts, and the reason it cannot deny is reported
//! (at load and by `debugmon policy check`).

use agent_common::ops;

use super::{KernelPolicy, KernelRule};
use crate::{
    policy::{Action, PolicySet, Trigger, grant::AccessMode, model::RuleSpec},
    sys::users::UserDb,
};

/// Directories searched for a debugger given by name (`gdb`, `*/gdb`).
const BIN_DIRS: &[&str] = &["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"];

fn is_literal(p: &str) -> bool {
    !p.contains(['*', '?', '[', '{'])
}

/// Why `spec` cannot be decided in the kernel, or `None` when it can.
fn undecidable(spec: &RuleSpec) -> Option<String> {
    let a = &spec.actor;
    let actor_conds = !(a.users.is_empty()
        && a.groups.is_empty()
        && a.roles.is_empty()
        && a.uids.is_empty()
        && a.euids.is_empty()
        && a.auids.is_empty()
        && a.login_users.is_empty()
        && a.exe.is_empty()
        && a.comm.is_empty()
        && a.unit.is_empty()
        && a.debugger.is_empty()
        && a.argv_contains.is_empty()
        && a.argv_regex.is_none()
        && a.tty.is_none()
        && a.ssh.is_none()
        && a.container.is_none()
        && a.login_differs.is_none());
    if actor_conds {
        return Some("it has conditions on the actor, which the kernel maps do not hold".into());
    }
    let t = &spec.target;
    if t.container.is_some() || t.other_user.is_some() || t.same_process.is_some() {
        return Some("it compares actor and target (other_user, same_process, container)".into());
    }
    if let Some(p) = t
        .comm
        .iter()
        .chain(&t.exe)
        .chain(&t.unit)
        .find(|p| !is_literal(p))
    {
        return Some(format!(
            "target pattern `{p}` is a glob; the kernel matches literal names"
        ));
    }
    let d = &spec.detail;
    if !(d.ptrace_request.is_empty() && d.via.is_empty() && d.prog_type.is_empty()) {
        return Some("it has conditions on the request detail".into());
    }
    if spec.context.hours.is_some() || !spec.context.days.is_empty() {
        return Some("it has a time window".into());
    }
    if !(spec.unless.exe.is_empty() && spec.unless.comm.is_empty()) {
        return Some("it exempts actors by exe or comm, which the kernel does not check".into());
    }
    let targeted = t.comm.len() + t.exe.len() + t.unit.len() + t.users.len() + t.uids.len() > 0;
    let mut target_ops = false;
    let mut actor_ops = false;
    for trig in &spec.on {
        match trig {
            Trigger::Exec => return Some("it denies every exec".into()),
            Trigger::DebugSignal
            | Trigger::DebugPort
            | Trigger::LibraryInjection
            | Trigger::CoreDump
            | Trigger::Inventory
            | Trigger::InventoryRead => {
                return Some(
                    "the kernel records debug signals, debug ports, injection and core dumps \
                     but does not refuse them"
                        .into(),
                );
            }
            Trigger::PerfAttach | Trigger::BpfLoad => actor_ops = true,
            Trigger::DebuggerExec => {}
            _ => target_ops = true,
        }
    }
    if target_ops && !targeted {
        return Some("it has no target comm, exe, unit or user to protect".into());
    }
    if actor_ops && targeted {
        return Some("perf and bpf hooks see no target process".into());
    }
    None
}

fn ops_of(spec: &RuleSpec) -> u32 {
    spec.on.iter().fold(0, |m, t| {
        m | match t {
            Trigger::PtraceAttach
            | Trigger::PtraceAccess
            | Trigger::MemRead
            | Trigger::MemWrite
            | Trigger::MemAccess
            | Trigger::PidfdGetfd => ops::ATTACH,
            Trigger::PtraceTraceme => ops::TRACEME,
            Trigger::DebuggerExec => ops::EXEC,
            Trigger::PerfAttach => ops::PERF,
            Trigger::BpfLoad => ops::BPF,
            Trigger::Exec
            | Trigger::InventoryRead
            | Trigger::DebugSignal
            | Trigger::DebugPort
            | Trigger::LibraryInjection
            | Trigger::CoreDump
            | Trigger::Inventory => 0,
        }
    })
}

/// Existing files a debugger pattern names: an absolute literal path, or a
/// bare name / `*/name` looked up in the usual bin directories.
fn resolve_exe(pattern: &str) -> Vec<String> {
    if pattern.starts_with('/') && is_literal(pattern) {
        return vec![pattern.to_owned()];
    }
    let name = pattern.strip_prefix("*/").unwrap_or(pattern);
    if !is_literal(name) || name.contains('/') {
        return Vec::new();
    }
    BIN_DIRS
        .iter()
        .map(|d| format!("{d}/{name}"))
        .filter(|p| std::path::Path::new(p).exists())
        .collect()
}

/// The kernel part of `set`, and one note per deny rule that can only alert.
pub fn kernel_policy(set: &PolicySet, users: &UserDb) -> (KernelPolicy, Vec<String>) {
    let mut rules = Vec::new();
    let mut notes = Vec::new();
    for spec in set.rule_specs() {
        if spec.action != Action::Deny {
            continue;
        }
        if let Some(why) = undecidable(spec) {
            notes.push(format!(
                "rule {} can alert but not deny in the kernel, because {why}",
                spec.name
            ));
            continue;
        }
        let mut exempt: Vec<(u32, AccessMode)> = Vec::new();
        for role in &spec.unless.role {
            if let Some((_, r)) = set.role_specs().iter().find(|(n, _)| n == role) {
                let mode = r.access.unwrap_or_default();
                exempt.extend(
                    r.users
                        .iter()
                        .filter_map(|u| users.uid_of(u))
                        .map(|u| (u, mode)),
                );
                for g in &r.groups {
                    exempt.extend(users.uids_in_group(g).into_iter().map(|u| (u, mode)));
                }
            }
        }
        exempt.extend(
            spec.unless
                .users
                .iter()
                .filter_map(|u| users.uid_of(u))
                .map(|u| (u, AccessMode::Full)),
        );
        // One entry per uid, the widest access any of its roles gives.
        exempt.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        exempt.dedup_by_key(|e| e.0);
        let mut target_uids = spec.target.uids.clone();
        target_uids.extend(spec.target.users.iter().filter_map(|u| users.uid_of(u)));
        let ops = ops_of(spec);
        let exec_paths = if ops & agent_common::ops::EXEC != 0 {
            set.debugger_specs()
                .iter()
                .flat_map(|(_, d)| d.exe.iter().flat_map(|p| resolve_exe(p)))
                .collect()
        } else {
            Vec::new()
        };
        rules.push(KernelRule {
            name: spec.name.clone(),
            ops,
            target_comms: spec.target.comm.clone(),
            target_units: spec.target.unit.clone(),
            target_exes: spec.target.exe.clone(),
            target_uids,
            exempt,
            honor_grants: spec.unless.grant,
            actor_only: ops & (agent_common::ops::PERF | agent_common::ops::BPF) != 0,
            exec_paths,
        });
    }
    (KernelPolicy { rules }, notes)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn users() -> UserDb {
        UserDb::new(Path::new("/nonexistent-debugmon-etc"))
    }

    #[test]
    fn shipped_policies_compile_and_say_why_the_rest_cannot_deny() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let set = PolicySet::load_dirs(&[dir]).expect("shipped policies load");
        let (k, notes) = kernel_policy(&set, &users());
        let names: Vec<&str> = k.rules.iter().map(|r| r.name.as_str()).collect();
        assert!(
            names.contains(&"attach-to-database"),
            "{names:?} / {notes:?}"
        );
        let db = k
            .rules
            .iter()
            .find(|r| r.name == "attach-to-database")
            .unwrap();
        assert_eq!(db.ops, ops::ATTACH);
        assert!(db.honor_grants);
        assert!(db.target_comms.iter().any(|c| c == "postgres"));
        for n in &notes {
            assert!(
                n.contains("can alert but not deny in the kernel, because"),
                "{n}"
            );
        }
    }

    #[test]
    fn decidable_and_undecidable_rules() {
        let text = r#"
roles: { oncall: { users: [root] } }
rules:
  - name: protect
    on: [ptrace_attach, mem_write]
    target: { comm: [sleep], unit: [x.service] }
    unless: { role: [oncall], grant: true }
    action: deny
  - name: globbed
    on: [ptrace_attach]
    target: { comm: ["post*"] }
    action: deny
  - name: timed
    on: [ptrace_attach]
    target: { comm: [a] }
    context: { hours: "09:00-17:00" }
    action: deny
  - name: alert-only
    on: [ptrace_attach]
    target: { comm: [a] }
    action: alert
  - name: no-bpf
    on: [bpf_load]
    action: deny
"#;
        let set = PolicySet::from_texts(&[("t.yaml", text)]).expect("valid");
        let db = UserDb::new(Path::new("/etc"));
        let (k, notes) = kernel_policy(&set, &db);
        assert_eq!(k.rules.len(), 2, "{notes:?}");
        assert_eq!(k.rules[0].name, "protect");
        assert_eq!(
            k.rules[0].exempt,
            vec![(0, AccessMode::Full)],
            "root via the role"
        );
        assert_eq!(k.rules[0].target_units, vec!["x.service".to_owned()]);
        assert_eq!(k.rules[1].name, "no-bpf");
        assert!(k.rules[1].actor_only);
        assert_eq!(notes.len(), 2);
        assert!(notes[0].contains("globbed") && notes[0].contains("glob"));
        assert!(notes[1].contains("timed") && notes[1].contains("time window"));
    }
}
