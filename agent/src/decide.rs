//! Policy decisions for records: turns the enriched actor and target into a
//! [`PolicyEvent`], evaluates the loaded set (with the live grants), and
//! produces the record's `decision` plus, for alerts and denials, the one
//! human-readable line an engineer can act on (identical ones folded within
//! a window so a retry loop does not flood the journal).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    enforce::Mechanism,
    enrich::{Actor, Target},
    grants::GrantStore,
    policy::{
        self, Action, AlertFolder, EvalContext, FoldKey, NoGrants, PolicyEvent, PolicySet,
        event::{Detail, Kind},
        fold::FoldOutcome,
    },
    record::DecisionOut,
};

/// The detail fields policy looks at.
#[derive(Debug, Default, Clone)]
pub struct PolicyDetail {
    pub debugger: Option<String>,
    pub ptrace_request: Option<String>,
    pub via: Option<String>,
    pub access: Option<String>,
    pub prog_type: Option<String>,
}

pub struct Decider {
    set: Arc<PolicySet>,
    grants: Option<Arc<Mutex<GrantStore>>>,
    /// Deny rules the kernel enforces, and how.
    kernel_rules: HashSet<String>,
    mechanism: Mechanism,
    folder: AlertFolder,
}

fn policy_actor(a: &Actor) -> policy::event::Actor {
    policy::event::Actor {
        pid: Some(a.pid),
        uid: Some(a.uid),
        user: a.user.clone(),
        gid: Some(a.gid),
        groups: a.groups.clone(),
        euid: Some(a.euid),
        auid: a.auid,
        login_user: a.login_user.clone(),
        session_id: a.session_id,
        tty: a.tty.clone(),
        ssh: a.ssh.as_ref().map(|s| policy::event::Ssh {
            src_ip: Some(s.src_ip.clone()),
            src_port: Some(s.src_port),
        }),
        exe: Some(a.exe.clone()),
        comm: Some(a.comm.clone()),
        argv: a.argv.clone(),
        cwd: a.cwd.clone(),
        unit: a.unit.clone(),
        container_id: a.container_id.clone(),
    }
}

fn policy_target(t: &Target) -> policy::event::Target {
    policy::event::Target {
        pid: Some(t.pid),
        comm: t.comm.clone(),
        exe: t.exe.clone(),
        uid: t.uid,
        user: t.user.clone(),
        unit: t.unit.clone(),
        container_id: t.container_id.clone(),
    }
}

fn kind_of(kind: &str) -> Kind {
    match kind {
        "exec" => Kind::Exec,
        "ptrace" => Kind::Ptrace,
        "mem_access" => Kind::MemAccess,
        "perf_attach" => Kind::PerfAttach,
        "bpf" => Kind::Bpf,
        _ => Kind::Other,
    }
}

impl Decider {
    pub fn new(set: Arc<PolicySet>, grants: Option<Arc<Mutex<GrantStore>>>) -> Self {
        Self {
            set,
            grants,
            kernel_rules: HashSet::new(),
            mechanism: Mechanism::Off,
            folder: AlertFolder::new(Duration::from_secs(60)),
        }
    }

    /// A decider over an empty set: every action is observed only.
    pub fn empty() -> Self {
        let set = PolicySet::from_texts(&[]).expect("invariant: an empty policy set is valid");
        Self::new(Arc::new(set), None)
    }

    pub fn set(&self) -> &Arc<PolicySet> {
        &self.set
    }

    /// Swaps in a new policy (a reload), keeping grants and folding state.
    pub fn replace_set(&mut self, set: Arc<PolicySet>) {
        self.set = set;
    }

    /// Which deny rules the kernel enforces, and with what mechanism.
    pub fn set_kernel(&mut self, rules: HashSet<String>, mechanism: Mechanism) {
        self.kernel_rules = rules;
        self.mechanism = mechanism;
    }

    pub fn debugger_class(&self, exe: &str, comm: &str) -> Option<String> {
        self.set.debugger_class(exe, comm).map(str::to_owned)
    }

    /// The decision for an event, `None` when no rule matched (observed only).
    pub fn decide(
        &mut self,
        kind: &str,
        actor: &Actor,
        target: Option<&Target>,
        detail: PolicyDetail,
    ) -> Option<DecisionOut> {
        let ev = PolicyEvent {
            kind: kind_of(kind),
            actor: policy_actor(actor),
            target: target.filter(|t| t.known).map(policy_target),
            detail: Detail {
                debugger: detail.debugger,
                ptrace_request: detail.ptrace_request,
                via: detail.via,
                access: detail.access,
                prog_type: detail.prog_type,
            },
        };
        let guard = self.grants.as_ref().map(|g| g.lock());
        let no_grants = NoGrants;
        let lookup: &dyn policy::GrantLookup = match &guard {
            Some(Ok(store)) => &**store,
            // A poisoned lock: evaluate without grants (stricter, never looser).
            _ => &no_grants,
        };
        let ctx = EvalContext {
            now: chrono::Utc::now(),
            grants: lookup,
        };
        let d = self.set.evaluate(&ev, &ctx);
        d.rule?;
        // Under BPF-LSM the kernel refused a kernel rule's action, whichever
        // hook reported it, except an `environ` read: the LSM refuses only
        // PTRACE_MODE_ATTACH accesses, and environ is a READ. Under the kill
        // fallback, a kill comes with the event itself (the kernel's
        // decision, which never reaches here): an event that gets here was
        // not acted on (the fallback kills only ptrace, process_vm_* and
        // opens of `mem`), and must not be recorded as enforced.
        let enforced = (d.action == Action::Deny
            && self.mechanism == Mechanism::Lsm
            && ev.detail.via.as_deref() != Some("proc_environ")
            && d.rule.is_some_and(|r| self.kernel_rules.contains(r)))
        .then_some("lsm");
        let reason = match (d.action, enforced, self.mechanism) {
            (Action::Deny, None, Mechanism::Lsm | Mechanism::Kill) => format!(
                "{} (not enforced: the kernel does not act on this here; alerted instead)",
                d.reason
            ),
            (Action::Deny, None, _) => format!(
                "{} (not enforced: the kernel cannot decide this rule here; alerted instead)",
                d.reason
            ),
            _ => d.reason.to_owned(),
        };
        if d.action != Action::Allow {
            let key = FoldKey::new(&ev, &d);
            if self.folder.offer(key, Instant::now()) == FoldOutcome::Emit {
                tracing::warn!(target: "debugmon::decision", "{}", policy::human_line(&ev, &d));
            }
        }
        Some(DecisionOut {
            action: d.action.as_str(),
            enforced,
            rule: d.rule.map(str::to_owned),
            severity: Some(d.severity.as_str().to_owned()),
            reason: Some(reason),
            grant_id: d.grant_id.map(str::to_owned),
        })
    }
}
