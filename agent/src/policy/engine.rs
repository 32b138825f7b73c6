//! Evaluation: which rule decides an event.
//!
//! Semantics: every rule whose triggers cover the event's class and whose
//! conditions all hold *fires*, unless one of its `unless` exemptions holds.
//! Among fired rules the strongest action wins (deny > alert > allow), then
//! the higher severity, then the rule loaded first (files in name order,
//! rules in file order). Order therefore never weakens a decision: a
//! drop-in file cannot shadow a shipped deny by coming first. No rule fired:
//! the event is allowed and still recorded ("log only"); if a rule was
//! skipped only because a grant covered it, the decision names that rule and
//! grant so the caller can record the grant's use.
//!
//! Evaluation allocates nothing once a thread's scratch buffers have grown:
//! string fields are matched once per event against per-field indexes and
//! rules are pre-selected by a key condition (see `compile`).

use std::cell::RefCell;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    event::{EventClass, Kind, PolicyEvent, Target},
    grant::Grant,
    index::Source,
    model::{Action, Severity},
    set::{Cond, Flag, IdField, PolicySet, Rule},
};

/// Finds an active grant; implemented by the grants store.
pub trait GrantLookup {
    /// An unexpired grant held by `user` that covers `target`. An event
    /// without a target (an exec) is covered by any grant of the user.
    fn active_for(&self, user: &str, target: Option<&Target>) -> Option<&Grant>;
}

/// No grants at all (tests, `policy explain` without the daemon).
pub struct NoGrants;

impl GrantLookup for NoGrants {
    fn active_for(&self, _user: &str, _target: Option<&Target>) -> Option<&Grant> {
        None
    }
}

/// What evaluation needs besides the event.
pub struct EvalContext<'a> {
    pub now: DateTime<Utc>,
    pub grants: &'a dyn GrantLookup,
}

/// The outcome for one event; borrows from the set and the grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ruling<'a> {
    pub action: Action,
    pub rule: Option<&'a str>,
    pub severity: Severity,
    pub reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<&'a str>,
    pub tags: &'a [String],
    /// The action changes its target, and the actor's grant or role would
    /// have covered it but is read-only: what to tell them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<ReadOnly<'a>>,
}

/// A read-only grant or role that covered the target but not the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "by", content = "name", rename_all = "snake_case")]
pub enum ReadOnly<'a> {
    Grant(&'a str),
    Role(&'a str),
}

pub const REASON_NO_MATCH: &str = "no rule matched (log only)";
pub const REASON_GRANTED: &str = "covered by an active grant";

impl Ruling<'_> {
    pub(crate) fn default_allow() -> Self {
        Self {
            action: Action::Allow,
            rule: None,
            severity: Severity::Info,
            reason: REASON_NO_MATCH,
            grant_id: None,
            tags: &[],
            read_only: None,
        }
    }
}

/// Why a rule that matched did not fire.
pub(crate) enum Exemption<'a> {
    Role(u128),
    User,
    Exe,
    Comm,
    Grant(&'a Grant),
}

pub(crate) enum Outcome<'a> {
    /// Its triggers do not cover the event.
    WrongClass,
    /// Condition `i` (in `rule.conds`) does not hold.
    Failed(usize),
    Exempt(Exemption<'a>),
    /// It fires; with the read-only grant or role that covered the target
    /// but not this change, if one did.
    Fires(Option<ReadOnly<'a>>),
}

/// Per-thread buffers so evaluation does not allocate.
#[derive(Default)]
pub(crate) struct Scratch {
    ids: Vec<u32>,
    gbuf: Vec<usize>,
    argv: String,
    cand: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch (a fresh one if it is in use).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Facts about one event, computed on first use.
pub(crate) struct Facts<'e, 's> {
    set: &'e PolicySet,
    pub(crate) ev: &'e PolicyEvent,
    /// Computed once: classifying compares request strings.
    class: Option<EventClass>,
    ids: &'s mut Vec<u32>,
    gbuf: &'s mut Vec<usize>,
    argv: &'s mut String,
    argv_done: bool,
    done: u32,
    ranges: [(u32, u32); Source::COUNT],
    roles: Option<u128>,
}

impl<'e, 's> Facts<'e, 's> {
    pub(crate) fn new(set: &'e PolicySet, ev: &'e PolicyEvent, s: &'s mut Scratch) -> Self {
        s.ids.clear();
        Self {
            set,
            ev,
            class: ev.class(),
            ids: &mut s.ids,
            gbuf: &mut s.gbuf,
            argv: &mut s.argv,
            argv_done: false,
            done: 0,
            ranges: [(0, 0); Source::COUNT],
            roles: None,
        }
    }

    pub(crate) fn value(&self, src: Source) -> Option<&'e str> {
        let (a, t, d) = (&self.ev.actor, self.ev.target.as_ref(), &self.ev.detail);
        match src {
            Source::ActorUser => a.user.as_deref(),
            Source::ActorLoginUser => a.login_user.as_deref(),
            Source::Person => a.person(),
            Source::ActorExe => a.exe.as_deref(),
            Source::ActorComm => a.comm.as_deref(),
            Source::ActorUnit => a.unit.as_deref(),
            Source::TargetComm => t.and_then(|t| t.comm.as_deref()),
            Source::TargetExe => t.and_then(|t| t.exe.as_deref()),
            Source::TargetUser => t.and_then(|t| t.user.as_deref()),
            Source::TargetUnit => t.and_then(|t| t.unit.as_deref()),
            Source::PtraceRequest => d.ptrace_request.as_deref(),
            Source::Via => d.via.as_deref(),
            Source::ProgType => d.prog_type.as_deref(),
            // Several values or derived: see `matched`.
            Source::ActorGroup | Source::ActorDebugger | Source::DebugSwitch | Source::Finding => {
                None
            }
        }
    }

    /// Sorted ids of the patterns of `src` that this event matches.
    pub(crate) fn matched(&mut self, src: Source) -> &[u32] {
        let i = src as usize;
        if self.done & (1 << i) == 0 {
            self.done |= 1 << i;
            let start = self.ids.len();
            let ix = &self.set.index[i];
            if !ix.is_empty() {
                if src == Source::ActorGroup {
                    for g in &self.ev.actor.groups {
                        ix.matches_into(g, self.ids, self.gbuf);
                    }
                } else if src == Source::DebugSwitch {
                    for s in &self.ev.detail.debug_switches {
                        ix.matches_into(s, self.ids, self.gbuf);
                    }
                } else if src == Source::Finding {
                    for s in &self.ev.detail.findings {
                        ix.matches_into(s, self.ids, self.gbuf);
                    }
                } else if src == Source::ActorDebugger {
                    let (a, d) = (&self.ev.actor, &self.ev.detail);
                    let class = match (self.ev.kind, &d.debugger) {
                        (Kind::Exec, Some(class)) => Some(class.as_str()),
                        _ => self.set.debugger_class_in(
                            a.exe.as_deref().unwrap_or(""),
                            a.comm.as_deref().unwrap_or(""),
                            self.ids,
                            self.gbuf,
                        ),
                    };
                    if let Some(class) = class {
                        ix.matches_into(class, self.ids, self.gbuf);
                    }
                } else if let Some(v) = self.value(src) {
                    ix.matches_into(v, self.ids, self.gbuf);
                }
            }
            self.ids[start..].sort_unstable();
            let len = u32::try_from(self.ids.len()).expect("invariant: few matches");
            self.ranges[i] = (u32::try_from(start).expect("invariant: few matches"), len);
        }
        let (a, b) = self.ranges[i];
        &self.ids[a as usize..b as usize]
    }

    fn any(&mut self, src: Source, want: &[u32]) -> bool {
        !want.is_empty()
            && self
                .matched(src)
                .iter()
                .any(|id| want.binary_search(id).is_ok())
    }

    pub(crate) fn roles(&mut self) -> u128 {
        *self.roles.get_or_insert_with(|| {
            let (set, a) = (self.set, &self.ev.actor);
            let by_user = |u: &Option<String>| {
                u.as_deref()
                    .and_then(|u| set.user_roles.get(u))
                    .copied()
                    .unwrap_or(0)
            };
            let mut m = by_user(&a.user) | by_user(&a.login_user);
            for g in &a.groups {
                m |= set.group_roles.get(g.as_str()).copied().unwrap_or(0);
            }
            m
        })
    }

    fn argv_joined(&mut self) -> &str {
        if !self.argv_done {
            self.argv_done = true;
            self.argv.clear();
            for (i, a) in self.ev.actor.argv.iter().enumerate() {
                if i > 0 {
                    self.argv.push(' ');
                }
                self.argv.push_str(a);
            }
        }
        self.argv
    }

    pub(crate) fn id(&self, field: IdField) -> Option<u32> {
        let (a, t) = (&self.ev.actor, self.ev.target.as_ref());
        match field {
            IdField::Uid => a.uid,
            IdField::Euid => a.euid,
            IdField::Auid => a.auid,
            IdField::TargetUid => t.and_then(|t| t.uid),
        }
    }

    pub(crate) fn holds(&mut self, c: &Cond, now: DateTime<Utc>) -> bool {
        let (a, t) = (&self.ev.actor, self.ev.target.as_ref());
        match c {
            Cond::Flag(flag, want) => {
                let have = match flag {
                    Flag::Tty => a.tty.as_deref().is_some_and(|s| !s.is_empty()),
                    Flag::Ssh => a.ssh.is_some(),
                    Flag::ActorContainer => {
                        a.container_id.as_deref().is_some_and(|s| !s.is_empty())
                    }
                    Flag::TargetContainer => t
                        .and_then(|t| t.container_id.as_deref())
                        .is_some_and(|s| !s.is_empty()),
                    Flag::OtherUser => match (a.uid, t.and_then(|t| t.uid)) {
                        (Some(x), Some(y)) => x != y,
                        // Unknown: neither "other" nor "same".
                        _ => return false,
                    },
                    Flag::SameProcess => match (a.pid, t.and_then(|t| t.pid)) {
                        (Some(x), Some(y)) => x == y,
                        _ => return false,
                    },
                    Flag::LoginDiffers => match (a.auid, a.euid.or(a.uid)) {
                        (Some(au), Some(eu)) => au != eu,
                        _ => match (&a.login_user, &a.user) {
                            (Some(l), Some(u)) => l != u,
                            _ => return false,
                        },
                    },
                };
                have == *want
            }
            Cond::Ids(field, ids) => self
                .id(*field)
                .is_some_and(|v| ids.binary_search(&v).is_ok()),
            Cond::Match(src, ids) => self.any(*src, ids),
            Cond::Roles(mask) => self.roles() & mask != 0,
            Cond::ArgvContains(items) => a.argv.iter().any(|x| items.iter().any(|i| **i == **x)),
            Cond::ArgvRegex(re) => re.is_match(self.argv_joined()),
            Cond::Time(w) => w.contains(now),
        }
    }
}

impl PolicySet {
    /// Decides `ev`. See the module docs for the semantics.
    pub fn evaluate<'a>(&'a self, ev: &PolicyEvent, ctx: &EvalContext<'a>) -> Ruling<'a> {
        let Some(class) = ev.class() else {
            return Ruling::default_allow();
        };
        with_scratch(|s| {
            let mut cand = std::mem::take(&mut s.cand);
            let mut facts = Facts::new(self, ev, s);
            self.candidates(class, &mut facts, &mut cand);
            let d = self.decide_among(cand.iter().copied(), &mut facts, ctx);
            s.cand = cand;
            d
        })
    }

    /// The decision among the rules `candidates` names (indexes, in load
    /// order): the strongest that fires, else the first grant that exempts.
    pub(crate) fn decide_among<'a>(
        &'a self,
        candidates: impl Iterator<Item = u32>,
        facts: &mut Facts<'_, '_>,
        ctx: &EvalContext<'a>,
    ) -> Ruling<'a> {
        let mut best: Option<&Rule> = None;
        let mut read_only = None;
        let mut granted: Option<(&Rule, &Grant)> = None;
        for ri in candidates {
            if best.is_some_and(|b| (b.action, b.severity) >= self.rank[ri as usize]) {
                // Cannot beat the current winner (and ties go to the
                // earlier rule), so skip the work.
                continue;
            }
            let rule = &self.rules[ri as usize];
            match self.outcome(rule, facts, ctx) {
                Outcome::Fires(ro) => {
                    best = Some(rule);
                    read_only = ro;
                }
                Outcome::Exempt(Exemption::Grant(g)) if granted.is_none() => {
                    granted = Some((rule, g));
                }
                _ => {}
            }
        }
        let grant_id = granted.map(|(_, g)| g.id.as_str());
        match (best, granted) {
            (Some(r), _) => Ruling {
                action: r.action,
                rule: Some(&r.name),
                severity: r.severity,
                reason: r.title.as_deref().unwrap_or(&r.name),
                grant_id,
                tags: &r.tags,
                read_only,
            },
            (None, Some((r, _))) => Ruling {
                action: Action::Allow,
                rule: Some(&r.name),
                severity: Severity::Info,
                reason: REASON_GRANTED,
                grant_id,
                tags: &r.tags,
                read_only: None,
            },
            (None, None) => Ruling::default_allow(),
        }
    }

    /// Rule indexes worth checking for this event, in load order.
    pub(crate) fn candidates(
        &self,
        class: EventClass,
        facts: &mut Facts<'_, '_>,
        out: &mut Vec<u32>,
    ) {
        let keys = &self.keys.per_class[class as usize];
        out.clear();
        out.extend_from_slice(&keys.unkeyed);
        for (src, postings) in &keys.by_pattern {
            for &id in facts.matched(*src) {
                out.extend_from_slice(postings.of(id));
            }
        }
        for (field, by_id) in &keys.by_id {
            if let Some(rules) = facts.id(*field).and_then(|v| by_id.get(&v)) {
                out.extend_from_slice(rules);
            }
        }
        out.sort_unstable();
        out.dedup();
    }

    pub(crate) fn outcome<'a>(
        &'a self,
        rule: &Rule,
        facts: &mut Facts<'_, '_>,
        ctx: &EvalContext<'a>,
    ) -> Outcome<'a> {
        let Some(class) = facts.class else {
            return Outcome::WrongClass;
        };
        if rule.classes & class.bit() == 0 {
            return Outcome::WrongClass;
        }
        if let Some(i) = rule.conds.iter().position(|c| !facts.holds(c, ctx.now)) {
            return Outcome::Failed(i);
        }
        let u = &rule.unless;
        let writes = facts.ev.writes();
        let mut read_only = None;
        let held = facts.roles() & u.roles;
        if held != 0 {
            // A change of the target needs a role that is not read-only.
            let enough = if writes {
                held & !self.read_roles
            } else {
                held
            };
            if enough != 0 {
                return Outcome::Exempt(Exemption::Role(enough));
            }
            let bit = held.trailing_zeros() as usize;
            read_only = self.role_names.get(bit).map(|n| ReadOnly::Role(n));
        }
        if facts.any(Source::Person, &u.users) {
            return Outcome::Exempt(Exemption::User);
        }
        // An exemption by program holds only for the program the kernel
        // runs, root's and writable only by root: a copy or a namesake in
        // a user's directory, or a file bind-mounted over the path in a
        // private namespace, is not exempt.
        if facts.ev.actor.exe_trusted == Some(true) && facts.any(Source::ActorExe, &u.exe) {
            return Outcome::Exempt(Exemption::Exe);
        }
        if facts.any(Source::ActorComm, &u.comm) {
            return Outcome::Exempt(Exemption::Comm);
        }
        if u.grant {
            let ev = facts.ev;
            let g = ev
                .actor
                .login_user
                .as_deref()
                .and_then(|p| ctx.grants.active_for(p, ev.target.as_ref()))
                .or_else(|| {
                    let u = ev.actor.user.as_deref()?;
                    ctx.grants.active_for(u, ev.target.as_ref())
                });
            if let Some(g) = g {
                if g.mode.covers(writes) {
                    return Outcome::Exempt(Exemption::Grant(g));
                }
                read_only = Some(ReadOnly::Grant(&g.id));
            }
        }
        Outcome::Fires(read_only)
    }

    /// The debugger class of a program from the `debuggers:` lists: the
    /// first class (in load order) whose exe or comm globs match.
    pub fn debugger_class(&self, exe: &str, comm: &str) -> Option<&str> {
        with_scratch(|s| self.debugger_class_in(exe, comm, &mut s.ids, &mut s.gbuf))
    }

    fn debugger_class_in(
        &self,
        exe: &str,
        comm: &str,
        ids: &mut Vec<u32>,
        gbuf: &mut Vec<usize>,
    ) -> Option<&str> {
        let d = &self.debuggers;
        let start = ids.len();
        let mut best: Option<u16> = None;
        if !exe.is_empty() {
            d.exe.matches_into(exe, ids, gbuf);
            best = ids[start..].iter().map(|&i| d.exe_class[i as usize]).min();
            ids.truncate(start);
        }
        if !comm.is_empty() {
            d.comm.matches_into(comm, ids, gbuf);
            let c = ids[start..].iter().map(|&i| d.comm_class[i as usize]).min();
            ids.truncate(start);
            best = match (best, c) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        best.map(|c| &*d.names[c as usize])
    }
}
