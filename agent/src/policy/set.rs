//! The compiled [`PolicySet`] and the key index that keeps evaluation flat
//! in the number of rules: each rule is filed under one of its conditions
//! (a string pattern, or a uid list), so an event only looks at rules whose
//! key it matches, plus the few rules that have no key at all. The index is
//! kept per event class, so an event's fields are matched only where a rule
//! of its class is filed.

use std::path::{Path, PathBuf};

use regex::Regex;

use super::{
    diag::Pos,
    event::EventClass,
    index::{FastMap, FieldIndex, Source},
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
    /// Roles (bits, as in `user_roles`) declared `access: read`.
    pub(crate) read_roles: u128,
    pub(crate) user_roles: FastMap<Box<str>, u128>,
    pub(crate) group_roles: FastMap<Box<str>, u128>,
    pub(crate) debuggers: Debuggers,
    pub(crate) keys: Keys,
    /// Rules, roles and debugger lists as written, for the kernel compiler.
    pub(crate) specs: Vec<super::model::RuleSpec>,
    pub(crate) role_specs: Vec<(String, super::model::RoleSpec)>,
    pub(crate) debugger_specs: Vec<(String, super::model::DebuggerSpec)>,
    /// `process_tools:`, from every file.
    pub(crate) tools: super::tools::ProcessTools,
}

/// Key sources in order of preference: target fields are the most
/// selective in practice, detail fields the least; uid lists come last.
const KEY_ORDER: [Source; 16] = [
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
    Source::DebugSwitch,
    Source::Finding,
];

const ID_KEYS: [IdField; 4] = [
    IdField::Uid,
    IdField::Euid,
    IdField::Auid,
    IdField::TargetUid,
];

/// Rules filed under the patterns of one key source: those of pattern `id`
/// are `rules[start[id]..start[id + 1]]`, in load order. One flat list
/// rather than a `Vec` per pattern: most patterns key no rule of a given
/// class, and an empty `Vec` still costs 24 bytes.
pub(crate) struct Postings {
    start: Box<[u32]>,
    rules: Box<[u32]>,
}

impl Postings {
    fn new(lists: &[Vec<u32>]) -> Self {
        let mut start = Vec::with_capacity(lists.len() + 1);
        let mut rules = Vec::new();
        start.push(0);
        for l in lists {
            rules.extend_from_slice(l);
            start.push(u32::try_from(rules.len()).expect("invariant: fewer than 2^32 postings"));
        }
        Self {
            start: start.into_boxed_slice(),
            rules: rules.into_boxed_slice(),
        }
    }

    pub(crate) fn of(&self, id: u32) -> &[u32] {
        let i = id as usize;
        &self.rules[self.start[i] as usize..self.start[i + 1] as usize]
    }
}

/// The key index of one event class. Only rules whose triggers cover the
/// class are filed here, and only key sources that file at least one such
/// rule appear: an event never matches a field (a glob pass can cost more
/// than the rest of the evaluation) just to find rules of other classes.
#[derive(Default)]
pub(crate) struct ClassKeys {
    /// Rules without a key condition, in load order.
    pub(crate) unkeyed: Vec<u32>,
    /// Per key source: pattern id -> rules keyed on that pattern.
    pub(crate) by_pattern: Vec<(Source, Postings)>,
    /// Per id field: id -> rules keyed on that id.
    pub(crate) by_id: Vec<(IdField, FastMap<u32, Vec<u32>>)>,
}

pub(crate) struct Keys {
    pub(crate) per_class: [ClassKeys; EventClass::COUNT],
}

/// The condition a rule is filed under.
enum Key<'r> {
    Pattern(Source, &'r [u32]),
    Id(IdField, &'r [u32]),
    None,
}

fn key_of(rule: &Rule) -> Key<'_> {
    let pattern_key = KEY_ORDER.iter().find_map(|s| {
        rule.conds.iter().find_map(|c| match c {
            Cond::Match(src, ids) if src == s => Some(Key::Pattern(*src, ids)),
            _ => None,
        })
    });
    let id_key = || {
        ID_KEYS.iter().find_map(|f| {
            rule.conds.iter().find_map(|c| match c {
                Cond::Ids(field, ids) if field == f => Some(Key::Id(*field, ids)),
                _ => None,
            })
        })
    };
    pattern_key.or_else(id_key).unwrap_or(Key::None)
}

impl Keys {
    pub(crate) fn build(rules: &[Rule], index: &[FieldIndex]) -> Self {
        let keys: Vec<Key<'_>> = rules.iter().map(key_of).collect();
        let per_class = std::array::from_fn(|class| {
            let mut ck = ClassKeys::default();
            let mut lists: Vec<(Source, Vec<Vec<u32>>)> = Vec::new();
            for (ri, (rule, key)) in rules.iter().zip(&keys).enumerate() {
                if rule.classes & (1 << class) == 0 {
                    continue;
                }
                let ri = u32::try_from(ri).expect("invariant: fewer than 2^32 rules");
                match *key {
                    Key::Pattern(src, ids) => {
                        let slot = match lists.iter().position(|(s, _)| *s == src) {
                            Some(i) => i,
                            None => {
                                let n = index[src as usize].len();
                                lists.push((src, vec![Vec::new(); n]));
                                lists.len() - 1
                            }
                        };
                        for &id in ids {
                            lists[slot].1[id as usize].push(ri);
                        }
                    }
                    Key::Id(field, ids) => {
                        let slot = match ck.by_id.iter().position(|(f, _)| *f == field) {
                            Some(i) => i,
                            None => {
                                ck.by_id.push((field, FastMap::default()));
                                ck.by_id.len() - 1
                            }
                        };
                        for &id in ids {
                            ck.by_id[slot].1.entry(id).or_default().push(ri);
                        }
                    }
                    Key::None => ck.unkeyed.push(ri),
                }
            }
            ck.by_pattern = lists
                .iter()
                .map(|(src, l)| (*src, Postings::new(l)))
                .collect();
            ck
        });
        Keys { per_class }
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

    /// Whether a process running `exe` (a real path the kernel's view of
    /// the file confirmed) is one of the host's process tools.
    pub fn is_process_tool(&self, exe: &str) -> bool {
        self.tools.matches(exe)
    }

    /// `process_tools:` patterns as written.
    pub fn process_tools(&self) -> &[String] {
        self.tools.patterns()
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
