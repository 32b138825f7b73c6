//! The one place that says allow, alert or deny, and whether and how it was
//! enforced: every record's `decision` is a [`Verdict`] made here. A denial
//! the kernel made itself (BPF-LSM refused it, or the kill fallback killed
//! the actor) comes with the event and is taken as it is; anything else is
//! decided by the loaded policy (with the live grants) from the enriched
//! actor and target. Alerts and denials also get the one line an engineer
//! can act on (identical ones folded within a window so a retry loop does
//! not flood the journal), and the grants a decision relied on are kept
//! for the runtime to record as used.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use agent_common::Enforcement;
use serde::Serialize;

use crate::{
    ebpf::enforce::Mechanism,
    enrich::{Actor, Target},
    event::Kind,
    grants::GrantStore,
    policy::{
        self, Action, AlertFolder, EvalContext, FoldKey, NoGrants, PolicyEvent, PolicySet,
        event::Detail, fold::FoldOutcome,
    },
};

/// A record's `decision` (docs/records.md): what was decided about the
/// action and whether the kernel enforced it. Fields in key order: the
/// canonical writer streams them as they come.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verdict {
    /// allow | alert | deny
    pub action: &'static str,
    /// `"lsm"` (a BPF-LSM hook refused it with -EPERM), `"kill"` (the kill
    /// fallback killed the actor before the action took effect) or `null`
    /// (not enforced).
    pub enforced: Option<&'static str>,
    pub grant_id: Option<String>,
    pub reason: Option<String>,
    pub rule: Option<String>,
    pub severity: Option<String>,
    /// The deciding rule's tags (MITRE ATT&CK ids and the like), however
    /// the action was enforced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The detail fields policy looks at.
#[derive(Debug, Default, Clone)]
pub struct PolicyDetail {
    pub debugger: Option<String>,
    pub ptrace_request: Option<String>,
    pub via: Option<String>,
    pub access: Option<String>,
    pub prog_type: Option<String>,
    /// `ok` or the errno name, when the call's result is known.
    pub result: Option<String>,
    /// An environment read by one of the host's process tools.
    pub inventory: bool,
    /// exec: the switches, as policy names them (`jdwp`, `jdwp:any_address`).
    pub debug_switches: Vec<String>,
    /// inventory: the findings, as policy names them.
    pub findings: Vec<String>,
    /// The access changes the target (the kernel's judgement).
    pub writes: bool,
}

pub use agent_common::SELF_PROTECTION as SELF_PROTECTION_SLOT;

/// The tag of the agent's own protection: an attempt to impair a defence
/// (MITRE ATT&CK T1562.001).
const SELF_PROTECTION_TAG: &str = "attack.t1562.001";

pub struct Decider {
    set: Arc<PolicySet>,
    grants: Option<Arc<Mutex<GrantStore>>>,
    /// Names of the kernel's rule slots (both banks: events decided by the
    /// bank a policy load replaced may still be on their way).
    kernel_slots: HashMap<u32, String>,
    /// The same names, for lookups by name.
    kernel_rules: HashSet<String>,
    mechanism: Mechanism,
    folder: AlertFolder,
    /// The agent's own pid: what it protects without a rule.
    agent_pid: u32,
    /// Grant ids access decisions relied on since the last
    /// [`Decider::take_grant_uses`].
    grant_uses: Vec<String>,
    /// Debugger classes of the programs seen under the set in use.
    debuggers: DebuggerCache,
}

/// Most programs started on a host are the same few, and matching a
/// program against the `debuggers:` globs costs about a tenth of building
/// its exec record: the class is kept per exe and comm, looked up without
/// an allocation, dropped with the set it came from.
#[derive(Default)]
struct DebuggerCache {
    /// By a hash of exe and comm, checked on a hit.
    by_hash: HashMap<u64, KnownProgram>,
}

/// Exe, comm and debugger class.
type KnownProgram = (Box<str>, Box<str>, Option<Box<str>>);

/// Programs the cache holds at most; then it starts over.
const DEBUGGER_CACHE_MAX: usize = 4096;

impl DebuggerCache {
    fn class(&mut self, set: &PolicySet, exe: &str, comm: &str) -> Option<String> {
        use std::hash::BuildHasher as _;
        let key = self.by_hash.hasher().hash_one((exe, comm));
        if let Some((e, c, class)) = self.by_hash.get(&key)
            && **e == *exe
            && **c == *comm
        {
            return class.as_deref().map(str::to_owned);
        }
        let class = set.debugger_class(exe, comm);
        if self.by_hash.len() >= DEBUGGER_CACHE_MAX {
            self.by_hash.clear();
        }
        let entry = (exe.into(), comm.into(), class.map(Into::into));
        self.by_hash.insert(key, entry);
        class.map(str::to_owned)
    }
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
        exe_trusted: Some(a.exe_trusted),
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
        start_ns: t.start_ns,
        comm: t.comm.clone(),
        exe: t.exe.clone(),
        uid: t.uid,
        user: t.user.clone(),
        unit: t.unit.clone(),
        container_id: t.container_id.clone(),
    }
}

impl Decider {
    pub fn new(set: Arc<PolicySet>, grants: Option<Arc<Mutex<GrantStore>>>) -> Self {
        Self {
            set,
            grants,
            kernel_slots: HashMap::new(),
            kernel_rules: HashSet::new(),
            mechanism: Mechanism::Off,
            folder: AlertFolder::new(Duration::from_secs(60)),
            agent_pid: std::process::id(),
            grant_uses: Vec::new(),
            debuggers: DebuggerCache::default(),
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
        self.debuggers = DebuggerCache::default();
    }

    /// The deny rules the kernel now holds, by slot (one bank's worth;
    /// the other bank's names stay for events it decided), and the
    /// mechanism that enforces them.
    pub fn set_kernel(&mut self, slots: Vec<(u32, String)>, mechanism: Mechanism) {
        self.kernel_rules = slots.iter().map(|(_, n)| n.clone()).collect();
        for (slot, name) in slots {
            self.kernel_slots.insert(slot, name);
        }
        self.mechanism = mechanism;
    }

    /// Whether an access with `detail` by `actor` is an environment read
    /// by one of the host's process tools (`process_tools:`), known by
    /// the file the kernel ran, never by a name.
    pub fn is_inventory(&self, kind: Kind, actor: &Actor, detail: &PolicyDetail) -> bool {
        kind == Kind::MemAccess
            && detail.via.as_deref() == Some("proc_environ")
            && detail.access.as_deref() == Some("read")
            && actor.exe_trusted
            && self.set.is_process_tool(&actor.exe)
    }

    pub fn debugger_class(&mut self, exe: &str, comm: &str) -> Option<String> {
        self.debuggers.class(&self.set, exe, comm)
    }

    /// Grant ids that decisions relied on since the last call.
    pub fn take_grant_uses(&mut self) -> Vec<String> {
        std::mem::take(&mut self.grant_uses)
    }

    /// The verdict on an access: the kernel's own denial when it made one,
    /// else the policy's.
    pub fn decide_access(
        &mut self,
        enforcement: Enforcement,
        slot: Option<u32>,
        kind: Kind,
        actor: &Actor,
        target: Option<&Target>,
        detail: PolicyDetail,
    ) -> Option<Verdict> {
        let tamper = kind == Kind::Agent;
        let on_agent = target.is_some_and(|t| t.pid == self.agent_pid)
            && matches!(kind, Kind::Ptrace | Kind::MemAccess)
            && detail.via.as_deref() != Some("proc_environ");
        let result = detail.result.clone();
        let v = match self.kernel_verdict(enforcement, slot) {
            Some(v) => Some(self.explain_kernel_denial(v, kind, actor, target, detail)),
            None if on_agent => Some(self.self_protection(result.as_deref())),
            None => self
                .decide(kind, actor, target, detail)
                .or_else(|| tamper.then(Self::tamper_alert)),
        };
        if let Some(g) = v.as_ref().and_then(|v| v.grant_id.clone()) {
            self.grant_uses.push(g);
        }
        v
    }

    /// A denial the kernel made, told to the person who met it: the
    /// journal line with the way to get access, and, when their grant or
    /// role covered the target read-only and the action changed it, that
    /// in the record's reason too.
    fn explain_kernel_denial(
        &mut self,
        v: Verdict,
        kind: Kind,
        actor: &Actor,
        target: Option<&Target>,
        detail: PolicyDetail,
    ) -> Verdict {
        if v.rule.as_deref() == Some("self-protection") {
            return v;
        }
        let ev = policy_event(kind, actor, target, detail);
        let (set, grants) = (Arc::clone(&self.set), self.grants.clone());
        evaluate(&set, grants.as_deref(), &ev, |d| {
            self.tell_kernel_denial(v, &ev, &d)
        })
    }

    fn tell_kernel_denial(
        &mut self,
        mut v: Verdict,
        ev: &PolicyEvent,
        d: &policy::Ruling<'_>,
    ) -> Verdict {
        // The policy's own reading of the event names the read-only grant
        // or role when it agrees with the kernel on the rule.
        let read_only = d.read_only.filter(|_| d.rule == v.rule.as_deref());
        if let (Some(ro), Some(reason)) = (read_only, v.reason.as_mut()) {
            reason.push_str("; ");
            reason.push_str(&policy::read_only_note(ev, ro));
        }
        let reason = v.reason.clone().unwrap_or_default();
        let ruling = policy::Ruling {
            action: Action::Deny,
            rule: v.rule.as_deref(),
            severity: d.severity,
            reason: &reason,
            grant_id: None,
            tags: &[],
            read_only,
        };
        let key = FoldKey::new(ev, &ruling);
        if self.folder.offer(key, Instant::now()) == FoldOutcome::Emit {
            tracing::warn!(target: "debugmon::decision", "{}", policy::human_line(ev, &ruling));
        }
        v
    }

    /// A denial the kernel made: `enforcement` says how, `slot` which rule.
    /// It carries that rule's severity and title, whichever mechanism
    /// acted.
    fn kernel_verdict(&self, enforcement: Enforcement, slot: Option<u32>) -> Option<Verdict> {
        let (enforced, how) = match enforcement {
            Enforcement::None => return None,
            Enforcement::DeniedLsm => ("lsm", "refused in the kernel (BPF-LSM) before it happened"),
            Enforcement::Killed => (
                "kill",
                "actor killed by the kill fallback before it took effect (no BPF-LSM here)",
            ),
        };
        let (rule, severity, title, tags) = match slot {
            Some(SELF_PROTECTION_SLOT) => (
                Some("self-protection".to_owned()),
                "critical".to_owned(),
                "the agent protects itself from debugging, signals and bpf()".to_owned(),
                vec![SELF_PROTECTION_TAG.to_owned()],
            ),
            Some(slot) => {
                let name = self.kernel_slots.get(&slot).cloned();
                let info = name
                    .as_deref()
                    .and_then(|n| self.set.rules().find(|r| r.name == n));
                let info = info.as_ref();
                let severity = info.map_or("high", |r| r.severity.as_str()).to_owned();
                let title = info
                    .and_then(|r| r.title)
                    .or(name.as_deref())
                    .unwrap_or("a kernel rule")
                    .to_owned();
                let tags = info.map(|r| r.tags.to_vec()).unwrap_or_default();
                (name, severity, title, tags)
            }
            None => (
                None,
                "high".to_owned(),
                "a kernel rule".to_owned(),
                Vec::new(),
            ),
        };
        Some(Verdict {
            action: "deny",
            enforced: Some(enforced),
            severity: Some(severity),
            reason: Some(format!("{title}: {how}")),
            rule,
            grant_id: None,
            tags,
        })
    }

    /// An attempt to debug or read the agent that the kernel's own
    /// protection did not answer (the kernel refused it first, or
    /// enforcement is off): an alert, never only a record, whatever the
    /// policy says.
    fn self_protection(&self, result: Option<&str>) -> Verdict {
        let how = match (self.mechanism, result) {
            (Mechanism::Off, _) => "not enforced: enforcement is off".to_owned(),
            (_, Some(err)) if err != "ok" => format!("the kernel refused it on its own ({err})"),
            _ => "the kernel did not act on it".to_owned(),
        };
        Verdict {
            action: "alert",
            enforced: None,
            severity: Some("critical".to_owned()),
            reason: Some(format!("an attempt to debug or read the agent ({how})")),
            rule: Some("self-protection".to_owned()),
            grant_id: None,
            tags: vec![SELF_PROTECTION_TAG.to_owned()],
        }
    }

    /// An attempt on the agent itself that nothing refused (enforcement
    /// off): still an alert, never only a record.
    fn tamper_alert() -> Verdict {
        Verdict {
            action: "alert",
            enforced: None,
            severity: Some("critical".to_owned()),
            reason: Some(
                "an attempt on the agent itself (not enforced: enforcement is off)".to_owned(),
            ),
            rule: Some("self-protection".to_owned()),
            grant_id: None,
            tags: vec![SELF_PROTECTION_TAG.to_owned()],
        }
    }

    /// The policy's verdict on an event, `None` when no rule matched
    /// (observed only).
    pub fn decide(
        &mut self,
        kind: Kind,
        actor: &Actor,
        target: Option<&Target>,
        detail: PolicyDetail,
    ) -> Option<Verdict> {
        self.decide_event(policy_event(kind, actor, target, detail))
    }

    /// The verdict on a record of the host itself, without actor or
    /// target: an inventory's findings about the host (`ld_so_preload`,
    /// kernel settings).
    pub fn decide_host(&mut self, kind: Kind, detail: PolicyDetail) -> Option<Verdict> {
        self.decide_event(PolicyEvent {
            kind,
            actor: policy::event::Actor::default(),
            target: None,
            detail: policy_detail(detail),
        })
    }

    fn decide_event(&mut self, ev: PolicyEvent) -> Option<Verdict> {
        let (set, grants) = (Arc::clone(&self.set), self.grants.clone());
        evaluate(&set, grants.as_deref(), &ev, |d| self.verdict(&ev, &d))
    }

    /// The verdict a rule's ruling gives, with the journal line for
    /// anything but an allow; `None` when no rule matched.
    fn verdict(&mut self, ev: &PolicyEvent, d: &policy::Ruling<'_>) -> Option<Verdict> {
        d.rule?;
        // Whether the kernel acted comes with the event itself (a refusal
        // written on it, or a kill): an event that gets here was not acted
        // on, and its record must not say it was.
        let enforced = None;
        let reason = match (d.action, self.mechanism) {
            (Action::Deny, Mechanism::Lsm | Mechanism::Kill)
                if d.rule.is_some_and(|r| self.kernel_rules.contains(r)) =>
            {
                format!("{} ({})", d.reason, not_enforced_note(ev))
            }
            (Action::Deny, Mechanism::Lsm | Mechanism::Kill) => format!(
                "{} (not enforced: the kernel does not act on this here; alerted instead)",
                d.reason
            ),
            (Action::Deny, _) => format!(
                "{} (not enforced: the kernel cannot decide this rule here; alerted instead)",
                d.reason
            ),
            _ => d.reason.to_owned(),
        };
        let reason = match d.read_only {
            Some(ro) => format!("{reason}; {}", policy::read_only_note(ev, ro)),
            None => reason,
        };
        if d.action != Action::Allow {
            let key = FoldKey::new(ev, d);
            if self.folder.offer(key, Instant::now()) == FoldOutcome::Emit {
                tracing::warn!(target: "debugmon::decision", "{}", policy::human_line(ev, d));
            }
        }
        Some(Verdict {
            action: d.action.as_str(),
            enforced,
            rule: d.rule.map(str::to_owned),
            severity: Some(d.severity.as_str().to_owned()),
            reason: Some(reason),
            grant_id: d.grant_id.map(str::to_owned),
            tags: d.tags.to_vec(),
        })
    }
}

/// Evaluates `ev` under `set` with the grants in force and hands the
/// ruling to `f`. A poisoned grant lock evaluates without grants
/// (stricter, never looser).
fn evaluate<R>(
    set: &PolicySet,
    grants: Option<&Mutex<GrantStore>>,
    ev: &PolicyEvent,
    f: impl FnOnce(policy::Ruling<'_>) -> R,
) -> R {
    let guard = grants.map(Mutex::lock);
    let no_grants = NoGrants;
    let lookup: &dyn policy::GrantLookup = match &guard {
        Some(Ok(store)) => &**store,
        _ => &no_grants,
    };
    let ctx = EvalContext {
        now: chrono::Utc::now(),
        grants: lookup,
    };
    f(set.evaluate(ev, &ctx))
}

/// The event as policy sees it.
fn policy_event(
    kind: Kind,
    actor: &Actor,
    target: Option<&Target>,
    detail: PolicyDetail,
) -> PolicyEvent {
    PolicyEvent {
        kind,
        actor: policy_actor(actor),
        target: target.filter(|t| t.known).map(policy_target),
        detail: policy_detail(detail),
    }
}

/// The detail fields as policy sees them.
fn policy_detail(detail: PolicyDetail) -> Detail {
    Detail {
        debugger: detail.debugger,
        ptrace_request: detail.ptrace_request,
        via: detail.via,
        access: detail.access,
        prog_type: detail.prog_type,
        result: detail.result,
        inventory: detail.inventory.then_some(true),
        debug_switches: detail.debug_switches,
        findings: detail.findings,
        writes: detail.writes.then_some(true),
    }
}

/// Why a kernel rule's deny was not enforced, from how the call ended.
fn not_enforced_note(ev: &PolicyEvent) -> String {
    match ev.detail.result.as_deref() {
        Some("ok") => {
            "not enforced: the kernel did not act on this one, and it went through".into()
        }
        None => "not enforced: the kernel did not act on this one".into(),
        Some(err) => format!("not enforced: the kernel refused it on its own ({err})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(debuggers: &str) -> Arc<PolicySet> {
        Arc::new(PolicySet::from_texts(&[("d.yaml", debuggers)]).unwrap())
    }

    #[test]
    fn debugger_classes_are_kept_per_program_and_dropped_with_their_set() {
        let mut d = Decider::new(set("debuggers:\n  gdb:\n    exe: [gdb]\n"), None);
        for _ in 0..2 {
            assert_eq!(
                d.debugger_class("/usr/bin/gdb", "gdb").as_deref(),
                Some("gdb")
            );
            assert_eq!(d.debugger_class("/usr/bin/gdbx", "gdb"), None);
            assert_eq!(d.debugger_class("/bin/ls", "ls"), None);
        }
        // Same exe, another comm: its own entry.
        let two = "debuggers:\n  gdb:\n    comm: [gdb]\n  tracer:\n    exe: [ls]\n";
        d.replace_set(set(two));
        assert_eq!(
            d.debugger_class("/usr/bin/gdb", "gdb").as_deref(),
            Some("gdb")
        );
        assert_eq!(d.debugger_class("/usr/bin/gdb", "x"), None);
        assert_eq!(d.debugger_class("/bin/ls", "ls").as_deref(), Some("tracer"));
        // Past its bound the cache starts over, and still answers right.
        for i in 0..DEBUGGER_CACHE_MAX + 10 {
            assert_eq!(d.debugger_class(&format!("/x/{i}"), "x"), None);
        }
        assert!(d.debuggers.by_hash.len() <= DEBUGGER_CACHE_MAX);
        assert_eq!(d.debugger_class("/bin/ls", "ls").as_deref(), Some("tracer"));
    }
}
