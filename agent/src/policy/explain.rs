//! `debugmon policy explain`: which rule decided an event and, for every
//! other rule, why it did not: the trigger, the first condition that failed
//! (with the event's value), or the exemption that applied. Slow and
//! allocating on purpose; the hot path is [`PolicySet::evaluate`].

use std::{fmt, path::PathBuf};

use super::{
    diag::Pos,
    engine::{EvalContext, Exemption, Facts, Outcome, ReadOnly, Ruling, with_scratch},
    event::{EventClass, PolicyEvent},
    index::Source,
    set::{Cond, Flag, IdField, PolicySet},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This rule made the decision.
    Decided,
    /// Fired, but a stronger (or equally strong, earlier) rule decided.
    Outranked,
    /// Its `on:` triggers do not cover the event.
    NotTriggered,
    /// The first condition that does not hold, and why.
    NoMatch(String),
    /// Matched, but an `unless` exemption applied.
    Exempt(String),
}

#[derive(Debug, Clone)]
pub struct RuleVerdict {
    pub rule: String,
    pub file: PathBuf,
    pub pos: Pos,
    pub verdict: Verdict,
}

pub struct Explanation<'a> {
    pub class: Option<EventClass>,
    pub decision: Ruling<'a>,
    pub rules: Vec<RuleVerdict>,
}

/// Explains how `set` decides `event`.
pub fn explain<'a>(
    set: &'a PolicySet,
    event: &PolicyEvent,
    ctx: &EvalContext<'a>,
) -> Explanation<'a> {
    let decision = set.evaluate(event, ctx);
    let rules = with_scratch(|s| {
        let mut facts = Facts::new(set, event, s);
        set.rules
            .iter()
            .map(|rule| {
                let verdict = match set.outcome(rule, &mut facts, ctx) {
                    Outcome::WrongClass => Verdict::NotTriggered,
                    Outcome::Failed(i) => {
                        Verdict::NoMatch(why_not(set, &mut facts, &rule.conds[i]))
                    }
                    Outcome::Exempt(e) => Verdict::Exempt(exemption(set, &e)),
                    Outcome::Fires(_) if decision.rule == Some(&*rule.name) => Verdict::Decided,
                    Outcome::Fires(_) => Verdict::Outranked,
                };
                RuleVerdict {
                    rule: rule.name.to_string(),
                    file: set.files[rule.file].clone(),
                    pos: rule.pos,
                    verdict,
                }
            })
            .collect()
    });
    Explanation {
        class: event.class(),
        decision,
        rules,
    }
}

fn roles(set: &PolicySet, mask: u128) -> String {
    let names: Vec<&str> = set
        .role_names
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| &**n)
        .collect();
    names.join(", ")
}

fn exemption(set: &PolicySet, e: &Exemption<'_>) -> String {
    match e {
        Exemption::Role(m) => format!("actor has role {}", roles(set, *m)),
        Exemption::User => "actor is listed in unless.users".into(),
        Exemption::Exe => "actor exe is listed in unless.exe".into(),
        Exemption::Comm => "actor comm is listed in unless.comm".into(),
        Exemption::Grant(g) => format!(
            "grant {} ({} on {}, {} access, expires {}) covers it",
            g.id,
            g.user,
            g.target,
            g.mode.as_str(),
            g.expires.to_rfc3339()
        ),
    }
}

fn show(v: Option<impl fmt::Display>) -> String {
    v.map_or_else(|| "unknown".to_owned(), |v| format!("`{v}`"))
}

fn why_not(set: &PolicySet, facts: &mut Facts<'_, '_>, c: &Cond) -> String {
    let ev = facts.ev;
    let (a, t) = (&ev.actor, ev.target.as_ref());
    match c {
        Cond::Match(src, ids) => {
            let ix = &set.index[*src as usize];
            let want: Vec<&str> = ids.iter().map(|&i| ix.pattern(i)).collect();
            let have = match src {
                Source::ActorGroup => format!("[{}]", a.groups.join(", ")),
                Source::ActorDebugger => show(ev.detail.debugger.as_deref().or_else(|| {
                    set.debugger_class(
                        a.exe.as_deref().unwrap_or(""),
                        a.comm.as_deref().unwrap_or(""),
                    )
                })),
                _ => show(facts.value(*src)),
            };
            format!(
                "{} {have} matches none of [{}]",
                src.label(),
                want.join(", ")
            )
        }
        Cond::Ids(field, ids) => {
            let (label, v) = match field {
                IdField::Uid => ("actor.uid", a.uid),
                IdField::Euid => ("actor.euid", a.euid),
                IdField::Auid => ("actor.auid", a.auid),
                IdField::TargetUid => ("target.uid", t.and_then(|t| t.uid)),
            };
            let want: Vec<String> = ids.iter().map(u32::to_string).collect();
            format!("{label} {} is not in [{}]", show(v), want.join(", "))
        }
        Cond::Flag(flag, want) => {
            let what = match flag {
                Flag::Tty => "actor has a tty",
                Flag::Ssh => "actor came in over ssh",
                Flag::ActorContainer => "actor runs in a container",
                Flag::TargetContainer => "target runs in a container",
                Flag::OtherUser => "target belongs to another user (both uids known)",
                Flag::SameProcess => "target is the actor's own process (both pids known)",
                Flag::LoginDiffers => "login uid is known and differs from the effective uid",
            };
            format!("wanted `{what}` to be {want}")
        }
        Cond::Roles(mask) => format!("actor has none of the roles [{}]", roles(set, *mask)),
        Cond::ArgvContains(items) => {
            let want: Vec<&str> = items.iter().map(|s| &**s).collect();
            format!("argv contains none of [{}]", want.join(", "))
        }
        Cond::ArgvRegex(re) => format!("argv does not match /{}/", re.as_str()),
        Cond::Time(w) => format!("outside the time window {}", w.describe()),
    }
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.decision;
        let class = self
            .class
            .map_or("record no rule applies to", EventClass::describe);
        writeln!(f, "event: {class}")?;
        write!(f, "decision: {}", d.action.as_str().to_uppercase())?;
        match d.rule {
            Some(r) => write!(f, " by rule {r} ({}): {}", d.severity, d.reason)?,
            None => write!(f, ": {}", d.reason)?,
        }
        if let Some(g) = d.grant_id {
            write!(f, " [grant {g} used]")?;
        }
        match d.read_only {
            Some(ReadOnly::Grant(g)) => write!(
                f,
                " [grant {g} covers the target read-only; this changes it]"
            )?,
            Some(ReadOnly::Role(r)) => write!(
                f,
                " [role {r} covers the target read-only; this changes it]"
            )?,
            None => {}
        }
        writeln!(f)?;
        for r in &self.rules {
            let (mark, text) = match &r.verdict {
                Verdict::Decided => ('*', "DECIDED".to_owned()),
                Verdict::Outranked => ('+', "fired, but a stronger or earlier rule decided".into()),
                Verdict::NotTriggered => ('-', "not triggered by this kind of event".into()),
                Verdict::NoMatch(why) => ('-', format!("no match: {why}")),
                Verdict::Exempt(why) => ('~', format!("exempt: {why}")),
            };
            writeln!(
                f,
                "  {mark} {} ({}:{}): {text}",
                r.rule,
                r.file.display(),
                r.pos
            )?;
        }
        Ok(())
    }
}
