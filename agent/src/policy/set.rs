//! The compiled [`PolicySet`] and the key index that keeps evaluation flat
//! in the number of rules: each rule is filed under one of its conditions
//! (a string pattern, or a uid list), so an event only looks at rules whose
//! key it matches, plus the few rules that have no key at all.

use std::path::{Path, PathBuf};

use regex::Regex;

use super::{
    diag::Pos,
    event::EventClass,
    index::{FieldIndex, FnvMap, Source},
    model::{Action, Severity},
    timewin::TimeWindow,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdField {
    Uid,
    Euid,
    Auid,
    TargetUid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flag {
    Tty,
    Ssh,
    ActorContainer,
    TargetContainer,
    OtherUser,
    SameProcess,
    LoginDiffers,
}

pub(crate) enum Cond {
    Flag(Flag, bool),
    Ids(IdField, Box<[u32]>),
    /// Sorted pattern ids of `Source`'s index.
    Match(Source, Box<[u32]>),
    Roles(u128),
    ArgvContains(Box<[Box<str>]>),
    ArgvRegex(Regex),
    Time(TimeWindow),
}

impl Cond {
    /// Cheap conditions first: a rule fails on its cheapest mismatch.
    pub(crate) fn cost(&self) -> u8 {
        match self {
            Self::Flag(..) | Self::Ids(..) => 0,
            Self::Match(..) | Self::Roles(_) => 1,
            Self::Time(_) | Self::ArgvContains(_) => 2,
            Self::ArgvRegex(_) => 3,
        }
    }
}

#[derive(Default)]
pub(crate) struct Unless {
    pub(crate) roles: u128,
    pub(crate) users: Box<[u32]>,
    pub(crate) exe: Box<[u32]>,
    pub(crate) comm: Box<[u32]>,
    pub(crate) grant: bool,
}

pub(crate) struct Rule {
    pub(crate) name: Box<str>,
    pub(crate) title: Option<Box<str>>,
    pub(crate) description: Option<Box<str>>,
    pub(crate) action: Action,
    pub(crate) severity: Severity,
    pub(crate) tags: Box<[String]>,
    /// Event classes (bits of [`EventClass`]) the rule's triggers cover.
    pub(crate) classes: u16,
    pub(crate) conds: Box<[Cond]>,
    pub(crate) unless: Unless,
    pub(crate) file: usize,
    pub(crate) pos: Pos,
}

pub(crate) struct Debuggers {
    pub(crate) names: Vec<Box<str>>,
    pub(crate) exe: FieldIndex,
    pub(crate) comm: FieldIndex,
    /// Pattern id -> class index, per index.
    pub(crate) exe_class: Vec<u16>,
    pub(crate) comm_class: Vec<u16>,
}

/// A loaded, compiled set of policies. Share it behind an `Arc`; evaluation
/// takes `&self`.
pub struct PolicySet {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) hash: String,
    pub(crate) rules: Vec<Rule>,
    /// (action, severity) per rule, packed apart from the rules so that
    /// skipping rules that cannot beat the current winner touches one cache
    /// line per 16 rules, not one per rule.
    pub(crate) rank: Vec<(Action, Severity)>,
    pub(crate) index: Vec<FieldIndex>,
    pub(crate) role_names: Vec<Box<str>>,
    pub(crate) user_roles: FnvMap<Box<str>, u128>,
    pub(crate) group_roles: FnvMap<Box<str>, u128>,
    pub(crate) debuggers: Debuggers,
    pub(crate) keys: Keys,
    /// Rules, roles and debugger lists as written, for the kernel compiler.
    pub(crate) specs: Vec<super::model::RuleSpec>,
    pub(crate) role_specs: Vec<(String, super::model::RoleSpec)>,
    pub(crate) debugger_specs: Vec<(String, super::model::DebuggerSpec)>,
}

/// Key sources in order of preference: target fields are the most
/// selective in practice, detail fields the least; uid lists come last.
const KEY_ORDER: [Source; 14] = [
    Source::TargetComm,
    Source::TargetExe,
    Source::TargetUnit,
    Source::TargetUser,
    Source::ActorExe,
    Source::ActorComm,
    Source::ActorUser,
    Source::ActorLoginUser,
    Source::ActorUnit,
    Source::ActorGroup,
    Source::ActorDebugger,
    Source::PtraceRequest,
    Source::Via,
    Source::ProgType,
];

const ID_KEYS: [IdField; 4] = [
    IdField::Uid,
    IdField::Euid,
    IdField::Auid,
    IdField::TargetUid,
];

pub(crate) struct Keys {
    /// Rules without a key condition, per event class, in load order.
    pub(crate) unkeyed: [Vec<u32>; EventClass::COUNT],
    /// Per key source: pattern id -> rules keyed on that pattern.
    pub(crate) by_pattern: Vec<(Source, Vec<Vec<u32>>)>,
    /// Per id field: id -> rules keyed on that id.
    pub(crate) by_id: Vec<(IdField, FnvMap<u32, Vec<u32>>)>,
}

impl Keys {
    pub(crate) fn build(rules: &[Rule], index: &[FieldIndex]) -> Self {
        let mut keys = Keys {
            unkeyed: Default::default(),
            by_pattern: Vec::new(),
            by_id: Vec::new(),
        };
        for (ri, rule) in rules.iter().enumerate() {
            let ri = u32::try_from(ri).expect("invariant: fewer than 2^32 rules");
            let pattern_key = KEY_ORDER.iter().find_map(|s| {
                rule.conds.iter().find_map(|c| match c {
                    Cond::Match(src, ids) if src == s => Some((*src, ids)),
                    _ => None,
                })
            });
            let id_key = || {
                ID_KEYS.iter().find_map(|f| {
                    rule.conds.iter().find_map(|c| match c {
                        Cond::Ids(field, ids) if field == f => Some((*field, ids)),
                        _ => None,
                    })
                })
            };
            if let Some((src, ids)) = pattern_key {
                let slot = match keys.by_pattern.iter().position(|(s, _)| *s == src) {
                    Some(i) => i,
                    None => {
                        let n = index[src as usize].len();
                        keys.by_pattern.push((src, vec![Vec::new(); n]));
                        keys.by_pattern.len() - 1
                    }
                };
                for &id in ids {
                    keys.by_pattern[slot].1[id as usize].push(ri);
                }
            } else if let Some((field, ids)) = id_key() {
                let slot = match keys.by_id.iter().position(|(f, _)| *f == field) {
                    Some(i) => i,
                    None => {
                        keys.by_id.push((field, FnvMap::default()));
                        keys.by_id.len() - 1
                    }
                };
                for &id in ids {
                    keys.by_id[slot].1.entry(id).or_default().push(ri);
                }
            } else {
                for (class, list) in keys.unkeyed.iter_mut().enumerate() {
                    if rule.classes & (1 << class) != 0 {
                        list.push(ri);
                    }
                }
            }
        }
        keys
    }
}

/// A rule as the CLI shows it (`policy list`, `status`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleInfo<'a> {
    pub name: &'a str,
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub action: Action,
    pub severity: Severity,
    pub tags: &'a [String],
    pub file: &'a Path,
    pub line: u32,
}

impl PolicySet {
    /// The rules in load order.
    /// Rules as written (for the kernel compiler).
    pub fn rule_specs(&self) -> &[super::model::RuleSpec] {
        &self.specs
    }

    /// Roles as written: name, users and groups.
    pub fn role_specs(&self) -> &[(String, super::model::RoleSpec)] {
        &self.role_specs
    }

    /// Debugger classes as written: name, exe and comm patterns.
    pub fn debugger_specs(&self) -> &[(String, super::model::DebuggerSpec)] {
        &self.debugger_specs
    }

    pub fn rules(&self) -> impl Iterator<Item = RuleInfo<'_>> {
        self.rules.iter().map(|r| RuleInfo {
            name: &r.name,
            title: r.title.as_deref(),
            description: r.description.as_deref(),
            action: r.action,
            severity: r.severity,
            tags: &r.tags,
            file: &self.files[r.file],
            line: r.pos.line,
        })
    }
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("files", &self.files)
            .field("hash", &self.hash)
            .field("rules", &self.rules.len())
            .field("roles", &self.role_names)
            .field("debuggers", &self.debuggers.names)
            .finish_non_exhaustive()
    }
}
